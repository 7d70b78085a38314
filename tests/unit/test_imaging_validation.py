"""Every input problem is one InputError that names the file (tiny bad files in tmp_path)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pfs_core.errors import InputError
from pfs_core.io import check_overlap, load_ct, load_pet, nifti
from pfs_core.io.nifti import read_nifti_data
from pfs_core.preprocessing.model_grid import load_case


def save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write a float32 NIfTI; the affine goes into the sform only, so degenerate ones can be written too."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine, code=1)
    header.set_qform(None, code=0)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), None, header=header), path)
    return path


def ct_data(shape=(12, 10, 9)) -> np.ndarray:
    data = np.full(shape, -1000.0)
    data[2:-2, 2:-2, :] = 40.0
    return data


def pet_data(shape=(12, 10, 9)) -> np.ndarray:
    data = np.full(shape, 0.2)
    data[5, 5, 4] = 8.0
    return data


def raises_naming(path: Path, match: str):
    return pytest.raises(InputError, match=rf"{path.name}.*{match}")


def test_good_files_load_and_trailing_singleton_axis_is_fine(tmp_path):
    assert load_ct(save(tmp_path / "ct.nii.gz", ct_data())).shape == (12, 10, 9)
    assert load_ct(save(tmp_path / "ct4.nii.gz", ct_data()[..., None])).shape == (12, 10, 9)
    pet = load_pet(save(tmp_path / "pet.nii", pet_data()))
    assert pet.data.max() == pytest.approx(8.0) and pet.units == "SUVbw"


@pytest.mark.parametrize(("name", "data", "affine", "match"), [
    ("four_d.nii.gz", np.zeros((12, 10, 9, 5)), None, "4D image"),
    ("two_d.nii.gz", np.zeros((12, 10)), None, "2D image"),
    ("nan.nii.gz", np.where(np.arange(12 * 10 * 9).reshape(12, 10, 9) == 7, np.nan, ct_data()), None, "NaN"),
    ("spacing20.nii.gz", ct_data(), np.diag([20.0, 20.0, 20.0, 1.0]), "spacing 20x20x20 mm"),
    ("tiny.nii.gz", ct_data((12, 10, 4)), None, "size 12x10x4"),
    ("no_air.nii.gz", ct_data() + 1000.0, None, "no air"),
    ("degenerate.nii.gz", ct_data(), np.diag([2.0, 2.0, 0.0, 1.0]), "degenerate"),
])
def test_bad_ct_files(tmp_path, name, data, affine, match):
    path = save(tmp_path / name, data, affine)
    with raises_naming(path, match):
        load_ct(path)


def test_empty_truncated_text_and_unknown_files(tmp_path):
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    with raises_naming(empty, "empty file"):
        load_ct(empty)
    good = save(tmp_path / "good.nii.gz", ct_data((40, 40, 40)) + np.random.default_rng(0).normal(0, 5, (40, 40, 40)))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with raises_naming(truncated, "truncated or damaged"):
        load_ct(truncated)
    text = tmp_path / "notes.nii.gz"
    text.write_text("this is not an image\n")
    with raises_naming(text, "not a readable NIfTI"):
        load_ct(text)
    gz_text = tmp_path / "gzipped_text.nii.gz"
    gz_text.write_bytes(gzip.compress(b"hello" * 100))
    with raises_naming(gz_text, "NIfTI"):
        load_pet(gz_text)
    for name, match in (("scan.mha", "unknown image format"), ("slice.dcm", "single DICOM file"),
                        ("series.zip", "not a readable .zip")):
        (tmp_path / name).write_text("x")
        with raises_naming(tmp_path / name, match):
            load_ct(tmp_path / name)
    with raises_naming(tmp_path / "missing.nii.gz", "not found"):
        load_ct(tmp_path / "missing.nii.gz")


def test_pet_with_ct_values_is_called_swapped(tmp_path):
    path = save(tmp_path / "really_ct.nii.gz", ct_data())
    with raises_naming(path, "swapped"):
        load_pet(path)
    with raises_naming(path, "swapped"):
        load_case(path, save(tmp_path / "really_pet.nii.gz", pet_data()))


def test_negative_pet_is_refused(tmp_path):
    path = save(tmp_path / "negative.nii.gz", pet_data() - 3.0)
    with raises_naming(path, "negative"):
        load_pet(path)


def test_bqml_nifti_needs_weight_and_dose_and_converts(tmp_path):
    path = save(tmp_path / "bqml.nii.gz", pet_data() * 5000.0)
    with raises_naming(path, r"Bq/mL.*weight_kg \(--weight-kg\) and dose_mbq \(--dose-mbq\)"):
        load_pet(path)
    pet = load_pet(path, weight_kg=70.0, dose_mbq=350.0)
    assert pet.data.max() == pytest.approx(8.0 * 5000.0 * 70_000 / 350e6, rel=1e-5)
    assert "already decay-corrected to scan start" in pet.suv_note
    with raises_naming(path, "radionuclide"):
        load_pet(path, weight_kg=70.0, dose_mbq=350.0, uptake_min=60.0)
    decayed = load_pet(path, weight_kg=70.0, dose_mbq=350.0, uptake_min=67.71, radionuclide="Ga-68")
    assert decayed.data.max() == pytest.approx(2 * pet.data.max(), rel=1e-3)
    assert "60" not in decayed.suv_note and "67.7 min (Ga-68)" in decayed.suv_note
    forced = load_pet(save(tmp_path / "low_bqml.nii.gz", pet_data()), pet_units="bqml", weight_kg=70, dose_mbq=350)
    assert forced.data.max() == pytest.approx(8.0 * 70_000 / 350e6, rel=1e-5)
    with raises_naming(path, "weight 2000 kg is implausible"):
        load_pet(path, weight_kg=2000.0, dose_mbq=350.0)


def test_pet_and_ct_that_do_not_overlap_are_refused(tmp_path):
    far = np.diag([2.0, 2.0, 2.0, 1.0])
    far[:3, 3] = [500.0, 0.0, 0.0]
    pet_path = save(tmp_path / "pet_far.nii.gz", pet_data(), far)
    ct_path = save(tmp_path / "ct_here.nii.gz", ct_data())
    with pytest.raises(InputError, match=r"pet_far.nii.gz and ct_here.nii.gz.*overlap by only 0.0%"):
        load_case(pet_path, ct_path)
    near = np.diag([2.0, 2.0, 2.0, 1.0])
    near[:3, 3] = [12.0, 0.0, 0.0]  # half of the 24 mm wide boxes overlap
    pet, ct = load_case(save(tmp_path / "pet_near.nii.gz", pet_data(), near), ct_path)
    assert check_overlap(pet, ct) == pytest.approx(0.5)


@pytest.mark.parametrize(("dtype", "slope", "inter", "finite"), [
    ("<i2", 1.0, 0.0, True), (">i2", 1.0, 0.0, True), ("<u2", 1.0, -1024.0, True), ("<i2", 0.5, 3.0, True),
    ("u1", 2.0, -10.0, True), ("<i4", 1.0, 0.0, True), ("<f4", 1.0, 0.0, False), (">f4", 1.0, 0.0, False),
    ("<f8", 1.0, 0.0, False), ("<f4", 2.0, 1.0, False), ("<i2", 1e36, 0.0, False),
])
def test_nifti_voxels_are_the_stored_values_times_slope_plus_intercept(tmp_path, monkeypatch, dtype, slope, inter,
                                                                         finite):
    """Read in slabs of 1-2 slices here (as a CT is read in slabs of a few MiB), for .nii.gz and .nii alike."""
    monkeypatch.setattr(nifti, "CHUNK_BYTES", 300)
    stored = np.random.default_rng(3).integers(0, 200, (12, 10, 9)).astype(dtype)
    image = nib.Nifti1Image(stored, np.diag([2.0, 2.0, 2.0, 1.0]))
    image.header.set_data_dtype(np.dtype(dtype))
    image.header.set_slope_inter(slope, inter)
    for name in ("image.nii.gz", "image.nii"):
        nib.save(image, tmp_path / name)
        read = read_nifti_data(tmp_path / name)
        assert read.data.dtype == np.float32 and read.data.flags.f_contiguous and read.data.flags.writeable
        np.testing.assert_allclose(read.data, stored.astype(np.float64) * slope + inter, rtol=1e-6)
        np.testing.assert_array_equal(read.data, nib.load(tmp_path / name).get_fdata(dtype=np.float32))
        assert read.value_range == (float(read.data.min()), float(read.data.max()))
        assert read.finite is finite  # integers whose scaled values all fit in float32


def test_damaged_gz_files_are_refused_naming_the_file(tmp_path):
    data = np.full((30, 20, 10), -1000, dtype=np.int16)
    data[5:20, 5:15] = 40
    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), good)
    packed = good.read_bytes()
    plain = gzip.decompress(packed)
    middle = len(packed) // 2
    variants = {
        "half.nii.gz": packed[:middle],
        "no_trailer.nii.gz": packed[:-4],
        "flipped_byte.nii.gz": packed[:middle] + bytes([packed[middle] ^ 0xFF]) + packed[middle + 1:],
        "short_voxels.nii.gz": gzip.compress(plain[:-100]),
        "header_only.nii.gz": gzip.compress(plain[:352]),
        "trailing_garbage.nii.gz": packed + b"garbage!",
        "short_voxels.nii": plain[:-100],
    }
    for name, content in variants.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: the image data cannot be read \(\w+: .+\); "
                                             r"the file is truncated or damaged: copy or export it again$"):
            read_nifti_data(path)
    for name, content in {"two_members.nii.gz": gzip.compress(plain[:5000]) + gzip.compress(plain[5000:]),
                          "trailing_zeros.nii.gz": packed + bytes(16)}.items():
        (tmp_path / name).write_bytes(content)
        np.testing.assert_array_equal(read_nifti_data(tmp_path / name).data, data.astype(np.float32))


def test_a_header_claiming_too_many_voxels_is_refused_before_any_voxel_is_read(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((2048, 2048, 200))  # 3.4 GB of float32 claimed, 100 bytes of voxels given
    header.set_data_dtype(np.float32)
    header.set_sform(np.diag([1.0, 1.0, 1.0, 1.0]), code=1)
    path = tmp_path / "huge.nii.gz"
    path.write_bytes(gzip.compress(header.binaryblock + bytes(4) + bytes(100)))
    with raises_naming(path, r"image size 2048x2048x200 voxels is outside 8\.\.2048 per axis \(at most 536870912"):
        load_ct(path)


def test_checks_that_use_the_range_read_with_the_voxels_keep_their_messages(tmp_path):
    """The checks reuse the (min, max) taken while reading; their conditions and messages stay the same."""
    pet = pet_data()
    bad = pet.copy()
    bad[1, 1, 1], bad[2, 2, 2] = np.nan, np.inf
    path = save(tmp_path / "bad_pet.nii.gz", bad)
    with pytest.raises(InputError, match=r"^" + re.escape(f"{path}: 2 voxel(s) are NaN or infinite; replace them")):
        load_pet(path)
    ct = ct_data()
    bad_ct = ct.copy()
    bad_ct[3, 3, 3] = -np.inf
    path = save(tmp_path / "bad_ct.nii.gz", bad_ct)
    with pytest.raises(InputError, match=re.escape(f"{path}: 1 voxel(s) are NaN or infinite")):
        load_ct(path)
    path = save(tmp_path / "no_air.nii.gz", ct + 200.0)
    with pytest.raises(InputError, match=re.escape(f"{path}: no voxel below -900 HU (minimum -800), so there is")):
        load_ct(path)
    negative = pet - 3.0
    low = float(np.percentile(negative.astype(np.float32), 0.1))
    path = save(tmp_path / "negative.nii.gz", negative)
    with pytest.raises(InputError, match=re.escape(f"{path}: PET has clearly negative values (0.1th percentile "
                                                   f"{low:.3g} SUV)")):
        load_pet(path)
    slightly = pet.copy()
    slightly[0, :, :] = -0.45  # minimum above -0.5: accepted without a percentile
    assert load_pet(save(tmp_path / "slightly.nii.gz", slightly)).data.min() == np.float32(-0.45)
    slightly[1, 1, 1] = -150.0  # 1 of 1080 voxels below -100 (not a CT), 0.1th percentile -0.45: accepted
    assert load_pet(save(tmp_path / "one_low.nii.gz", slightly)).data.min() == -150.0
