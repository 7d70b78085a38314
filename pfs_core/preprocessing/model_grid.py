"""PET/CT pair → fixed-size network input on one model grid, and model maps back to the CT grid.

The model grid has ``config.shape`` voxels of ``config.spacing_mm`` (mm) in
``config.orientation`` (RAS), centred on the centre of the body's bounding box
(CT > ``body_threshold_hu``; PET > ``body_threshold_suv`` without a CT). Larger
bodies are cropped centrally, smaller ones padded with 0 (= air after CT scaling,
no uptake for PET). Each image is resampled once, with MONAI, straight onto that
grid: ``SpatialCrop`` (the part of the image the grid can see) →
``ScaleIntensityRange`` (CT window → [0, 1], SUV [0, pet_suv_max] → [0, 1], clipped)
→ Gaussian anti-aliasing when downsampling (scipy ``gaussian_filter``, sigma = (factor - 1) / 2
voxels, truncated at 3 sigma) → ``SpatialResample`` (trilinear, world-to-world through the affines,
zero padding). The body box is MONAI's ``generate_spatial_bounding_box``. See docs/input.md.

``load_case`` reads the PET and the CT at the same time (decompression releases the GIL).
"""

from __future__ import annotations

import hashlib
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRange, SpatialCrop, SpatialResample
from monai.transforms.utils import generate_spatial_bounding_box
from scipy.ndimage import gaussian_filter

from pfs_core import schema
from pfs_core.config import PreprocessConfig, digest
from pfs_core.errors import InputError
from pfs_core.execution import Execution, Task
from pfs_core.io import PetUnits, Volume, check_overlap, load_ct, load_pet
from pfs_core.io.cache import ArrayCache, content_digest
from pfs_core.io.cohort import read_cohort
from pfs_core.progress import emit

CACHE_FORMAT = "preprocess-v1"  # bump when the algorithm changes: old cache entries are then ignored
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


def body_centre(volume: Volume, threshold: float) -> np.ndarray:
    """World centre (mm, ``(3,)``) of the bounding box of voxels above ``threshold`` (HU or SUV)."""
    start, end = generate_spatial_bounding_box(np.asarray(volume.data)[None], select_fn=lambda x: x > threshold)
    if not any(end):  # MONAI's box of an empty selection: all zeros
        raise InputError(f"{volume.source}: no body found (no voxel above {threshold:g} {volume.units}); "
                         "check that the image shows a patient")
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


