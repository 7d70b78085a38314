"""Model grid, resampling, inverse mapping and the cohort cache (synthetic volumes + IBSI PET/CT pairs)."""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from pfs_core.config import PreprocessConfig
from pfs_core.errors import InputError
from pfs_core.io import Volume, load_ct, load_pet
from pfs_core.preprocessing.model_grid import (
    _antialias_sigma,
    body_centre,
    model_grid_affine,
    preprocess_case,
    preprocess_cohort,
    to_model_grid,
    to_reference_grid,
)

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
SMALL = PreprocessConfig(spacing_mm=(4.0, 4.0, 4.0), shape=(24, 20, 16))


def world_grid(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """World coordinates (mm) of every voxel centre, ``(*shape, 3)``."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def centroid(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return (world_grid(affine, data.shape) * data[..., None]).sum(axis=(0, 1, 2)) / data.sum()


def centred_affine(spacing, shape, centre, *, lps: bool) -> np.ndarray:
    """Axis-aligned affine (LPS- or RAS-stored voxel axes) whose grid centre is the world point ``centre``."""
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0]) if lps else np.diag([*spacing, 1.0])
    affine[:3, 3] = np.asarray(centre) - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return affine


def synthetic_pair(*, body_centre=(10.0, -20.0, 30.0), hot=(25.0, -10.0, 40.0), ct_shape=(130, 100, 130),
                   pet_shape=(90, 70, 90)) -> tuple[Volume, Volume]:
    """CT (LPS, 1.2x1.5x1.5 mm): ellipsoid body of 40 HU in air; PET (RAS, 2 mm): 1 SUV body + 10 SUV sphere.

    Both grids are centred 5 mm off the body centre, in different directions.
    """
    centre = np.asarray(body_centre)
    ct_affine = centred_affine((1.2, 1.5, 1.5), ct_shape, centre + (5.0, 0.0, 0.0), lps=True)
    world = world_grid(ct_affine, ct_shape)
    body = (((world - centre) / (60.0, 45.0, 80.0)) ** 2).sum(-1) < 1
    ct = Volume(np.where(body, 40.0, -1000.0).astype(np.float32), ct_affine, "ct", "CT", "HU")
    pet_affine = centred_affine((2.0, 2.0, 2.0), pet_shape, centre - (0.0, 5.0, 5.0), lps=False)
    world = world_grid(pet_affine, pet_shape)
    pet_body = (((world - centre) / (60.0, 45.0, 80.0)) ** 2).sum(-1) < 1
    sphere = ((world - hot) ** 2).sum(-1) < 8.0**2
    pet_data = np.where(sphere, 10.0, np.where(pet_body, 1.0, 0.0)).astype(np.float32)
    return Volume(pet_data, pet_affine, "pet", "PET", "SUVbw", "test"), ct


def test_model_grid_is_centred_and_oriented():
    affine = model_grid_affine(np.array([1.0, 2.0, 3.0]), SMALL)
    centre = affine @ np.array([*(np.array(SMALL.shape) - 1) / 2, 1.0])
    assert centre[:3] == pytest.approx([1.0, 2.0, 3.0])
    assert "".join(nib.aff2axcodes(affine)) == "RAS"
    lps = PreprocessConfig(orientation="LPS", spacing_mm=(4.0, 4.0, 4.0), shape=(24, 20, 16))
    assert "".join(nib.aff2axcodes(model_grid_affine(np.zeros(3), lps))) == "LPS"


def test_body_centre_is_the_world_centre_of_the_box_above_the_threshold():
    data = np.full((40, 30, 20), -1000.0, np.float32, order="F")  # nibabel's layout
    data[5:15, 10:30, 3:8] = 40.0
    data[20, 2, 12] = -400.0  # one voxel above -500 HU widens the box to i 5..20, j 2..29, k 3..12
    affine = np.diag([-2.0, -1.5, 3.0, 1.0])
    affine[:3, 3] = (50.0, 20.0, -30.0)
    ct = Volume(data, affine, "ct.nii.gz", "CT", "HU")
    # box centre in voxels (12.5, 15.5, 7.5) → world 50 - 2 * 12.5, 20 - 1.5 * 15.5, -30 + 3 * 7.5 (mm)
    assert body_centre(ct, -500.0) == pytest.approx([25.0, -3.25, -7.5])
    assert body_centre(ct, 0.0) == pytest.approx([50 - 2 * 9.5, 20 - 1.5 * 19.5, -30 + 3 * 5.0])  # the box only
    with pytest.raises(InputError, match=r"^ct.nii.gz: no body found \(no voxel above 100 HU\)"):
        body_centre(ct, 100.0)


def test_a_linear_ramp_is_scaled_clipped_and_resampled_to_its_world_values():
    """CT linear in world x (6 HU/mm, -200 HU at x = -50 mm, 400 HU at x = 50 mm). The Gaussian (symmetric,
    normalised) and trilinear interpolation both keep a linear function, so each model voxel holds
    (HU + 200) / 600 = (x + 50) / 100 at its own world position, clipped to [0, 1]."""
    shape = (120, 40, 40)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-60.0, -20.0, -20.0)
    x = world_grid(affine, shape)[..., 0]
    ct = Volume((6.0 * x + 100.0).astype(np.float32), affine, "ramp", "CT", "HU")
    inside = PreprocessConfig(spacing_mm=(4.0, 4.0, 4.0), shape=(21, 8, 8))  # x -40..40 mm: 10 mm from the clip
    model_affine = model_grid_affine(np.zeros(3), inside)
    expected = (world_grid(model_affine, inside.shape)[..., 0] + 50.0) / 100.0
    smoothed = to_model_grid(ct, low=-200.0, high=400.0, model_affine=model_affine, config=inside)
    assert smoothed.dtype == np.float32 and smoothed.shape == inside.shape
    np.testing.assert_allclose(smoothed, expected, atol=1e-5)
    wide = PreprocessConfig(spacing_mm=(4.0, 4.0, 4.0), shape=(29, 8, 8), antialias=False)  # x -56..56 mm
    model_affine = model_grid_affine(np.zeros(3), wide)
    expected = np.clip((world_grid(model_affine, wide.shape)[..., 0] + 50.0) / 100.0, 0.0, 1.0)
    sharp = to_model_grid(ct, low=-200.0, high=400.0, model_affine=model_affine, config=wide)
    np.testing.assert_allclose(sharp, expected, atol=1e-5)
    assert sharp[:2].max() == 0.0 and sharp[-2:].min() == 1.0  # x = ±56, ±52 mm: beyond the window


def test_antialiasing_is_a_gaussian_of_sigma_from_the_spacing_ratio_truncated_at_3_sigma():
    """A one-voxel bright plane at x = 2 mm (1-mm voxels) on a 4-mm grid whose voxels lie at x = 0, ±4, ...
    sigma = (4 / 1 - 1) / 2 = 1.5 voxels, kernel radius int(3 * 1.5 + 0.5) = 5 voxels: the model voxels
    2 mm from the plane hold the normalised kernel weight at 2 voxels, those 6 mm away hold 0."""
    data = np.full((41, 41, 41), -200.0, np.float32)
    data[22] = 3000.0  # x = 2 mm; bone: clipped to the window (1 after scaling) before the smoothing
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -20.0
    ct = Volume(data, affine, "plane", "CT", "HU")
    config = PreprocessConfig(spacing_mm=(4.0, 4.0, 4.0), shape=(9, 9, 9))  # voxel 4 at x = 0
    assert _antialias_sigma(ct, config) == pytest.approx([1.5, 1.5, 1.5])
    weights = np.exp(-np.arange(-5, 6) ** 2 / (2 * 1.5**2))
    at_two = weights[5 + 2] / weights.sum()  # 0.10936
    model = to_model_grid(ct, low=-200.0, high=400.0, model_affine=model_grid_affine(np.zeros(3), config),
                          config=config)
    np.testing.assert_allclose(model[4], at_two, atol=1e-6)  # x = 0
    np.testing.assert_allclose(model[5], at_two, atol=1e-6)  # x = 4 mm
    assert model[[0, 1, 2, 3, 6, 7, 8]].max() == 0.0  # 6 mm and more from the plane
    unsmoothed = to_model_grid(ct, low=-200.0, high=400.0, model_affine=model_grid_affine(np.zeros(3), config),
                               config=config, antialias=False)
    assert unsmoothed.max() == 0.0  # without anti-aliasing the plane falls between the model voxels
    coarse = Volume(np.zeros((20, 20, 20), np.float32), np.diag([1.0, 2.0, 4.0, 1.0]), "ct", "CT", "HU")
    assert _antialias_sigma(coarse, config) == pytest.approx([1.5, 0.5, 0.0])  # no smoothing when not finer


def test_case_on_model_grid_keeps_world_positions():
    pet, ct = synthetic_pair()
    case = preprocess_case(pet, ct, SMALL)
    assert case.ct.shape == case.pet.shape == SMALL.shape and case.ct.dtype == np.float32
    assert 0.0 <= case.ct.min() and case.ct.max() <= 1.0 and 0.0 <= case.pet.min() and case.pet.max() <= 1.0
    np.testing.assert_allclose(case.reference_affine, ct.affine)
    assert case.reference_shape == ct.shape and case.pet_suv_max_original == pytest.approx(10.0)
    # the model grid is centred on the body, the hot sphere stays where it was in world space
    assert centroid(case.ct > 0.1, case.model_affine) == pytest.approx([10.0, -20.0, 30.0], abs=1.0)
    hot = case.pet > 0.25  # > 5 SUV
    assert centroid(hot, case.model_affine) == pytest.approx([25.0, -10.0, 40.0], abs=1.0)
    assert case.ct[0, 0, 0] == 0.0  # air / padding


def test_small_body_is_padded_with_zero_and_large_body_cropped():
    pet, ct = synthetic_pair()
    big = PreprocessConfig(spacing_mm=(4.0, 4.0, 4.0), shape=(64, 64, 64))  # 256 mm: beyond the CT field of view
    case = preprocess_case(pet, ct, big)
    assert case.ct[:3].max() == 0.0 and case.pet[:3].max() == 0.0
    tight = PreprocessConfig(spacing_mm=(2.0, 2.0, 2.0), shape=(16, 16, 16))  # 32 mm: inside the body
    assert preprocess_case(pet, ct, tight).ct.min() > 0.2  # 40 HU everywhere


def test_pet_only_case_uses_the_pet_grid_as_reference():
    pet, _ct = synthetic_pair()
    case = preprocess_case(pet, None, SMALL)
    assert case.ct is None and case.reference_shape == pet.shape
    np.testing.assert_allclose(case.reference_affine, pet.affine)
    assert centroid(case.pet > 0.25, case.model_affine) == pytest.approx([25.0, -10.0, 40.0], abs=1.0)
    with pytest.raises(InputError, match="no image"):
        preprocess_case(None, None, SMALL)


def test_blob_in_model_space_returns_to_the_right_world_position_on_the_ct_grid():
    pet, ct = synthetic_pair()
    case = preprocess_case(pet, ct, SMALL)
    target = case.model_affine @ np.array([6.0, 13.0, 9.0, 1.0])
    blob = np.exp(-(((world_grid(case.model_affine, SMALL.shape) - target[:3]) ** 2).sum(-1)) / (2 * 6.0**2))
    image = to_reference_grid(blob.astype(np.float32), case, chunk_voxels=100_000)  # several slabs
    assert image.shape == ct.shape
    np.testing.assert_array_equal(image.affine, ct.affine)
    data = np.asarray(image.dataobj)
    assert centroid(data, image.affine) == pytest.approx(target[:3], abs=0.5)
    peak = np.unravel_index(np.argmax(data), data.shape)
    assert np.linalg.norm((ct.affine @ np.array([*peak, 1.0]))[:3] - target[:3]) < 2.0
    with pytest.raises(ValueError, match="model shape"):
        to_reference_grid(np.zeros((3, 3, 3)), case)


def test_one_case_takes_well_under_a_second():
    pet, ct = synthetic_pair()
    config = PreprocessConfig()
    preprocess_case(pet, ct, config)  # warm-up (first MONAI/torch calls)
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        preprocess_case(pet, ct, config)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 1.0, timings


@pytest.mark.real_data
@pytest.mark.skipif(not REAL.is_dir(), reason=f"real scans not present at {REAL}")
@pytest.mark.parametrize("name", ["STS_001", "STS_002", "STS_003"])
def test_ibsi_tumour_masks_stay_on_the_tumour(name):
    folder = REAL / "ibsi_sts_fdg" / name
    pet, ct = load_pet(folder / "PET_image.nii.gz"), load_ct(folder / "CT_image.nii.gz")
    config = PreprocessConfig(spacing_mm=(3.0, 3.0, 3.0), shape=(64, 64, 64))
    case = preprocess_case(pet, ct, config)
    masks = {}
    for kind in ("PET", "CT"):
        image = nib.load(folder / f"{kind}_mask.nii.gz")
        mask = Volume(np.asarray(image.dataobj, dtype=np.float32), image.affine, kind, "PET", "SUVbw")
        masks[kind] = to_model_grid(mask, low=0.0, high=1.0, model_affine=case.model_affine, config=config)
    pet_mask, ct_mask = masks["PET"] > 0.5, masks["CT"] > 0.5
    dice = 2 * (pet_mask & ct_mask).sum() / (pet_mask.sum() + ct_mask.sum())
    assert dice > 0.9, dice  # measured 0.95-0.98
    shift = centroid(masks["PET"], case.model_affine) - centroid(masks["CT"], case.model_affine)
    assert np.linalg.norm(shift) < 1.0, shift  # mm; the original masks' centroids are 0.2 mm apart
    tumour = masks["CT"] > 0.5
    assert case.pet[tumour].mean() > 3 * case.pet[~tumour & (case.ct > 0)].mean()  # FDG-avid sarcoma


@pytest.mark.real_data
@pytest.mark.skipif(not REAL.is_dir(), reason=f"real scans not present at {REAL}")
def test_ibsi_resampling_equals_independent_trilinear_interpolation():
    """Away from the image edges, the model-grid values equal scipy's trilinear interpolation at the same world
    points (clip → interpolate), for the PET (different grid) and the CT: no flips, no half-voxel shifts."""
    folder = REAL / "ibsi_sts_fdg" / "STS_003"
    pet, ct = load_pet(folder / "PET_image.nii.gz"), load_ct(folder / "CT_image.nii.gz")
    config = PreprocessConfig(spacing_mm=(3.0, 3.0, 3.0), shape=(64, 64, 64), antialias=False)
    case = preprocess_case(pet, ct, config)
    ijk = np.vstack([np.indices(config.shape).reshape(3, -1), np.ones((1, np.prod(config.shape)))])
    for volume, model, (low, high) in ((pet, case.pet, (0.0, config.pet_suv_max)), (ct, case.ct, config.ct_window_hu)):
        source = (np.linalg.inv(volume.affine) @ case.model_affine @ ijk)[:3]
        inside = np.all((source > 0.5) & (source < np.array(volume.shape)[:, None] - 1.5), axis=0)
        scaled = (np.clip(volume.data, low, high) - low) / (high - low)
        expected = map_coordinates(scaled, source[:, inside], order=1)
        assert inside.sum() > 10_000
        np.testing.assert_allclose(model.reshape(-1)[inside], expected, atol=1e-4)


def _write_case(folder: Path, name: str, shift: float) -> tuple[str, str]:
    pet, ct = synthetic_pair(hot=(25.0 + shift, -10.0, 40.0), ct_shape=(60, 50, 60), pet_shape=(45, 35, 45))
    nib.save(nib.Nifti1Image(ct.data, ct.affine), folder / f"{name}_ct.nii.gz")
    nib.save(nib.Nifti1Image(pet.data, pet.affine), folder / f"{name}_pet.nii.gz")
    return f"images/{name}_pet.nii.gz", f"images/{name}_ct.nii.gz"


def test_cohort_is_cached_and_a_corrupt_entry_recomputed(tmp_path, monkeypatch):
    (tmp_path / "cohort" / "images").mkdir(parents=True)
    rows = ["patient_id,pet,ct,age"]
    for i, shift in enumerate((0.0, 8.0)):
        pet_rel, ct_rel = _write_case(tmp_path / "cohort" / "images", f"p{i}", shift)
        rows.append(f"p{i},{pet_rel},{ct_rel},60")
    rows.append("p2,images/p0_pet.nii.gz,,61")  # PET only
    csv_path = tmp_path / "cohort" / "cohort.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    import pfs_core.preprocessing.model_grid as module

    calls = []
    real = module.preprocess_case
    monkeypatch.setattr(module, "preprocess_case", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache = tmp_path / "cache"
    first = preprocess_cohort(csv_path, SMALL, cache_dir=cache)
    assert first.patient_ids == ["p0", "p1", "p2"] and first.pet.shape == (3, *SMALL.shape)
    assert first.has_ct.tolist() == [True, True, False] and first.ct[2].max() == 0.0
    assert len(calls) == 3 and len(list(cache.glob("*.npz"))) == 3
    second = preprocess_cohort(csv_path, SMALL, cache_dir=cache)
    assert len(calls) == 3  # all hits
    np.testing.assert_array_equal(first.pet, second.pet)
    np.testing.assert_array_equal(first.ct, second.ct)
    sorted(cache.glob("*.npz"))[0].write_bytes(b"garbage")
    third = preprocess_cohort(csv_path, SMALL, cache_dir=cache)
    assert len(calls) == 4
    np.testing.assert_array_equal(first.pet, third.pet)
    preprocess_cohort(csv_path, PreprocessConfig(spacing_mm=(5.0, 5.0, 5.0), shape=(24, 20, 16)), cache_dir=cache)
    assert len(calls) == 7  # another config: other keys


def test_cohort_errors_name_the_patient(tmp_path):
    csv_path = tmp_path / "cohort.csv"
    csv_path.write_text("patient_id,pet,ct\nx7,missing_pet.nii.gz,missing_ct.nii.gz\n")
    with pytest.raises(InputError, match=r"cohort.csv: row 2 \(pet\): missing_pet.nii.gz: image not found in the cohort folder "
                                          r"or not allowed"):
        preprocess_cohort(csv_path, SMALL, cache_dir=None)
    csv_path.write_text("patient_id,image\nx7,a.nii.gz\n")
    with pytest.raises(InputError, match=r"cohort.csv: missing required column\(s\) pet, ct"):
        preprocess_cohort(csv_path, SMALL, cache_dir=None)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("sigma", [[4.5, 1.0, 1.5], [0.0, 0.0, 0.0]])
def test_two_thread_scaling_and_smoothing_equal_one_call_each(threads, sigma):
    from monai.transforms import ScaleIntensityRange
    from scipy.ndimage import gaussian_filter

    from pfs_core.preprocessing.model_grid import GAUSSIAN_TRUNCATE, scale_and_smooth

    rng = np.random.default_rng(3)
    data = np.asfortranarray(rng.normal(0.0, 300.0, size=(61, 40, 37)).astype(np.float32))  # HU, as nibabel reads
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = scale_and_smooth(torch.from_numpy(data), low=-200.0, high=400.0, sigma=sigma)
    finally:
        torch.set_num_threads(previous)
    expected = np.asarray(ScaleIntensityRange(a_min=-200.0, a_max=400.0, b_min=0.0, b_max=1.0, clip=True)(data))
    if max(sigma) > 0:
        expected = gaussian_filter(expected, sigma=sigma, mode="nearest", truncate=GAUSSIAN_TRUNCATE)
    np.testing.assert_array_equal(out, expected)
    assert out.flags["C_CONTIGUOUS"] and out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
