"""Loading real scans: NIfTI and DICOM geometry, HU, SUV conversion (reads ../shared/data/real)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from pfs_core.io import load_ct, load_pet, world_overlap
from pfs_core.io.nifti import read_nifti_data

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not REAL.is_dir(), reason=f"real scans not present at {REAL}"),
]


def test_totalseg_nifti_ct_has_plausible_hu_and_ras_geometry():
    ct = load_ct(REAL / "totalseg_ct" / "example_ct.nii.gz")
    assert ct.shape == (122, 101, 112) and ct.data.dtype == np.float32
    assert ct.orientation == "RAS" and ct.spacing_mm == pytest.approx((3.0, 3.0, 3.0))
    assert ct.units == "HU" and ct.modality == "CT"
    assert np.percentile(ct.data, 1) < -950  # air
    liver = nib.load(REAL / "totalseg_ct" / "organs" / "liver.nii.gz").get_fdata() > 0.5
    assert 30 < np.median(ct.data[liver]) < 90  # liver soft tissue, HU


@pytest.mark.parametrize("relative", ["totalseg_ct/example_ct.nii.gz", "ibsi_sts_fdg/STS_001/CT_image.nii.gz",
                                      "ibsi_sts_fdg/STS_001/PET_image.nii.gz"])
def test_real_nifti_voxels_and_affine_are_nibabels(relative):
    image = nib.load(REAL / relative)
    expected = image.get_fdata(dtype=np.float32)
    read = read_nifti_data(REAL / relative)
    np.testing.assert_array_equal(read.data, expected)
    np.testing.assert_array_equal(read.affine, image.affine)
    assert read.value_range == (float(expected.min()), float(expected.max()))


def test_totalseg_dicom_ct_geometry_matches_image_position_patient():
    folder = REAL / "totalseg_ct" / "ct_dicom_20_slices"
    ct = load_ct(folder)
    assert ct.shape == (512, 512, 20)
    assert ct.spacing_mm[:2] == pytest.approx((0.9765625, 0.9765625))
    inverse = np.linalg.inv(ct.affine)
    for file in sorted(folder.iterdir())[::6]:
        ds = pydicom.dcmread(file)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        voxel = inverse @ np.array([-x, -y, z, 1.0])  # LPS → RAS
        assert voxel[:2] == pytest.approx([0.0, 0.0], abs=1e-4)
        k = int(round(voxel[2]))
        assert voxel[2] == pytest.approx(k, abs=1e-4)
        expected = ds.pixel_array.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(ct.data[:, :, k], expected)
    assert np.percentile(ct.data, 1) < -950 and -100 < np.median(ct.data[ct.data > -500]) < 200


@pytest.mark.parametrize("case", ["STS_001", "STS_002", "STS_003"])
def test_ibsi_pairs_load_on_different_grids_and_overlap(case):
    pet = load_pet(REAL / "ibsi_sts_fdg" / case / "PET_image.nii.gz")
    ct = load_ct(REAL / "ibsi_sts_fdg" / case / "CT_image.nii.gz")
    assert pet.orientation == ct.orientation == "LPS"
    assert pet.spacing_mm[0] > 4 > 1 > ct.spacing_mm[0]
    assert pet.units == "SUVbw" and "as stored" in pet.suv_note
    assert world_overlap(pet, ct).fraction > 0.9


def test_ibsi_dicom_folders_equal_the_ibsi_nifti():
    base = REAL / "ibsi_sts_fdg"
    for loader, name in ((load_ct, "CT"), (load_pet, "PET")):
        from_dicom = loader(base / "dicom" / "STS_001" / name)  # image/ + RTSTRUCT in mask/
        reference = nib.load(base / "STS_001" / f"{name}_image.nii.gz")
        np.testing.assert_allclose(from_dicom.affine, reference.affine, atol=1e-3)
        np.testing.assert_allclose(from_dicom.data, reference.get_fdata(), rtol=1e-5, atol=1e-3)
    assert "GML" in load_pet(base / "dicom" / "STS_001" / "PET").suv_note


def test_zipped_dicom_series_loads(tmp_path):
    folder = REAL / "ibsi_sts_fdg" / "dicom" / "STS_001" / "PET"
    archive = tmp_path / "pet_series.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for file in folder.rglob("*.dcm"):
            out.write(file, file.relative_to(folder).as_posix())
    from_zip = load_pet(archive)
    from_folder = load_pet(folder)
    assert from_zip.source == "pet_series.zip"
    np.testing.assert_array_equal(from_zip.data, from_folder.data)
    np.testing.assert_array_equal(from_zip.affine, from_folder.affine)


def test_whole_body_bqml_dicom_converts_to_the_ibsi_suv_within_one_percent():
    pet = load_pet(REAL / "sts001_pet_dicom" / "FDG_PET" / "image")
    assert pet.shape == (128, 128, 267) and pet.units == "SUVbw"
    assert "weight 71 kg" in pet.suv_note and "F-18" in pet.suv_note and "45.2 min" in pet.suv_note
    crop = nib.load(REAL / "ibsi_sts_fdg" / "STS_001" / "PET_image.nii.gz")
    expected = crop.get_fdata()
    ijk = np.indices(expected.shape).reshape(3, -1)
    world = crop.affine @ np.vstack([ijk, np.ones(ijk.shape[1])])
    voxel = (np.linalg.inv(pet.affine) @ world)[:3]
    assert np.abs(voxel - np.round(voxel)).max() < 1e-3  # the crop's voxel centres are DICOM voxel centres
    i, j, k = np.round(voxel).astype(int)
    converted = pet.data[i, j, k]
    assert converted.max() == pytest.approx(25.41, abs=0.01)
    assert converted.max() == pytest.approx(expected.max(), rel=0.01)
    hot = expected.reshape(-1) > 2.0
    relative = np.abs(converted[hot] / expected.reshape(-1)[hot] - 1.0)
    assert relative.max() < 0.01