def scale_and_smooth(data: torch.Tensor, *, low: float, high: float, sigma: list[float]) -> np.ndarray:
    """``data`` (I, J, K) clipped to [low, high] and scaled to [0, 1] (MONAI ``ScaleIntensityRange``), then
    smoothed by scipy's ``gaussian_filter`` (edges ``nearest``, truncated at :data:`GAUSSIAN_TRUNCATE` sigma)
    where a sigma is > 0; float32, C-ordered.

    With more than one torch thread, the two halves of the axis with the least relative kernel overlap
    are done on two threads (scipy releases the GIL), each with the kernel radius of the other half
    beside it: every output voxel sees the same inputs in the same order as in one call, so the values
    are the same (tested), in about half the time for a clinical CT.
    """
    scale = ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)

    def one_call(part: torch.Tensor) -> np.ndarray:
        scaled = np.asarray(scale(part), dtype=np.float32)
        if max(sigma) <= 0:
            return np.ascontiguousarray(scaled)
        return gaussian_filter(scaled, sigma=sigma, mode="nearest", truncate=GAUSSIAN_TRUNCATE)

    radii = [int(GAUSSIAN_TRUNCATE * s + 0.5) for s in sigma]
    axis = int(np.argmin([r / n for r, n in zip(radii, data.shape, strict=True)]))
    n, radius = data.shape[axis], radii[axis]
    if torch.get_num_threads() < 2 or n < 4 * (radius + 1):
        return one_call(data)

    def half(bounds: tuple[int, int]) -> np.ndarray:
        lo, hi = bounds
        start, stop = max(0, lo - radius), min(n, hi + radius)
        done = one_call(data[(slice(None),) * axis + (slice(start, stop),)])
        return done[(slice(None),) * axis + (slice(lo - start, hi - start),)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(half, [(0, n // 2), (n // 2, n)]))
    return np.ascontiguousarray(np.concatenate(parts, axis=axis))


def to_model_grid(volume: Volume, *, low: float, high: float, model_affine: np.ndarray,
                  config: PreprocessConfig, antialias: bool | None = None) -> np.ndarray:
    """``volume`` clipped to [low, high] (HU or SUV), scaled to [0, 1] and resampled onto the model grid.

    Returns float32 ``config.shape``; outside the image's field of view the value is 0.
    """
    smooth_first = config.antialias if antialias is None else antialias
    sigma = _antialias_sigma(volume, config) if smooth_first else [0.0, 0.0, 0.0]
    # No copy of the whole volume (nibabel hands back Fortran-ordered arrays): the crop is a view of it.
    image = MetaTensor(torch.from_numpy(np.asarray(volume.data, dtype=np.float32))[None],
                       affine=torch.as_tensor(volume.affine, dtype=torch.float64))
    margin = math.ceil(GAUSSIAN_TRUNCATE * max(sigma)) + 2  # the largest kernel radius + 2
    cropped = _crop_to_view(image, volume, model_affine, config, margin=margin)
    if cropped is None:
        return np.zeros(config.shape, dtype=np.float32)
    # C-ordered: MONAI's resampling copies a Fortran-ordered array first (20x slower on a 512x512x300 CT).
    scaled = scale_and_smooth(cropped.as_tensor()[0], low=low, high=high, sigma=sigma)
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

    if pet_path and ct_path and torch.get_num_threads() > 1:
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
    """``(patient_id, pet path, ct path)`` per row of the checked table; None where a row has no such image."""
    frame = read_cohort(cohort_csv, require_outcome=False, need_images=True)
    columns = [schema.ID_COLUMN, schema.PET_COLUMN, schema.CT_COLUMN]
    return [(pid, Path(pet) if pet else None, Path(ct) if ct else None)
            for pid, pet, ct in frame[columns].itertuples(index=False)]


def prepared_arrays(pet_path: Path | None, ct_path: Path | None, config: PreprocessConfig) -> dict[str, np.ndarray]:
    """The model-grid arrays of one case as cached: ``pet``/``ct`` (those given) and ``pet_suv_max``."""
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
                      progress: bool = False, execution: Execution | None = None) -> CohortTensors:
    """Preprocess every case of ``cohort_csv`` (columns patient_id, pet, ct) into :class:`CohortTensors`.

    With ``cache_dir`` each case is stored as ``.npz`` keyed by :func:`case_cache_key` and reused. The
    cases not in the cache are one task each on ``execution`` (:mod:`pfs_core.execution`; default: one
    after the other here); a worker reads the images by their absolute path and hands back the
    model-grid arrays (~0.2 MB a case), which this process caches.
    A problem with one case raises :class:`InputError` naming the patient.
    ``progress``: one line per computed case on stderr. Independently, one :func:`pfs_core.progress.emit`
    line per computed case (stage "preprocessing") goes to the progress file when one is open.
    """
    cohort_csv = Path(cohort_csv)
    rows = _cohort_rows(cohort_csv)
    cache = ArrayCache(Path(cache_dir)) if cache_dir is not None else None
    found: dict[int, dict[str, np.ndarray]] = {}
    for i, (patient, pet_path, ct_path) in enumerate(rows):
        try:
            check_case_files(pet_path, ct_path)
        except InputError as exc:
            raise InputError(f"{cohort_csv}, patient {patient}: {exc}") from exc
        stored = cached_arrays(pet_path, ct_path, config, cache)
        if stored is not None:
            found[i] = stored
    todo = [i for i in range(len(rows)) if i not in found]
    tasks = [Task(prepared_arrays, args=(_absolute(rows[i][1]), _absolute(rows[i][2]), config),
                  label=f"{cohort_csv}, patient {rows[i][0]}", info={"patient_id": rows[i][0]}, memory_mb=2048)
             for i in todo]
    emit("preprocessing", 0, len(todo))

    def step(done: int, total: int, label: str) -> None:
        if progress:
            sys.stderr.write(f"preprocessing {done}/{total}: {label.rpartition('patient ')[2]}\n")
        emit("preprocessing", done, total)

    for i, arrays in zip(todo, (execution or Execution()).run(tasks, progress=step), strict=True):
        if cache is not None:
            cache.put(case_cache_key(rows[i][1], rows[i][2], config), arrays)
        found[i] = arrays
    return _stacked([r[0] for r in rows], [found[i] for i in range(len(rows))], config)


def _stacked(patient_ids: list[str], cases: list[dict[str, np.ndarray]], config: PreprocessConfig) -> CohortTensors:
    n = len(cases)
    tensors = CohortTensors(
        patient_ids=patient_ids, pet=np.zeros((n, *config.shape), np.float32),
        ct=np.zeros((n, *config.shape), np.float32), has_pet=np.zeros(n, bool), has_ct=np.zeros(n, bool),
        pet_suv_max=np.full(n, np.nan, np.float32),
    )
    for i, arrays in enumerate(cases):
        for name, has in (("pet", tensors.has_pet), ("ct", tensors.has_ct)):
            if name in arrays:
                getattr(tensors, name)[i] = arrays[name]
                has[i] = True
        tensors.pet_suv_max[i] = arrays["pet_suv_max"]
    return tensors


def _absolute(path: Path | None) -> Path | None:
    """``path`` made absolute (a worker process need not share this one's working folder)."""
    return None if path is None else path.absolute()


def check_case_files(pet_path: Path | None, ct_path: Path | None) -> None:
    """InputError when a case has no image or names a file that is not there."""
    if pet_path is None and ct_path is None:
        raise InputError(f"both {schema.PET_COLUMN} and {schema.CT_COLUMN} are empty; give at least one image")
    for path in (pet_path, ct_path):
        if path is not None and not path.exists():
            raise InputError(f"{path}: file or folder not found (paths are relative to the cohort CSV's folder)")


def cached_arrays(pet_path: Path | None, ct_path: Path | None, config: PreprocessConfig,
                cache: ArrayCache | None) -> dict[str, np.ndarray] | None:
    """The cached model-grid arrays of a case, or None (no cache, not cached, or of another grid)."""
    if cache is None:
        return None
    required = ("pet_suv_max",) + (("pet",) if pet_path else ()) + (("ct",) if ct_path else ())
    arrays = cache.get(case_cache_key(pet_path, ct_path, config), required=required)
    if arrays is None or any(arrays[k].shape != tuple(config.shape) for k in required[1:]):
        return None
    return arrays
