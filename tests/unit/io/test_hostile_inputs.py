"""Regression tests of issue 24: bombs, hangs, tracebacks and silent wrong answers from hostile inputs.

Each test builds its hostile input in tmp_path; limits are lowered through their environment variables
so the inputs stay small.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import struct
import tracemalloc
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pfs_core import schema
from pfs_core.commands.options import read_json, read_labs
from pfs_core.errors import InputError, UsageError
from pfs_core.io import load_ct, load_pet
from pfs_core.io.cohort import read_cohort, validate_cohort, write_good_cohort
from pfs_core.io.dicom import regular_files, unzipped
from pfs_core.io.labs import lab_problems, validate_labs
from pfs_core.io.nifti import read_nifti_data
from pfs_core.limits import Limits, limits

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
MIB = 1024**2


def _pet(shape=(24, 20, 16)) -> np.ndarray:
    data = np.full(shape, 0.8, dtype=np.float32)
    data[8:14, 8:12, 6:10] = 12.0
    return data


def _ct(shape=(24, 20, 16)) -> np.ndarray:
    data = np.full(shape, -1000.0, dtype=np.float32)
    data[4:-4, 4:-4, :] = 40.0
    return data


def _save(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(data), AFFINE), path)
    return path


def _raw_nifti(data: np.ndarray, *, offset: int = 352, extension: bytes = b"") -> bytes:
    """Header (vox_offset ``offset``), 4 flag bytes (1 when ``extension``), ``extension``, then the voxels."""
    header = nib.Nifti1Image(data, AFFINE).header.copy()
    header.set_data_offset(offset)
    flag = b"\x01\x00\x00\x00" if extension else bytes(4)
    return header.binaryblock + flag + extension + data.tobytes(order="F")


@pytest.fixture
def no_hang():
    """Fail instead of hanging: SIGALRM after 20 s."""
    def alarm(_signum, _frame):
        raise TimeoutError("hung")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# --- limits -----------------------------------------------------------------------------------------------

def test_default_limits_pass_a_512x512x1200_int16_ct(monkeypatch):
    for variable in [k for k in os.environ if k.startswith("PFS_CORE_MAX_")]:
        monkeypatch.delenv(variable)
    bounds = limits()
    assert bounds == Limits()
    assert 512 * 512 * 1200 <= bounds.max_voxels
    assert 352 + 512 * 512 * 1200 * 2 <= bounds.max_decompressed_bytes
    monkeypatch.setenv("PFS_CORE_MAX_ZIP_MB", "3")
    assert limits().max_zip_bytes == 3 * MIB


@pytest.mark.parametrize("text", ["lots", "-1", "0", "1.5"])
def test_a_bad_limit_setting_is_a_usage_error(monkeypatch, text):
    monkeypatch.setenv("PFS_CORE_MAX_LABS_KB", text)
    with pytest.raises(UsageError, match="PFS_CORE_MAX_LABS_KB.*positive whole number"):
        limits()


# --- NIfTI ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["offset.nii.gz", "offset.nii"])
def test_a_huge_vox_offset_is_refused_from_the_header(tmp_path, name):
    raw = _raw_nifti(_pet(), offset=3_000_000_000)
    path = tmp_path / name
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    tracemalloc.start()
    with pytest.raises(InputError, match=r"over the limit max_decompressed_bytes = 1536 MiB; .*"
                                         r"set PFS_CORE_MAX_DECOMPRESSED_MB to raise it"):
        read_nifti_data(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * MIB


def test_decompressed_size_over_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    path = _save(tmp_path / "zeros.nii.gz", np.zeros((64, 64, 80), np.float32))  # 1.25 MiB of zeros, gz ~ 2 KiB
    monkeypatch.setenv("PFS_CORE_MAX_DECOMPRESSED_MB", "1")
    with pytest.raises(InputError, match="zeros.nii.gz: the header describes 1.25 MiB .* max_decompressed_bytes"):
        load_pet(path)
    monkeypatch.setenv("PFS_CORE_MAX_DECOMPRESSED_MB", "2")
    with pytest.raises(InputError, match="same value"):  # read now; an all-zero PET is refused as blank
        load_pet(path)


def test_a_gzip_bomb_behind_a_small_image_is_not_read_into_memory(tmp_path):
    path = tmp_path / "trailing.nii.gz"
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(_raw_nifti(_pet()))
        for _ in range(64):
            handle.write(bytes(MIB))
    tracemalloc.start()
    with pytest.raises(InputError, match="more data after the image than its header describes"):
        read_nifti_data(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * MIB


def test_a_header_extension_of_size_zero_cannot_make_nibabel_read_the_whole_file(tmp_path):
    """An extension size of 0 makes nibabel read(-8), i.e. everything: refused from the header."""
    path = tmp_path / "ext.nii.gz"
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(_raw_nifti(_pet(), offset=352 + 32 * MIB, extension=struct.pack("<ii", 0, 0)))
        for _ in range(40):
            handle.write(bytes(MIB))
    tracemalloc.start()
    with pytest.raises(InputError, match="header extension has an impossible size"):
        read_nifti_data(path)
    assert tracemalloc.get_traced_memory()[1] < 20 * MIB
    tracemalloc.stop()


def test_a_data_offset_inside_the_header_is_refused(tmp_path):
    """nibabel would read the header's own bytes as voxels (garbage, NaN among them)."""
    path = tmp_path / "offset0.nii"
    path.write_bytes(_raw_nifti(_pet(), offset=0))
    with pytest.raises(InputError, match="offset0.nii: the header puts the voxels at byte 0, inside the header"):
        read_nifti_data(path)


