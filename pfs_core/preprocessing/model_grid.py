"""PET/CT pair → fixed-size network input on one model grid, and model maps back to the CT grid.

The model grid has ``config.shape`` voxels of ``config.spacing_mm`` (mm) in
``config.orientation`` (RAS), centred on the centre of the body's bounding box
(CT > ``body_threshold_hu``; PET > ``body_threshold_suv`` without a CT). Larger
bodies are cropped centrally, smaller ones padded with 0 (= air after CT scaling,
no uptake for PET). Each image is resampled once, with MONAI, straight onto that
grid: ``SpatialCrop`` (the part of the image the grid can see) →
``ScaleIntensityRange`` (CT window → [0, 1], SUV [0, pet_suv_max] → [0, 1], clipped)
→ Gaussian anti-aliasing when downsampling (scipy ``gaussian_filter1d`` per axis, the maths of
``gaussian_filter``, sigma = (factor - 1) / 2 voxels) → ``SpatialResample``
(trilinear, world-to-world through the affines, zero padding). See docs/input.md.

Speed (issue 3): the intensity scaling and each axis of the Gaussian run on slabs in
``torch.get_num_threads()`` threads (numpy and scipy release the GIL; every voxel gets the same
arithmetic as in one call, so the result does not depend on the thread count), and ``load_case``
reads the PET and the CT at the same time. The model-grid arrays are bit for bit those of the
library calls these replace (tests/unit/test_preprocess_equivalence.py).
"""

from __future__ import annotations

import csv
import hashlib
import math
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialCrop, SpatialResample
from scipy.ndimage import gaussian_filter1d

from pfs_core.config import PreprocessConfig, digest
from pfs_core.errors import InputError
from pfs_core.io import PetUnits, Volume, check_overlap, load_ct, load_pet
from pfs_core.io.cache import ArrayCache, content_digest
from pfs_core.schema import CT_COLUMN, ID_COLUMN, PET_COLUMN

CACHE_FORMAT = "preprocess-v1"  # bump when the algorithm changes: old cache entries are then ignored
T = TypeVar("T")
R = TypeVar("R")
GAUSSIAN_TRUNCATE = 3.0  # kernel radius int(3 sigma + 0.5) voxels, as scipy's gaussian_filter(truncate=3.0)
_AXES = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


@dataclass
class PreparedCase:
    """One case on the model grid.

    Attributes:
        pet, ct: float32 ``config.shape`` ``(X, Y, Z)`` in [0, 1], or None when not given.
        model_affine: ``(4, 4)`` voxel → world mm (RAS) of the model grid.
        reference_affine, reference_shape: the original CT grid (the PET grid without a CT).
        pet_suv_max_original: SUVmax of the input PET (SUVbw), None without a PET.
        config: the :class:`PreprocessConfig` used.
    """

    pet: np.ndarray | None
    ct: np.ndarray | None
    model_affine: np.ndarray
    reference_affine: np.ndarray
    reference_shape: tuple[int, int, int]
    pet_suv_max_original: float | None
    config: PreprocessConfig


@dataclass
class CohortTensors:
    """Preprocessed cohort: ``pet`` and ``ct`` float32 ``(N, X, Y, Z)`` in [0, 1] (zeros where a modality is
    missing, see ``has_pet`` / ``has_ct``, bool ``(N,)``), ``pet_suv_max`` float32 ``(N,)`` (NaN without PET)."""

    patient_ids: list[str]
    pet: np.ndarray
    ct: np.ndarray
    has_pet: np.ndarray
    has_ct: np.ndarray
    pet_suv_max: np.ndarray


