"""DICOM series handling and SUV rules on tiny series written by pydicom into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pfs_core.errors import InputError
from pfs_core.io import load_ct, load_pet

F18_HALF_LIFE_S = 6586.2
CT_CLASS, PT_CLASS, RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.128", \
    "1.2.840.10008.5.1.4.1.1.481.3"


def _dataset(sop_class: str, modality: str, series_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesDescription = modality, series_uid, f"test {modality}"
    ds.SeriesDate, ds.SeriesTime = "20240102", "110200"
    return ds


def write_series(folder: Path, volume: np.ndarray, *, modality: str = "CT", spacing=(2.0, 2.5, 3.0),
                 origin=(-10.0, 20.0, -50.0), z_positions=None, tags: dict | None = None,
                 slice_tags=None) -> Path:
    """Write ``volume`` (I=columns, J=rows, K) as an axial DICOM series; file names in reverse slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    nz = volume.shape[2]
    zs = z_positions if z_positions is not None else [origin[2] + spacing[2] * k for k in range(nz)]
    slope = max(float(np.abs(volume).max()) / 30000.0, 1e-6) if modality == "PT" else 1.0
    for k in range(nz):
        ds = _dataset(CT_CLASS if modality == "CT" else PT_CLASS, modality, series_uid)
        ds.ImagePositionPatient = [origin[0], origin[1], zs[k]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing (between rows), column spacing
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0.0 if modality == "PT" else -1024.0
        intercept = float(ds.RescaleIntercept)
        stored = np.round((volume[:, :, k].T - intercept) / slope).astype(np.int16)
        ds.PixelData = stored.tobytes()
        for key, value in {**(tags or {}), **(slice_tags(k) if slice_tags else {})}.items():
            setattr(ds, key, value)
        ds.save_as(folder / f"{nz - k:04d}.dcm", enforce_file_format=True)
    return folder


def _radiopharmaceutical(dose_bq: float = 350e6, start: str = "100000") -> Dataset:
    rp = Dataset()
    rp.RadionuclideTotalDose, rp.RadionuclideHalfLife, rp.RadiopharmaceuticalStartTime = dose_bq, F18_HALF_LIFE_S, start
    return rp


def _pet_tags(**overrides) -> dict:
    tags = {"Units": "BQML", "DecayCorrection": "START", "PatientWeight": 70.0,
            "RadiopharmaceuticalInformationSequence": [_radiopharmaceutical()]}
    tags.update(overrides)
    return tags


def _ct_volume(shape=(16, 12, 10)) -> np.ndarray:
    rng = np.random.default_rng(0)
    vol = np.full(shape, -1000.0)
    vol[3:-3, 3:-3, :] = rng.normal(40.0, 10.0, size=(shape[0] - 6, shape[1] - 6, shape[2])).round()
    return vol


def _pet_volume(shape=(16, 12, 10)) -> np.ndarray:
    vol = np.full(shape, 500.0)
    vol[8, 6, 5] = 50000.0
    return vol


def test_ct_series_sorted_by_position_not_file_name(tmp_path):
    vol = _ct_volume()
    folder = write_series(tmp_path / "ct", vol)
    (tmp_path / "ct" / "README.txt").write_text("not DICOM")
    ct = load_ct(folder)
    np.testing.assert_allclose(ct.data, vol, atol=0.5)
    expected = np.diag([-2.0, -2.5, 3.0, 1.0])
    expected[:3, 3] = [10.0, -20.0, -50.0]  # LPS origin (-10, 20, -50) in RAS
    np.testing.assert_allclose(ct.affine, expected)
    assert ct.orientation == "LPS"


def test_bqml_start_decays_dose_to_series_start(tmp_path):
    folder = write_series(tmp_path / "pet", _pet_volume(), modality="PT", tags=_pet_tags())
    pet = load_pet(folder)
    decayed = 350e6 * 2 ** (-62 * 60 / F18_HALF_LIFE_S)
    assert pet.data[0, 0, 0] == pytest.approx(500.0 * 70_000 / decayed, rel=1e-3)
    assert pet.suv_note == "SUVbw from DICOM tags: weight 70 kg, dose 350.0 MBq, decay-corrected over 62.0 min (F-18)"


def test_bqml_admin_does_not_decay_and_user_values_override_tags(tmp_path):
    folder = write_series(tmp_path / "pet", _pet_volume(), modality="PT", tags=_pet_tags(DecayCorrection="ADMIN"))
    assert load_pet(folder).data[0, 0, 0] == pytest.approx(500.0 * 70_000 / 350e6, rel=1e-3)
    pet = load_pet(folder, weight_kg=80.0, dose_mbq=200.0)
    assert pet.data[0, 0, 0] == pytest.approx(500.0 * 80_000 / 200e6, rel=1e-3)
    assert "(given by the user)" in pet.suv_note


def test_bqml_none_decays_per_slice_acquisition_time_and_crosses_midnight(tmp_path):
    rp = _radiopharmaceutical(start="233000")
    tags = _pet_tags(DecayCorrection="NONE", RadiopharmaceuticalInformationSequence=[rp], SeriesTime="000000")
    folder = write_series(tmp_path / "pet", _pet_volume(), modality="PT", tags=tags,
                          slice_tags=lambda k: {"AcquisitionTime": f"00{k:02d}00"})
    pet = load_pet(folder)
    for k in (0, 9):
        decayed = 350e6 * 2 ** (-(30 + k) * 60 / F18_HALF_LIFE_S)
        assert pet.data[0, 0, k] == pytest.approx(500.0 * 70_000 / decayed, rel=1e-3)


def test_gml_is_taken_as_suv_and_counts_are_refused(tmp_path):
    vol = np.full((16, 12, 10), 1.5)
    vol[0, 0, 0] = 0.5  # a constant PET is refused as blank
    folder = write_series(tmp_path / "gml", vol, modality="PT", tags={"Units": "GML"})
    pet = load_pet(folder)
    assert pet.data.max() == pytest.approx(1.5, rel=1e-3) and "GML" in pet.suv_note
    folder = write_series(tmp_path / "cnts", vol, modality="PT", tags={"Units": "CNTS"})
    with pytest.raises(InputError, match=r"cnts.*Units 'CNTS'"):
        load_pet(folder)


def test_bqml_without_weight_names_the_tag_and_option(tmp_path):
    tags = _pet_tags()
    del tags["PatientWeight"]
    folder = write_series(tmp_path / "noweight", _pet_volume(), modality="PT", tags=tags)
    with pytest.raises(InputError, match=r"noweight.*PatientWeight.*--weight-kg"):
        load_pet(folder)
    assert load_pet(folder, weight_kg=70.0).units == "SUVbw"


def test_implausible_dose_is_refused(tmp_path):
    tags = _pet_tags(RadiopharmaceuticalInformationSequence=[_radiopharmaceutical(dose_bq=350.0)])
    folder = write_series(tmp_path / "lowdose", _pet_volume(), modality="PT", tags=tags)
    with pytest.raises(InputError, match=r"lowdose.*dose.*implausible"):
        load_pet(folder)


def test_folder_choice_rtstruct_ignored_and_wrong_modality_explained(tmp_path):
    write_series(tmp_path / "study" / "ct", _ct_volume())
    write_series(tmp_path / "study" / "pet", _pet_volume(), modality="PT", tags=_pet_tags())
    rt = _dataset(RTSTRUCT_CLASS, "RTSTRUCT", generate_uid())
    rt.save_as(tmp_path / "study" / "rs.dcm", enforce_file_format=True)
    assert load_ct(tmp_path / "study").modality == "CT"
    assert load_pet(tmp_path / "study").modality == "PET"
    with pytest.raises(InputError, match=r"ct: no PT series.*--ct"):
        load_pet(tmp_path / "study" / "ct")


def test_two_ct_series_in_one_folder_is_an_error(tmp_path):
    write_series(tmp_path / "both" / "a", _ct_volume())
    write_series(tmp_path / "both" / "b", _ct_volume())
    with pytest.raises(InputError, match=r"both: 2 CT series"):
        load_ct(tmp_path / "both")


@pytest.mark.parametrize(("z", "message"), [
    ([0, 3, 6, 9, 12, 15, 18, 21, 27, 30], "not uniform"),
    ([0, 3, 6, 9, 12, 12, 18, 21, 24, 27], "share a position"),
])
def test_missing_or_duplicate_slices_are_refused(tmp_path, z, message):
    folder = write_series(tmp_path / "gappy", _ct_volume(), z_positions=z)
    with pytest.raises(InputError, match=rf"gappy.*{message}"):
        load_ct(folder)


def test_folder_without_dicom_images_and_damaged_pixels(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"empty: no DICOM image files"):
        load_ct(tmp_path / "empty")
    folder = write_series(tmp_path / "damaged", _ct_volume())
    victim = sorted(folder.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:-100])  # pixel data cut short
    with pytest.raises(InputError, match=rf"damaged: cannot decode the pixels of {victim.name}"):
        load_ct(folder)
    victim.write_bytes(victim.read_bytes()[:300])  # header cut short
    with pytest.raises(InputError, match=rf"damaged: {victim.name} is a (damaged DICOM file|CT/PET image without its geometry)"):
        load_ct(folder)


