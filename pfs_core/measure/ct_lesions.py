"""Liver lesions found on the CT: focal hypodensity, SSTR-negative when its uptake is not above the liver.

Every array is on the CT grid ``(I, J, K)`` unless named ``pet``; HU, SUVbw, mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pfs_core.measure.reference import LiverReference
from pfs_core.measure.settings import MeasureSettings


@dataclass(frozen=True)
class LiverDensity:
    """Robust CT attenuation of the liver parenchyma after smoothing (HU)."""

    median_hu: float
    sd_hu: float


def _box(mask: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by 2 voxels."""
    found = ndimage.find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in found)


def masked_smooth(data: np.ndarray, mask: np.ndarray, sigma_voxels: np.ndarray) -> np.ndarray:
    """Gaussian smoothing of ``data`` that uses only voxels in ``mask`` (normalised convolution).

    Smoothing the liver with its surroundings would darken its rim with fat and make cold spots.
    """
    weight = ndimage.gaussian_filter(mask.astype(np.float32), sigma_voxels, truncate=2.0)
    total = ndimage.gaussian_filter(np.where(mask, data, 0.0).astype(np.float32), sigma_voxels, truncate=2.0)
    return np.where(mask, total / np.maximum(weight, 1e-6), 0.0).astype(np.float32)


def _pet_at(pet: np.ndarray, pet_affine: np.ndarray, ct_affine: np.ndarray, index: np.ndarray) -> np.ndarray:
    """PET values (trilinear) at CT voxel indices ``index`` ``(N, 3)``; 0 outside the PET."""
    world = np.c_[index, np.ones(len(index))] @ ct_affine.T
    at = (world @ np.linalg.inv(pet_affine).T)[:, :3]
    return ndimage.map_coordinates(pet, at.T, order=1, mode="constant", cval=0.0)


def liver_ct_lesions(ct: np.ndarray, liver: np.ndarray, ct_affine: np.ndarray, *, pet: np.ndarray,
                     pet_affine: np.ndarray, positive: np.ndarray, ref: LiverReference,
                     settings: MeasureSettings) -> tuple[np.ndarray, np.ndarray, LiverDensity]:
    """Focal hypodense liver lesions not already found on the PET, split by their PET uptake.

    Returns int32 CT-grid label maps of the SSTR-negative lesions (mean uptake at most
    ``cold_max_ratio`` × liver) and of the faintly SSTR-positive ones (above it, yet below the PET
    detection threshold), and the liver's density. ``liver`` is the CT-grid liver mask;
    ``positive`` the PET-found lesions on the CT grid (their hypodense parts, such as necrotic
    cores, are theirs).
    """
    negative = np.zeros(ct.shape, dtype=np.int32)
    faint = np.zeros(ct.shape, dtype=np.int32)
    if not liver.any():
        return negative, faint, LiverDensity(float("nan"), float("nan"))
    box = _box(liver)
    spacing = np.sqrt((np.asarray(ct_affine)[:3, :3] ** 2).sum(axis=0))
    inner = ndimage.binary_erosion(liver[box])  # the liver's rim mixes with fat
    if not inner.any():
        inner = liver[box]
    smooth = masked_smooth(ct[box], inner, settings.ct_smooth_mm / spacing)
    values = smooth[inner]
    median = float(np.median(values))
    sd = 1.4826 * float(np.median(np.abs(values - median)))
    cold = ndimage.binary_fill_holes(inner & (smooth < median - max(settings.cold_min_hu, settings.cold_sd * sd)))
    parts, _ = ndimage.label(cold)
    near_positive = ndimage.binary_dilation(positive[box] > 0, iterations=2)
    min_voxels = settings.cold_min_volume_ml * 1000.0 / float(np.prod(spacing))
    origin = np.array([s.start for s in box])
    for index, part_box in enumerate(ndimage.find_objects(parts), start=1):
        part = parts[part_box] == index
        if part.sum() < min_voxels or (near_positive[part_box] & part).any():
            continue
        where = np.argwhere(part) + origin + np.array([s.start for s in part_box])
        uptake = float(_pet_at(pet, pet_affine, ct_affine, where).mean())
        target = negative if uptake <= settings.cold_max_ratio * ref.mean else faint
        target[tuple(where.T)] = int(target.max()) + 1
    return negative, faint, LiverDensity(median, sd)
