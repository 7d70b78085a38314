"""Liver reference uptake on the PET grid: the yardstick of every SSTR-PET lesion metric."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pfs_core.errors import InputError
from pfs_core.measure.grids import bounding_box, grow

MIN_REFERENCE_VOXELS = 20
#: A population this much cooler than the densest one, holding at least LOWER_SHARE of the liver, is the
#: parenchyma: the densest one is then tumour replacing most of the liver (a CT-isodense burden).
LOWER_RATIO = 1.5
LOWER_SHARE = 0.2


@dataclass(frozen=True)
class LiverReference:
    """Robust liver uptake (SUVbw): the mode of the eroded liver's voxels, and the SD of the same voxels
    after the detection smoothing (the noise the detection threshold must clear), from the half below
    their mode (hot lesions lie above it)."""

    mean: float
    sd: float
    n_voxels: int
    erosion_mm: float


def liver_reference(pet: np.ndarray, liver: np.ndarray, spacing_mm: tuple[float, float, float], *,
                    erosion_mm: float, smoothed_pet: np.ndarray | None = None,
                    exclude: np.ndarray | None = None) -> LiverReference:
    """Liver reference of ``pet`` (SUVbw, PET grid) inside the boolean ``liver`` mask (same grid).

    Voxels within ``erosion_mm`` of the liver's edge are left out (spill-over from the spleen and
    kidneys, partial volume with fat); the erosion halves until enough voxels remain. ``exclude``
    (same grid) marks voxels known not to be parenchyma, such as CT-hypodense lesions: left out
    while a fifth of the eroded liver remains, so that a liver mostly replaced by tumour still
    yields its parenchyma's uptake.
    """
    if liver.sum() < MIN_REFERENCE_VOXELS:
        raise InputError("the liver mask covers fewer than 20 PET voxels, so no liver reference can be "
                         "measured: check that the organ masks belong to this CT and that the PET covers the liver")
    depth = _depth(liver, spacing_mm)
    radius = erosion_mm
    while radius > 0 and (depth > radius).sum() < MIN_REFERENCE_VOXELS:
        radius /= 2.0
    inside = depth > radius if radius > 0 else liver
    if exclude is not None and (inside & ~exclude).sum() >= max(MIN_REFERENCE_VOXELS, 0.2 * inside.sum()):
        inside &= ~exclude
    values = pet[inside]
    spread = values if smoothed_pet is None else smoothed_pet[inside]
    rough = parenchyma_mode(values)
    below = rough - values[values <= rough]
    width = 1.4826 * float(np.median(below)) if below.size else 0.0
    # the median within ±2 SD of the mode is less noisy than the mode itself and still ignores the lesions
    mode = float(np.median(values[np.abs(values - rough) <= 2.0 * width])) if width > 0 else rough
    smooth_below = mode - spread[spread <= mode]
    sd = 1.4826 * float(np.median(smooth_below)) if smooth_below.size else 0.0
    return LiverReference(mean=mode, sd=sd, n_voxels=int(values.size), erosion_mm=float(radius))


def _depth(mask: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Distance (mm) of each voxel of ``mask`` from the nearest voxel outside it (0 outside).

    Computed in the mask's box grown by one voxel: that rim lies outside the mask and is at least as
    near as anything beyond it.
    """
    depth = np.zeros(mask.shape, dtype=np.float64)
    found = bounding_box(mask)
    if found is not None:
        near = grow(found, 1, mask.shape)
        depth[near] = ndimage.distance_transform_edt(mask[near], sampling=spacing_mm)
    return depth


def parenchyma_mode(values: np.ndarray) -> float:
    """Uptake of the liver parenchyma: the half-sample mode, or that of a large, clearly cooler population."""
    mode = half_sample_mode(values)
    while True:
        lower = values[values < mode / LOWER_RATIO]
        if lower.size < max(LOWER_SHARE * values.size, 3):
            return mode
        mode = half_sample_mode(lower)


def half_sample_mode(values: np.ndarray) -> float:
    """Half-sample mode (Bickel and Frühwirth, Comput Stat Data Anal 2006) of ``values``.

    The densest half of the sorted values, halved again until three remain: the parenchyma's
    uptake even when lesions make up a large part of the liver, where a median drifts towards them.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    while x.size > 3:
        half = (x.size + 1) // 2
        widths = x[half - 1:] - x[: x.size - half + 1]
        start = int(np.argmin(widths))
        x = x[start:start + half]
    return float(x.mean()) if x.size < 3 else float(x[1] if x[1] - x[0] != x[2] - x[1] else x.mean())