def test_multiframe_images_are_refused_clearly(tmp_path):
    folder = write_series(tmp_path / "enhanced", _ct_volume(), tags={"NumberOfFrames": 10})
    with pytest.raises(InputError, match=r"enhanced: .*multi-frame"):
        load_ct(folder)


def test_errors_inside_a_zip_name_the_zip(tmp_path):
    import zipfile

    folder = write_series(tmp_path / "gappy", _ct_volume(), z_positions=[0, 3, 6, 9, 12, 15, 18, 21, 27, 30])
    archive = tmp_path / "gappy_series.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for file in folder.iterdir():
            out.write(file, f"series/{file.name}")
    with pytest.raises(InputError, match=r"gappy_series.zip: slice spacing is not uniform"):
        load_ct(archive)


def test_a_large_series_is_read_onto_its_working_grid(tmp_path, monkeypatch):
    """Above max_working_voxels the slices are averaged in blocks as they are read (pfs_core.io.reduce); a PET's
    per-slice SUV factors are averaged over the same slices."""
    vol = _ct_volume((32, 24, 20))
    ct_folder = write_series(tmp_path / "ct", vol)
    monkeypatch.setenv("PFS_CORE_MAX_WORKING_VOXELS", str(16 * 12 * 10))
    ct = load_ct(ct_folder)
    assert ct.shape == (16, 12, 10)
    np.testing.assert_allclose(ct.data, vol.reshape(16, 2, 12, 2, 10, 2).mean(axis=(1, 3, 5)), atol=0.5)
    rp = _radiopharmaceutical(start="233000")
    tags = _pet_tags(DecayCorrection="NONE", RadiopharmaceuticalInformationSequence=[rp], SeriesTime="000000")
    pet_folder = write_series(tmp_path / "pet", _pet_volume((32, 24, 20)), modality="PT", tags=tags,
                              slice_tags=lambda k: {"AcquisitionTime": f"00{k:02d}00"})
    pet = load_pet(pet_folder)
    factors = [70_000 / (350e6 * 2 ** (-(30 + k) * 60 / F18_HALF_LIFE_S)) for k in (0, 1)]
    assert pet.data[0, 0, 0] == pytest.approx(500.0 * np.mean(factors), rel=1e-3)