def model_grid_affine(centre_mm: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Affine ``(4, 4)`` of the model grid whose centre is the world point ``centre_mm`` ``(3,)``."""
    affine = np.eye(4)
    for i, code in enumerate(config.orientation.upper()):
        axis, sign = _AXES[code]
        affine[axis, i] = sign * config.spacing_mm[i]
    half = (np.asarray(config.shape, dtype=float) - 1.0) / 2.0
    affine[:3, 3] = np.asarray(centre_mm, dtype=float) - affine[:3, :3] @ half
    return affine


def _workers() -> int:
    """Threads for the voxel loops: torch's setting (the caller's CPU budget, e.g. 2 on the 2-core machine),
    at most 8 (the loops are bound by memory bandwidth beyond that)."""
    return max(1, min(8, torch.get_num_threads()))


def _slabs(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous index ranges covering ``range(n)`` (fewer if ``n`` is small)."""
    edges = np.linspace(0, n, min(parts, n) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _map_parallel(fn: Callable[[T], R], items: list[T]) -> list[R]:
    """``[fn(item) for item in items]``, one thread per item (for GIL-releasing numpy/scipy work)."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(fn, items))


def _slowest_axis(array: np.ndarray, exclude: int | None = None) -> int:
    """The axis (other than ``exclude``) with the largest stride: slabs along it are contiguous blocks."""
    axes = [a for a in range(array.ndim) if a != exclude]
    return max(axes, key=lambda a: (abs(array.strides[a]), array.shape[a]))


def _along(axis: int, lo: int, hi: int) -> tuple[slice, ...]:
    return tuple(slice(lo, hi) if a == axis else slice(None) for a in range(3))


def body_box(data: np.ndarray, threshold: float) -> tuple[list[int], list[int]] | None:
    """``(start, end)`` voxel indices (end exclusive) of the bounding box of ``data > threshold``, None if empty.

    The same box as MONAI's ``generate_spatial_bounding_box(data[None], select_fn=lambda x: x > threshold)``,
    from one thresholding pass per slab (in threads) and its projections.
    """
    axis = _slowest_axis(data)
    others = tuple(a for a in range(3) if a != axis)

    def project(slab: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        mask = data[_along(axis, *slab)] > threshold
        return np.any(mask, axis=axis), np.any(mask, axis=others)  # (other two axes), (slab along axis)

    parts = _map_parallel(project, _slabs(data.shape[axis], _workers()))
    plane = np.logical_or.reduce([p[0] for p in parts])
    along = np.concatenate([p[1] for p in parts])
    if not along.any():
        return None
    hits: dict[int, np.ndarray] = {axis: along, others[0]: plane.any(axis=1), others[1]: plane.any(axis=0)}
    start, end = [], []
    for a in range(3):
        index = np.flatnonzero(hits[a])
        start.append(int(index[0]))
        end.append(int(index[-1]) + 1)
    return start, end


def body_centre(volume: Volume, threshold: float) -> np.ndarray:
    """World centre (mm, ``(3,)``) of the bounding box of voxels above ``threshold`` (HU or SUV)."""
    box = body_box(np.asarray(volume.data), threshold)
    if box is None:
        raise InputError(f"{volume.source}: no body found (no voxel above {threshold:g} {volume.units}); "
                         "check that the image shows a patient")
    start, end = box
    centre_vox = (np.asarray(start, dtype=float) + np.asarray(end, dtype=float) - 1.0) / 2.0
    return volume.affine[:3, :3] @ centre_vox + volume.affine[:3, 3]


def _antialias_sigma(volume: Volume, config: PreprocessConfig) -> list[float]:
    """Gaussian sigma (source voxels) per source axis: max(0, (factor - 1) / 2), factor = model / source spacing."""
    model_world = np.abs(model_grid_affine(np.zeros(3), config)[:3, :3]).sum(axis=1)  # model mm along x, y, z
    spacing = np.asarray(volume.spacing_mm)
    directions = np.abs(volume.affine[:3, :3]) / spacing  # unit column per source axis
    factors = (model_world @ directions) / spacing
    return [float(max(0.0, (f - 1.0) / 2.0)) for f in factors]


def _crop_to_view(image: MetaTensor, volume: Volume, model_affine: np.ndarray, config: PreprocessConfig,
                  margin: int) -> MetaTensor | None:
    """The part of ``image`` (``(1, I, J, K)``) the model grid can see, plus ``margin`` voxels; None if none.

    The margin is the same on every axis, as the shipped models' inputs were made: a crop of another size
    changes the float32 rounding of MONAI's resampling coordinates (differences up to ~1e-5 measured).
    """
    edges = [(-0.5, n - 0.5) for n in config.shape]
    corners = np.array([[a, b, c, 1.0] for a in edges[0] for b in edges[1] for c in edges[2]])
    source = (np.linalg.inv(volume.affine) @ model_affine @ corners.T)[:3]
    start = np.maximum(np.floor(source.min(axis=1)).astype(int) - margin, 0)
    end = np.minimum(np.ceil(source.max(axis=1)).astype(int) + margin + 1, volume.shape)
    if np.any(end <= start):
        return None
    return SpatialCrop(roi_start=start.tolist(), roi_end=end.tolist())(image)  # type: ignore[return-value]


def scale_and_smooth(data: np.ndarray, *, low: float, high: float, sigma: list[float]) -> np.ndarray:
    """``data`` clipped to [low, high] and scaled to [0, 1], then Gaussian-smoothed (``sigma`` voxels per axis).

    Bit for bit MONAI's ``ScaleIntensityRange(a_min=low, a_max=high, b_min=0, b_max=1, clip=True)`` (float32
    ``(x - low) / (high - low)``, clipped) followed by scipy's ``gaussian_filter(sigma=sigma, mode="nearest",
    truncate=3.0)``, which runs ``gaussian_filter1d`` along axis 0, 1, 2 in turn. Faster: each step is split
    into slabs across :func:`_workers` threads, each slab holding whole lines along the filtered axis.
    The scaling keeps ``data``'s memory layout (Fortran order from nibabel, read in order); the first filter
    pass writes a C-ordered array (as ``gaussian_filter`` does), the later ones work in place. Returns that
    new C-ordered float32 array: scipy walks a C-ordered array's lines in memory order, and MONAI's
    resampling reads it without a copy (a Fortran-ordered one costs 1.3x in the filter and 20x in the
    resampling, measured on the 512x512x300 CT).
    """
    source = np.asarray(data, dtype=np.float32)
    scaled = np.empty_like(source)  # the source's layout
    workers = _workers()
    offset, width = np.float32(low), np.float32(high - low)

    def scale(index: tuple[slice, ...]) -> None:
        part = scaled[index]
        np.subtract(source[index], offset, out=part)
        np.divide(part, width, out=part)
        np.clip(part, 0.0, 1.0, out=part)

    axis = _slowest_axis(scaled)
    _map_parallel(scale, [_along(axis, lo, hi) for lo, hi in _slabs(scaled.shape[axis], workers)])
    passes = [(axis, s) for axis, s in enumerate(sigma) if s > 1e-15]  # as gaussian_filter: others skipped
    if not passes:
        return np.ascontiguousarray(scaled)
    out = np.empty(source.shape, dtype=np.float32)  # C order
    for step, (axis, s) in enumerate(passes):
        first = step == 0

        def smooth(index: tuple[slice, ...], axis: int = axis, s: float = s, first: bool = first) -> None:
            part = out[index]  # whole lines along ``axis``; after the first pass in place, as gaussian_filter
            gaussian_filter1d(scaled[index] if first else part, s, axis=axis, output=part, mode="nearest",
                              truncate=GAUSSIAN_TRUNCATE)

        split = 1 if axis == 0 else 0  # the slowest axis of ``out`` other than the filtered one
        _map_parallel(smooth, [_along(split, lo, hi) for lo, hi in _slabs(out.shape[split], workers)])
    return out


def to_model_grid(volume: Volume, *, low: float, high: float, model_affine: np.ndarray,
                  config: PreprocessConfig, antialias: bool | None = None) -> np.ndarray:
    """``volume`` clipped to [low, high] (HU or SUV), scaled to [0, 1] and resampled onto the model grid.

    Returns float32 ``config.shape``; outside the image's field of view the value is 0.
    """
    smooth_first = config.antialias if antialias is None else antialias
    sigma = _antialias_sigma(volume, config) if smooth_first else [0.0, 0.0, 0.0]
    # No copy of the whole volume (nibabel hands back Fortran-ordered arrays): only the crop is copied.
    image = MetaTensor(torch.from_numpy(np.asarray(volume.data, dtype=np.float32))[None],
                       affine=torch.as_tensor(volume.affine, dtype=torch.float64))
    margin = math.ceil(GAUSSIAN_TRUNCATE * max(sigma)) + 2  # the largest kernel radius + 2
    cropped = _crop_to_view(image, volume, model_affine, config, margin=margin)
    if cropped is None:
        return np.zeros(config.shape, dtype=np.float32)
    scaled = scale_and_smooth(np.asarray(cropped[0]), low=low, high=high, sigma=sigma)
    resample = SpatialResample(mode="bilinear", padding_mode="zeros", dtype=np.float32)
    out = resample(MetaTensor(torch.from_numpy(scaled)[None], affine=cropped.affine),
                   dst_affine=torch.as_tensor(model_affine), spatial_size=config.shape)
    return np.clip(np.asarray(out[0], dtype=np.float32), 0.0, 1.0)


def preprocess_case(pet: Volume | None, ct: Volume | None, config: PreprocessConfig) -> PreparedCase:
    """PET (SUVbw) and/or CT (HU) → :class:`PreparedCase` on the model grid (at least one must be given)."""
    if pet is None and ct is None:
        raise InputError("no image given: give a PET, a CT or both")
    if pet is not None and ct is not None:
        check_overlap(pet, ct)
    reference = ct if ct is not None else pet
    assert reference is not None
    if ct is not None:
        centre = body_centre(ct, config.body_threshold_hu)
    else:
        centre = body_centre(reference, config.body_threshold_suv)
    affine = model_grid_affine(centre, config)
    ct_model = pet_model = None
    if ct is not None:
        ct_model = to_model_grid(ct, low=config.ct_window_hu[0], high=config.ct_window_hu[1],
                                 model_affine=affine, config=config)
    if pet is not None:
        pet_model = to_model_grid(pet, low=0.0, high=config.pet_suv_max, model_affine=affine, config=config,
                                  antialias=config.antialias and config.pet_antialias)
    return PreparedCase(
        pet=pet_model, ct=ct_model, model_affine=affine, reference_affine=np.array(reference.affine, dtype=float),
        reference_shape=reference.shape, pet_suv_max_original=float(pet.data.max()) if pet is not None else None,
        config=config,
    )


def to_reference_grid(map_model: np.ndarray, case: PreparedCase, *, chunk_voxels: int = 1 << 24) -> nib.Nifti1Image:
    """A model-space map (``config.shape``, e.g. Grad-CAM) resampled (trilinear) onto the original reference grid.

    Returns a float32 NIfTI of ``case.reference_shape`` whose affine is ``case.reference_affine``;
    0 outside the model grid. Works slab by slab (``chunk_voxels``) to bound memory.
    """
    data = np.asarray(map_model, dtype=np.float32)
    if data.shape != tuple(case.config.shape):
        raise ValueError(f"map_model has shape {data.shape}, expected the model shape {tuple(case.config.shape)}")
    image = MetaTensor(torch.from_numpy(data.copy())[None], affine=torch.as_tensor(case.model_affine))
    resample = SpatialResample(mode="bilinear", padding_mode="zeros", dtype=np.float32)
    nx, ny, nz = case.reference_shape
    out = np.zeros((nx, ny, nz), dtype=np.float32)
    step = max(1, chunk_voxels // (nx * ny))
    for k0 in range(0, nz, step):
        k1 = min(nz, k0 + step)
        slab_affine = case.reference_affine.copy()
        slab_affine[:3, 3] = case.reference_affine[:3, :3] @ np.array([0.0, 0.0, k0]) + case.reference_affine[:3, 3]
        slab = resample(image, dst_affine=torch.as_tensor(slab_affine), spatial_size=(nx, ny, k1 - k0))
        out[:, :, k0:k1] = np.asarray(slab[0], dtype=np.float32)
    return nib.Nifti1Image(out, case.reference_affine)


def load_case(pet_path: str | Path | None, ct_path: str | Path | None, *, weight_kg: float | None = None,
              dose_mbq: float | None = None, pet_units: PetUnits = "auto") -> tuple[Volume | None, Volume | None]:
    """Load a PET (SUVbw) and a CT (HU) and check that they overlap in world space; either may be None.

    With both and more than one torch thread, the two are read at the same time (decompression and the
    voxel checks release the GIL); a PET error is raised before a CT error, as when read one after the other.
    """
    def read_pet() -> Volume | None:
        return load_pet(pet_path, weight_kg=weight_kg, dose_mbq=dose_mbq, pet_units=pet_units) if pet_path else None

    def read_ct() -> Volume | None:
        return load_ct(ct_path) if ct_path else None

    if pet_path and ct_path and _workers() > 1:
        with ThreadPoolExecutor(max_workers=2) as pool:
            pet_future, ct_future = pool.submit(read_pet), pool.submit(read_ct)
            pet, ct = pet_future.result(), ct_future.result()
    else:
        pet = read_pet()
        ct = read_ct()
    if pet is not None and ct is not None:
        check_overlap(pet, ct)
    return pet, ct


def case_cache_key(pet_path: Path | None, ct_path: Path | None, config: PreprocessConfig) -> str:
    """``<config digest>_<sha256 of format version + PET bytes + CT bytes>`` (file or whole DICOM folder)."""
    hasher = hashlib.sha256(CACHE_FORMAT.encode())
    for label, path in (("pet", pet_path), ("ct", ct_path)):
        hasher.update(f"|{label}:{content_digest(path) if path is not None else '-'}".encode())
    return f"{digest(config)}_{hasher.hexdigest()[:32]}"


def _cohort_rows(cohort_csv: Path) -> list[tuple[str, Path | None, Path | None]]:
    """``(patient_id, pet path, ct path)`` per row; paths relative to the CSV's folder, None where empty."""
    try:
        with open(cohort_csv, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in (ID_COLUMN, PET_COLUMN, CT_COLUMN) if c not in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{cohort_csv}: cannot read the cohort table ({exc}); give a UTF-8 CSV file") from exc
    if missing or not rows:
        what = f"missing column(s) {', '.join(missing)}" if missing else "no rows"
        raise InputError(f"{cohort_csv}: {what}; the cohort table needs {ID_COLUMN}, {PET_COLUMN}, {CT_COLUMN}")

    def resolve(cell: str | None) -> Path | None:
        return cohort_csv.parent / cell.strip() if cell and cell.strip() else None

    return [(row[ID_COLUMN].strip(), resolve(row[PET_COLUMN]), resolve(row[CT_COLUMN])) for row in rows]


def _prepared_arrays(pet_path: Path | None, ct_path: Path | None, config: PreprocessConfig) -> dict[str, np.ndarray]:
    pet, ct = load_case(pet_path, ct_path)
    case = preprocess_case(pet, ct, config)
    suv_max = np.nan if case.pet_suv_max_original is None else case.pet_suv_max_original
    arrays: dict[str, np.ndarray] = {"pet_suv_max": np.asarray(suv_max, dtype=np.float32)}
    if case.pet is not None:
        arrays["pet"] = case.pet
    if case.ct is not None:
        arrays["ct"] = case.ct
    return arrays


def preprocess_cohort(cohort_csv: Path, config: PreprocessConfig, *, cache_dir: Path | None,
                      progress: bool = False) -> CohortTensors:
    """Preprocess every case of ``cohort_csv`` (columns patient_id, pet, ct) into :class:`CohortTensors`.

    With ``cache_dir`` each case is stored as ``.npz`` keyed by :func:`case_cache_key` and reused.
    A problem with one case raises :class:`InputError` naming the patient.
    """
    cohort_csv = Path(cohort_csv)
    rows = _cohort_rows(cohort_csv)
    cache = ArrayCache(Path(cache_dir)) if cache_dir is not None else None
    n = len(rows)
    tensors = CohortTensors(
        patient_ids=[r[0] for r in rows], pet=np.zeros((n, *config.shape), np.float32),
        ct=np.zeros((n, *config.shape), np.float32), has_pet=np.zeros(n, bool), has_ct=np.zeros(n, bool),
        pet_suv_max=np.full(n, np.nan, np.float32),
    )
    for i, (patient, pet_path, ct_path) in enumerate(rows):
        if progress:
            sys.stderr.write(f"preprocessing {i + 1}/{n}: {patient}\n")
        try:
            arrays = _cached_case(pet_path, ct_path, config, cache)
        except InputError as exc:
            raise InputError(f"{cohort_csv}, patient {patient}: {exc}") from exc
        for name, has in (("pet", tensors.has_pet), ("ct", tensors.has_ct)):
            if name in arrays:
                getattr(tensors, name)[i] = arrays[name]
                has[i] = True
        tensors.pet_suv_max[i] = arrays["pet_suv_max"]
    return tensors


def _cached_case(pet_path: Path | None, ct_path: Path | None, config: PreprocessConfig,
                 cache: ArrayCache | None) -> dict[str, np.ndarray]:
    if pet_path is None and ct_path is None:
        raise InputError(f"both {PET_COLUMN} and {CT_COLUMN} are empty; give at least one image")
    for path in (pet_path, ct_path):
        if path is not None and not path.exists():
            raise InputError(f"{path}: file or folder not found (paths are relative to the cohort CSV's folder)")
    if cache is None:
        return _prepared_arrays(pet_path, ct_path, config)
    key = case_cache_key(pet_path, ct_path, config)
    required = ("pet_suv_max",) + (("pet",) if pet_path else ()) + (("ct",) if ct_path else ())
    arrays = cache.get(key, required=required)
    if arrays is None or any(arrays[k].shape != tuple(config.shape) for k in required[1:]):
        arrays = _prepared_arrays(pet_path, ct_path, config)
        cache.put(key, arrays)
    return arrays
