"""Liver lesions found on the CT: focal hypodensity, SSTR-negative when its uptake is not above the liver.

Every array is on the CT grid ``(I, J, K)`` unless named ``pet``; HU, SUVbw, mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pfs_core.measure.grids import Box, bounding_box, grow, sample_at, world_of
from pfs_core.measure.reference import LiverReference, half_sample_mode
from pfs_core.measure.settings import MeasureSettings


@dataclass(frozen=True)
class LiverDensity:
    """Robust CT attenuation of the liver parenchyma after smoothing (HU): the half-sample mode, and
    the SD of the values above it (most liver metastases are hypodense, so they lie below)."""

    median_hu: float
    sd_hu: float


@dataclass(frozen=True)
class LiverCT:
    """The liver's CT inside its bounding box: the eroded liver and the CT smoothed within it."""

    box: tuple[slice, ...]
    inner: np.ndarray
    smooth: np.ndarray
    spacing_mm: np.ndarray


def masked_smooth(data: np.ndarray, mask: np.ndarray, sigma_voxels: np.ndarray) -> np.ndarray:
    """Gaussian smoothing of ``data`` that uses only voxels in ``mask`` (normalised convolution).

    Smoothing the liver with its surroundings would darken its rim with fat and make cold spots.
    """
    weight = ndimage.gaussian_filter(mask.astype(np.float32), sigma_voxels, truncate=2.0)
    total = ndimage.gaussian_filter(np.where(mask, data, 0.0).astype(np.float32), sigma_voxels, truncate=2.0)
    return np.where(mask, total / np.maximum(weight, 1e-6), 0.0).astype(np.float32)


def liver_ct(ct: np.ndarray, liver: np.ndarray, box: Box, ct_affine: np.ndarray, settings: MeasureSettings,
             *, edge_mm: float = 0.0) -> LiverCT:
    """The liver's CT smoothed within the liver.

    ``liver``: the non-empty liver mask on ``box``, the liver's bounding box grown by 2 voxels (the rest of
    the CT is never read: a clinical CT holds ~80 M voxels). ``edge_mm``: besides its outer voxel layer, the
    liver within this distance of the mask's surface is left out too (an uncertain mask).
    """
    spacing = np.sqrt((np.asarray(ct_affine)[:3, :3] ** 2).sum(axis=0))
    inner = ndimage.binary_erosion(liver)  # the liver's rim mixes with fat
    if edge_mm > 0:
        inner &= ndimage.distance_transform_edt(liver, sampling=spacing) > edge_mm
    if not inner.any():
        inner = liver
    return LiverCT(box, inner, masked_smooth(ct[box], inner, settings.ct_smooth_mm / spacing), spacing)


def liver_density(lct: LiverCT, exclude: np.ndarray | None = None) -> LiverDensity:
    """Parenchymal attenuation, leaving out ``exclude`` (box grid) while a tenth of the liver remains."""
    keep = lct.inner if exclude is None else lct.inner & ~exclude
    values = lct.smooth[keep if keep.sum() >= 0.1 * lct.inner.sum() else lct.inner]
    mode = half_sample_mode(values)
    above = values[values >= mode] - mode
    return LiverDensity(mode, 1.4826 * float(np.median(above)) if above.size else 0.0)


def hypodense(lct: LiverCT, density: LiverDensity, settings: MeasureSettings) -> np.ndarray:
    """Focal hypodensity of the liver (box grid, holes filled)."""
    level = density.median_hu - max(settings.cold_min_hu, settings.cold_sd * density.sd_hu)
    cold = lct.inner & (lct.smooth < level)
    found = bounding_box(cold)
    if found is None:
        return cold
    # filled within its own box grown by one empty voxel: the same holes, without flooding the whole box
    near = grow(found, 1, cold.shape)
    cold[near] = ndimage.binary_fill_holes(cold[near])
    return cold


def liver_ct_lesions(lct: LiverCT, ct_affine: np.ndarray, *, pet: np.ndarray, pet_affine: np.ndarray,
                     positive: np.ndarray, ref: LiverReference, settings: MeasureSettings,
                     photopenic: np.ndarray | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, LiverDensity]:
    """Focal hypodense (or, with ``photopenic`` on ``lct.box``, PET-photopenic) liver lesions not already
    found on the PET, split by their PET uptake.

    Returns int32 label maps on the liver's box ``lct.box`` of the SSTR-negative lesions (``cold_quantile``
    percentile of uptake at most ``cold_max_ratio`` × liver plus ``cold_noise_sd`` SDs of the liver's noise),
    of the faintly SSTR-positive ones (above it, yet below the PET detection threshold) and of the
    necrotic cores of PET-found lesions (hypodense regions whose surface lies at least
    ``core_min_contact`` on a PET-found lesion; the ids of ``positive``), and the liver's density.
    ``lct`` comes from :func:`liver_ct`; ``positive`` holds the PET-found lesions on ``lct.box``.
    """
    negative = np.zeros(positive.shape, dtype=np.int32)
    faint = np.zeros(positive.shape, dtype=np.int32)
    cores = np.zeros(positive.shape, dtype=np.int32)
    near_positive = ndimage.binary_dilation(positive > 0, iterations=2)
    density = liver_density(lct, exclude=near_positive)  # with a heavy burden the tumour would set it
    # a cold lesion next to a hot one is its own lesion; the hot lesion's rim is not
    candidates = hypodense(lct, density, settings)
    if photopenic is not None:  # not where the CT is brighter than the liver: contrast-filled vessels
        candidates |= photopenic & lct.inner & (lct.smooth <= density.median_hu + settings.photopenic_max_hu_above)
    parts, _ = ndimage.label(candidates & ~near_positive)
    min_voxels = settings.cold_min_volume_ml * 1000.0 / float(np.prod(lct.spacing_mm))
    origin = np.array([s.start for s in lct.box])
    counts = {"negative": 0, "faint": 0}
    for index, part_box in enumerate(ndimage.find_objects(parts), start=1):
        where = np.argwhere(parts[part_box] == index) + np.array([s.start for s in part_box])
        grown = tuple(slice(max(b.start - 4, 0), b.stop + 4) for b in part_box)
        # without a PET-found lesion nearby it is no core: skips two dilations for each of the many noise specks
        near = positive[grown]
        owner = _enclosing_lesion(parts[grown] == index, near, contact=settings.core_min_contact) if near.any() else 0
        if owner:
            cores[tuple(where.T)] = owner
            continue
        if len(where) < min_voxels:
            continue
        uptake = float(np.percentile(sample_at(pet, pet_affine, world_of(where + origin, ct_affine), order=1),
                                     settings.cold_quantile))
        kind = "negative" if uptake <= settings.cold_max_ratio * ref.mean + settings.cold_noise_sd * ref.sd else "faint"
        counts[kind] += 1  # ids 1..n in the order found
        (negative if kind == "negative" else faint)[tuple(where.T)] = counts[kind]
    return negative, faint, cores, density


def _enclosing_lesion(part: np.ndarray, hot: np.ndarray, *, contact: float) -> int:
    """Id of the lesion of ``hot`` that covers at least ``contact`` of ``part``'s outer shell, else 0.

    The shell lies 3 voxels out: the 2-voxel band left between a lesion and its cold core, and one more.
    """
    shell = ndimage.binary_dilation(part, iterations=3) & ~ndimage.binary_dilation(part, iterations=2)
    ids, counts = np.unique(hot[shell], return_counts=True)
    best = int(np.argmax(np.where(ids > 0, counts, -1)))
    return int(ids[best]) if ids[best] > 0 and counts[best] >= contact * shell.sum() else 0