def test_a_truncated_nii_is_refused_from_its_size(tmp_path):
    path = tmp_path / "short.nii"
    path.write_bytes(_raw_nifti(_pet())[:-1000])
    with pytest.raises(InputError, match=r"short.nii: the image data cannot be read \(truncated: .*\); the file is "
                                         "truncated or damaged"):
        read_nifti_data(path)


def test_a_valid_image_with_header_extensions_still_reads(tmp_path):
    extension = struct.pack("<ii", 32, 6) + b'{"a": 1}'.ljust(24, b"\x00")  # one 32-byte JSON extension
    path = tmp_path / "ext_ok.nii.gz"
    path.write_bytes(gzip.compress(_raw_nifti(_pet(), offset=352 + 32, extension=extension)))
    np.testing.assert_array_equal(read_nifti_data(path).data, _pet())


# --- zip --------------------------------------------------------------------------------------------------

def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("variable, members, limit", [
    ("PFS_CORE_MAX_ZIP_MEMBER_MB", {"a.dcm": bytes(2 * MIB)}, "max_zip_member_bytes"),
    ("PFS_CORE_MAX_ZIP_MB", {f"{i}.dcm": bytes(MIB // 2) for i in range(3)}, "max_zip_bytes"),
    ("PFS_CORE_MAX_ZIP_MEMBERS", {f"{i}.dcm": b"x" for i in range(2)}, "max_zip_members"),
])
def test_zip_limits_name_the_limit_and_the_variable(tmp_path, monkeypatch, variable, members, limit):
    monkeypatch.setenv(variable, "1")
    path = _zip(tmp_path / "bomb.zip", members)
    with pytest.raises(InputError, match=f"bomb.zip: .*over the limit {limit} .*set {variable} to raise it"):
        with unzipped(path):
            pass


def test_a_zip_bomb_is_refused_from_its_declared_sizes_before_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("PFS_CORE_MAX_ZIP_MB", "2")
    path = _zip(tmp_path / "bomb.zip", {f"{i}.dcm": bytes(MIB) for i in range(8)})  # 8 MiB, ~8 KiB zipped
    with pytest.raises(InputError, match="max_zip_bytes"):
        with unzipped(path):
            pass
    assert path.stat().st_size < 100_000


def test_zip_member_names_cannot_leave_the_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    names = ["../../evil.txt", "/abs/evil2.txt", "a/../../evil3.txt", "..\\..\\evil4.txt", "C:/evil5.txt",
             "ok/slice.dcm", "dir/"]
    path = _zip(outside / "names.zip", {name: b"data" for name in names})
    with unzipped(path) as folder:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        assert all(folder in p.parents for p in files) and len(files) == 6
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["names.zip", "outside"]


# --- DICOM folders ----------------------------------------------------------------------------------------

def _write_ct_series(folder: Path, volume: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID = "CT", series
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, 3.0 * k], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.Rows, ds.Columns = [2.0, 2.0], volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, 0.0
        ds.PixelData = volume[:, :, k].T.astype(np.int16).tobytes()
        ds.save_as(folder / f"{k:04d}.dcm", enforce_file_format=True)
    return folder


def test_a_fifo_or_link_in_a_dicom_folder_is_skipped_not_opened(tmp_path, no_hang):
    folder = _write_ct_series(tmp_path / "series", _ct((16, 12, 10)))
    os.mkfifo(folder / "pipe.dcm")
    (folder / "link.dcm").symlink_to("/dev/zero")
    names = {p.name for p in regular_files(folder, "series")}
    assert "pipe.dcm" not in names and "link.dcm" not in names and len(names) == 10
    assert load_ct(folder).shape == (16, 12, 10)


def test_a_folder_with_too_many_files_or_levels_is_not_walked_to_its_end(tmp_path, monkeypatch):
    folder = tmp_path / "many"
    (folder / "a" / "b" / "c").mkdir(parents=True)
    for i in range(5):
        (folder / f"{i}.txt").write_text("x")
    monkeypatch.setenv("PFS_CORE_MAX_DICOM_FILES", "3")
    with pytest.raises(InputError, match="many: .*over the limit max_dicom_files = 3 files; .*PFS_CORE_MAX_DICOM_FILES"):
        load_ct(folder)
    monkeypatch.setenv("PFS_CORE_MAX_DICOM_FILES", "100")
    monkeypatch.setenv("PFS_CORE_MAX_DICOM_DEPTH", "2")
    with pytest.raises(InputError, match="max_dicom_depth .*PFS_CORE_MAX_DICOM_DEPTH"):
        load_ct(folder)


# --- labs -------------------------------------------------------------------------------------------------

def test_dev_zero_as_labs_is_refused_at_once(no_hang):
    with pytest.raises(InputError, match="/dev/zero: the lab JSON is not a regular file"):
        read_labs(Path("/dev/zero"))


def test_a_fifo_as_labs_does_not_block(tmp_path, no_hang):
    os.mkfifo(tmp_path / "labs.json")
    with pytest.raises(InputError, match="not a regular file"):
        read_labs(tmp_path / "labs.json")


def test_labs_over_the_size_limit_are_refused_naming_the_variable(tmp_path):
    path = tmp_path / "labs.json"
    path.write_text(json.dumps({"age": 60, "note": "x" * 70_000}))
    with pytest.raises(InputError, match="labs.json: the lab JSON is larger than allowed, over the limit "
                                         "max_labs_bytes = 64 KiB; .*set PFS_CORE_MAX_LABS_KB"):
        read_labs(path)


def test_a_400_digit_number_names_the_field_without_quoting_it(tmp_path):
    path = tmp_path / "labs.json"
    path.write_text('{"chromogranin_a": ' + "9" * 400 + "}")
    labs = read_labs(path)
    with pytest.raises(InputError, match="chromogranin_a is outside the plausible range") as error:
        validate_labs(labs)
    assert "999" not in str(error.value)


@pytest.mark.parametrize("text, reason", [
    ('{"chromogranin_a": ' + "9" * 5000 + "}", "too many digits"),
    ("[" * 30_000 + "]" * 30_000, "nested too deeply"),  # 100k deep is over the size limit too
    ('{"age": 60', "Expecting"),
    ("\udcff", "not UTF-8"),
])
def test_unusable_lab_json_is_one_input_error_naming_the_file(tmp_path, text, reason):
    path = tmp_path / "labs.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(InputError, match=f"labs.json: cannot read the lab JSON \\(.*{reason}"):
        read_labs(path)


def test_a_config_json_that_is_not_a_regular_file_is_a_usage_error(no_hang):
    with pytest.raises(UsageError, match="/dev/zero: the train config JSON is not a regular file"):
        read_json(Path("/dev/zero"), "train config")


def test_every_bad_lab_is_listed_at_once_without_values():
    labs = {"albumin": 350, "ki67": "high", "sex": "female", "cga": 1.0, "age": 61}
    problems = lab_problems(labs)
    assert [name for name, _reason in problems] == ["cga", "albumin", "ki67", "sex"]
    with pytest.raises(InputError) as error:
        validate_labs(labs)
    message = str(error.value)
    assert message.startswith("labs: 4 problem(s): unknown field(s) 'cga'")
    for text in ("albumin is outside the plausible range", "ki67 is not a number", "sex is not an allowed value"):
        assert text in message
    assert "350" not in message and "high" not in message and "female" not in message
    assert lab_problems({"age": 61}) == []


# --- cohort files -----------------------------------------------------------------------------------------

def _cohort(folder: Path, pet: str, *, ct: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cohort.csv"
    row = {c: "" for c in schema.COHORT_COLUMNS} | {"patient_id": "P1", "pet": pet, "ct": ct, "pfs_months": "12",
                                                   "progressed": "1"}
    pd.DataFrame([row]).to_csv(path, index=False)
    return path


def test_paths_outside_the_cohort_folder_and_missing_files_give_the_same_message(tmp_path, monkeypatch):
    monkeypatch.delenv("PFS_CORE_DATA_ROOTS", raising=False)
    (tmp_path / "elsewhere").mkdir()
    elsewhere = _save(tmp_path / "elsewhere" / "pet.nii.gz", _pet())
    reasons = {}
    for name, cell in {"outside": str(elsewhere), "missing": str(tmp_path / "elsewhere" / "nope.nii.gz"),
                       "root": "/", "dotdot": "../elsewhere/pet.nii.gz", "etc": "/etc/passwd"}.items():
        report = validate_cohort(_cohort(tmp_path / name, cell))
        (problem,) = report.problems
        assert problem.column == "pet"
        reasons[name] = problem.reason.split(": ", 1)[1].replace(str(tmp_path / name), "ROOT")
    assert len(set(reasons.values())) == 1, reasons
    assert "image not found in the cohort folder or not allowed" in reasons["outside"]
    assert "PFS_CORE_DATA_ROOTS" in reasons["outside"]


def test_a_link_inside_the_cohort_folder_is_checked_where_it_leads(tmp_path, monkeypatch):
    monkeypatch.delenv("PFS_CORE_DATA_ROOTS", raising=False)
    (tmp_path / "data").mkdir()
    _save(tmp_path / "data" / "pet.nii.gz", _pet())
    csv_path = _cohort(tmp_path / "cohort", "images/pet.nii.gz")
    (tmp_path / "cohort" / "images").symlink_to(tmp_path / "data")
    assert [p.column for p in validate_cohort(csv_path).problems] == ["pet"]
    monkeypatch.setenv("PFS_CORE_DATA_ROOTS", os.pathsep.join(["/nonexistent", str(tmp_path / "data")]))
    assert validate_cohort(csv_path).all_good


def test_images_inside_the_cohort_folder_pass_and_a_written_good_table_reads_back(tmp_path, monkeypatch):
    monkeypatch.delenv("PFS_CORE_DATA_ROOTS", raising=False)
    csv_path = _cohort(tmp_path / "cohort", "images/pet.nii.gz", ct="images/ct.nii.gz")
    (tmp_path / "cohort" / "images").mkdir()
    _save(tmp_path / "cohort" / "images" / "pet.nii.gz", _pet())
    _save(tmp_path / "cohort" / "images" / "ct.nii.gz", _ct())
    report = validate_cohort(csv_path)
    assert report.all_good
    written = write_good_cohort(report, tmp_path / "elsewhere")  # absolute paths into the cohort folder
    assert read_cohort(written, need_images=True)["pet"].iloc[0] == str(tmp_path / "cohort" / "images" / "pet.nii.gz")
    assert validate_cohort(written).all_good


@pytest.mark.parametrize("cell, reason", [
    ("images/pe\x00t.nii.gz", "NUL byte"),
    ("images/" + "a" * 300 + ".nii.gz", "longer than 255 characters"),
])
def test_unusable_paths_are_one_row_problem_not_a_traceback(tmp_path, cell, reason):
    csv_path = _cohort(tmp_path, cell)
    (problem,) = validate_cohort(csv_path).problems
    assert problem.column == "pet" and reason in problem.reason
    with pytest.raises(InputError, match=f"row 2 \\(pet\\): .*{reason}"):
        read_cohort(csv_path, need_images=True)


def test_a_cohort_table_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    csv_path = _cohort(tmp_path, "x.nii.gz")
    with open(csv_path, "a") as handle:
        handle.write(("P2," + "," * (len(schema.COHORT_COLUMNS) - 2) + "\n") * 70_000)
    monkeypatch.setenv("PFS_CORE_MAX_COHORT_MB", "1")
    with pytest.raises(InputError, match="cohort.csv: the cohort table is larger than allowed.*PFS_CORE_MAX_COHORT_MB"):
        validate_cohort(csv_path)
    with pytest.raises(InputError, match="not a regular file"):
        validate_cohort(tmp_path)


# --- plausibility -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("loader, value", [(load_pet, 0.0), (load_pet, 3.0), (load_ct, -1000.0)])
def test_an_empty_or_constant_image_is_refused(tmp_path, loader, value):
    path = _save(tmp_path / "flat.nii.gz", np.full((16, 12, 10), value, np.float32))
    with pytest.raises(InputError, match="flat.nii.gz: every voxel of this (PET|CT) has the same value"):
        loader(path)


def test_ct_values_far_outside_hu_are_refused(tmp_path):
    data = _ct()
    data[3, 3, 3] = 3e38
    with pytest.raises(InputError, match="not Hounsfield units"):
        load_ct(_save(tmp_path / "ct.nii.gz", data))


def test_ct_above_4000_hu_is_clipped_with_a_warning_and_padding_silently(tmp_path):
    data = _ct()
    data[0, :, :] = -3024.0  # padding outside the scanned circle
    data[10, 10, 5:8] = 9000.0  # metal
    ct = load_ct(_save(tmp_path / "ct.nii.gz", data))
    assert ct.data.min() == -1100.0 and ct.data.max() == 4000.0
    assert ct.warnings == ("ct.nii.gz: 3 CT voxel(s) above 4000 HU (metal, or a wrong rescale) were clipped to "
                           "4000 HU",)
    padded = data.copy()
    padded[10, 10, 5:8] = 40.0
    assert load_ct(_save(tmp_path / "padded.nii.gz", padded)).warnings == ()


def test_a_pet_in_kbq_per_ml_taken_as_suv_is_warned_about(tmp_path):
    data = _pet()
    data[9, 9, 7] = 300.0  # below the 500 of the Bq/mL guess: read as SUV
    pet = load_pet(_save(tmp_path / "kbq.nii.gz", data))
    (warning,) = pet.warnings
    assert "SUVmax 300" in warning and "kBq/mL" in warning and "--pet-units bqml" in warning
    assert load_pet(_save(tmp_path / "suv.nii.gz", _pet())).warnings == ()
    body = _pet() * 20.0  # body median 16: every value scaled, maximum 240
    body[body > 140] = 140.0
    assert "body median 16" in load_pet(_save(tmp_path / "body.nii.gz", body)).warnings[0]
