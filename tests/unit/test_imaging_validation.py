"""Every input problem is one InputError that names the file (tiny bad files in tmp_path)."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pfs_core.errors import InputError
from pfs_core.io import check_overlap, load_ct, load_pet
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
