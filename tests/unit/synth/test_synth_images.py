"""Geometry and intensities of the simulated PET/CT."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from pfs_core.synth import ORGAN_LABELS

LABEL = {v: k for k, v in ORGAN_LABELS.items()}


def _load(folder: Path, pid: str, kind: str) -> nib.Nifti1Image:
    return nib.load(str(folder / "images" / f"{pid}_{kind}.nii.gz"))


def _ids(folder: Path) -> list[str]:
    return list(pd.read_csv(folder / "cohort.csv")["patient_id"])


def _box(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    corners = np.array([[i, j, k, 1] for i in (0, img.shape[0] - 1) for j in (0, img.shape[1] - 1)
                        for k in (0, img.shape[2] - 1)], dtype=float)
    world = (img.affine @ corners.T).T[:, :3]
    return world.min(axis=0), world.max(axis=0)


def _sample(img: nib.Nifti1Image, data: np.ndarray, world: np.ndarray) -> np.ndarray:
    """Trilinear sample of ``data`` at world points (N, 3) mm."""
    idx = (np.linalg.inv(img.affine) @ np.c_[world, np.ones(len(world))].T)[:3]
    return ndimage.map_coordinates(data, idx, order=1, mode="nearest")


def test_files_types_and_grids(image_cohort: Path) -> None:
    cohort = pd.read_csv(image_cohort / "cohort.csv")
    for _, row in cohort.iterrows():
        ct = nib.load(str(image_cohort / row["ct"]))
        pet = nib.load(str(image_cohort / row["pet"]))
        les = _load(image_cohort, row["patient_id"], "lesions")
        org = _load(image_cohort, row["patient_id"], "organs")
        assert ct.get_data_dtype() == np.int16 and pet.get_data_dtype() == np.float32
        assert les.get_data_dtype() == np.uint16 and org.get_data_dtype() == np.uint8
        assert les.shape == org.shape == ct.shape
        assert np.allclose(les.affine, ct.affine) and np.allclose(org.affine, ct.affine)
        assert nib.aff2axcodes(ct.affine) == ("R", "A", "S") == nib.aff2axcodes(pet.affine)
        zooms_ct, zooms_pet = ct.header.get_zooms(), pet.header.get_zooms()
        assert 2.5 <= zooms_ct[0] <= 3.0 and zooms_ct[0] == zooms_ct[1] and zooms_ct[2] == pytest.approx(3.0)
        assert 4.0 <= zooms_pet[0] <= 4.7 and 4.0 <= zooms_pet[2] <= 5.0
        assert 330 <= ct.shape[2] * zooms_ct[2] <= 381
        # real affines with an origin, different between PET and CT
        assert np.abs(ct.affine[:3, 3]).max() > 100
        assert not np.allclose(ct.affine[:3, 3], pet.affine[:3, 3], atol=1.0)
        # the world boxes overlap by a large fraction of the CT
        (c0, c1), (p0, p1) = _box(ct), _box(pet)
        inter = np.clip(np.minimum(c1, p1) - np.maximum(c0, p0), 0, None).prod()
        assert inter / (c1 - c0).prod() > 0.7


def test_lesion_centres_land_in_labels_and_hotspots(image_cohort: Path) -> None:
    lesions = pd.read_csv(image_cohort / "lesions.csv")
    truth = pd.read_csv(image_cohort / "ground_truth.csv").set_index("patient_id")
    assert {"liver", "lymph_node", "bone"} <= set(lesions["site"])
    assert lesions["sstr_negative"].sum() >= 1
    checked_hot = checked_cold = 0
    for pid, rows in lesions.groupby("patient_id"):
        les_img = _load(image_cohort, pid, "lesions")
        pet_img = _load(image_cohort, pid, "pet")
        les, pet = np.asarray(les_img.dataobj), pet_img.get_fdata(dtype=np.float32)
        centres = rows[["centre_x_mm", "centre_y_mm", "centre_z_mm"]].to_numpy()
        idx = np.rint((np.linalg.inv(les_img.affine) @ np.c_[centres, np.ones(len(rows))].T)[:3]).astype(int)
        assert (les[tuple(idx)] == rows["lesion_label"].to_numpy()).all()
        assert set(np.unique(les)) - {0} == set(rows["lesion_label"])
        liver_suv = truth.loc[pid, "liver_suv"]
        at_centre = _sample(pet_img, pet, centres)
        for (_, row), value in zip(rows.iterrows(), at_centre, strict=True):
            if row["volume_ml"] < 2.0:
                continue
            if row["sstr_negative"] == 0 and row["suv_mean"] >= 1.8 * liver_suv:
                assert value > 1.2 * liver_suv, row.to_dict()
                checked_hot += 1
            elif row["sstr_negative"] == 1:
                assert value < liver_suv, row.to_dict()
                checked_cold += 1
    assert checked_hot >= 3 and checked_cold >= 1


def test_tissue_values(image_cohort: Path) -> None:
    hu_range = {
        "lung": (-900, -780), "fat": (-130, -70), "soft_tissue": (20, 65), "liver": (45, 75), "spleen": (30, 60),
        "kidney": (15, 55), "bladder": (-10, 25), "bone": (200, 900),
    }
    for pid in _ids(image_cohort):
        ct_img, pet_img = _load(image_cohort, pid, "ct"), _load(image_cohort, pid, "pet")
        ct = np.asarray(ct_img.dataobj)
        organs = np.asarray(_load(image_cohort, pid, "organs").dataobj)
        assert (ct[organs == 0] == -1000).all()
        for name, (lo, hi) in hu_range.items():
            median = float(np.median(ct[organs == LABEL[name]]))
            assert lo <= median <= hi, (pid, name, median)
        # PET ordering spleen > kidney > liver > background, away from organ borders
        pet = pet_img.get_fdata(dtype=np.float32)
        lesion_free = np.asarray(_load(image_cohort, pid, "lesions").dataobj) == 0
        medians = {}
        for name in ("spleen", "kidney", "liver", "soft_tissue"):
            core = ndimage.binary_erosion(organs == LABEL[name], iterations=2) & lesion_free
            world = nib.affines.apply_affine(ct_img.affine, np.argwhere(core))
            medians[name] = float(np.median(_sample(pet_img, pet, world)))
        assert medians["spleen"] > medians["kidney"] > medians["liver"] > 2 * medians["soft_tissue"], medians
        assert 0.3 < medians["soft_tissue"] < 2.0 and 4.0 < medians["liver"] < 10.0, medians
        assert float(pet.min()) >= 0.0


def test_liver_volume_matches_ground_truth(image_cohort: Path) -> None:
    lesions = pd.read_csv(image_cohort / "lesions.csv")
    truth = pd.read_csv(image_cohort / "ground_truth.csv").set_index("patient_id")
    for pid in _ids(image_cohort):
        liver_lesions = lesions[(lesions.patient_id == pid) & (lesions.site == "liver")]
        if liver_lesions.empty or truth.loc[pid, "liver_tumour_fraction"] < 1e-3:
            continue
        analytic = liver_lesions["volume_ml"].sum() / truth.loc[pid, "liver_tumour_fraction"]
        img = _load(image_cohort, pid, "organs")
        voxels = int((np.asarray(img.dataobj) == LABEL["liver"]).sum())
        image_ml = voxels * float(np.prod(img.header.get_zooms())) / 1000.0
        assert abs(image_ml / analytic - 1.0) < 0.1, (pid, image_ml, analytic)
