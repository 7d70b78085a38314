"""SSTR-positive lesions on the native PET grid: above the liver, outside physiological uptake.

Every array here is on the PET grid ``(I, J, K)``; SUV in SUVbw, lengths in mm.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed

from pfs_core.io.organs import PHYSIOLOGICAL_UPTAKE
from pfs_core.measure.grids import bounding_box, grow
from pfs_core.measure.reference import LiverReference
from pfs_core.measure.settings import MeasureSettings

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def _within(mask: np.ndarray, spacing_mm: tuple[float, float, float], margin_mm: float) -> np.ndarray:
    """Voxels at most ``margin_mm`` from ``mask`` (an exact Euclidean dilation)."""
    found = bounding_box(mask)
    if found is None:
        return mask
    # every voxel that close lies in the mask's box grown by the margin: the distances need only that box
    near = grow(found, [int(np.ceil(margin_mm / s)) + 1 for s in spacing_mm], mask.shape)
    out = np.zeros(mask.shape, dtype=bool)
    out[near] = ndimage.distance_transform_edt(~mask[near], sampling=spacing_mm) <= margin_mm
    return out


def smoothed(pet: np.ndarray, spacing_mm: tuple[float, float, float], fwhm_mm: float) -> np.ndarray:
    """``pet`` smoothed with a Gaussian of ``fwhm_mm`` (noise suppression for detection only)."""
    if fwhm_mm <= 0:
        return pet.astype(np.float32, copy=True)
    return ndimage.gaussian_filter(pet.astype(np.float32), [fwhm_mm * FWHM_TO_SIGMA / s for s in spacing_mm],
                                   truncate=2.0)


def spill_over(pet: np.ndarray, fractions: dict[str, np.ndarray], spacing_mm: tuple[float, float, float], *,
               fwhm_mm: float) -> np.ndarray:
    """Expected uptake that hot organs blur into their surroundings (SUVbw).

    Each physiological organ is taken as uniform at its median uptake, its voxel-fraction map
    blurred with a Gaussian of the PET resolution ``fwhm_mm``.
    """
    sigma = [fwhm_mm * FWHM_TO_SIGMA / s for s in spacing_mm]
    spill = np.zeros(pet.shape, dtype=np.float32)
    for name in PHYSIOLOGICAL_UPTAKE:
        frac = fractions.get(name)
        found = bounding_box(frac != 0) if frac is not None else None
        if frac is None or found is None or not (frac >= 0.5).any():
            continue
        level = float(np.median(pet[frac >= 0.5]))
        # blurred in the organ's box grown by twice the kernel's radius: the box's reflecting edges then
        # read only zeros, as the whole grid does there, and beyond it the blur is zero
        near = grow(found, [2 * int(3.0 * s + 0.5) + 1 for s in sigma], frac.shape)
        spill[near] += level * ndimage.gaussian_filter(frac[near].astype(np.float32), sigma, truncate=3.0)
    return spill


def candidates(pet: np.ndarray, fractions: dict[str, np.ndarray], spacing_mm: tuple[float, float, float],
               ref: LiverReference, settings: MeasureSettings) -> tuple[np.ndarray, np.ndarray, float]:
    """Seeds and support of SSTR-positive lesions, and the threshold (SUVbw).

    Seeds: voxels whose smoothed uptake, less the organs' spill-over, exceeds the threshold.
    Support: the seeds grown into unsmoothed voxels above the threshold, at most ``grow_mm`` away;
    smoothing shrinks a faint lesion's above-threshold region to a small core, so a lesion
    delineated on the seeds alone would lose its rim.
    """
    threshold = max(ref.mean + settings.detect_sd * ref.sd, settings.detect_min_ratio * ref.mean)
    spill = spill_over(pet, fractions, spacing_mm, fwhm_mm=settings.pet_fwhm_mm)
    allowed = _outside_physiology(pet, fractions, spacing_mm, ref, settings)
    seeds = (smoothed(pet, spacing_mm, settings.detect_smooth_mm) - spill > threshold) & allowed
    near = _within(seeds, spacing_mm, settings.grow_mm)
    support = seeds | (near & allowed & (pet - spill > threshold))
    return seeds, support, threshold


def _outside_physiology(pet: np.ndarray, fractions: dict[str, np.ndarray], spacing_mm: tuple[float, float, float],
                        ref: LiverReference, settings: MeasureSettings) -> np.ndarray:
    """Voxels that may hold a lesion: not within ``organ_margin_mm`` of physiological uptake outside the liver."""
    liver = fractions["liver"] >= 0.5
    allowed = np.ones(pet.shape, dtype=bool)
    for name in PHYSIOLOGICAL_UPTAKE:
        frac = fractions.get(name)
        if frac is None:
            continue
        zone = _within(frac >= 0.5, spacing_mm, settings.organ_margin_mm) & ~liver
        if name == "pancreas":  # a pancreatic primary is far hotter than the uncinate process
            allowed &= ~zone | (pet > settings.pancreas_min_ratio * ref.mean)
        else:
            allowed &= ~zone
    return allowed


def _split(pet: np.ndarray, seeds: np.ndarray, support: np.ndarray, depth: float) -> np.ndarray:
    """Watershed regions of ``support``, one per uptake maximum of ``seeds`` deeper than ``depth`` (SUVbw)."""
    regions = np.zeros(pet.shape, dtype=np.int32)
    found = bounding_box(support | seeds)
    if found is None:
        return regions
    # the support's box with a rim of zeros: the maxima, markers (numbered in the same raster order) and
    # basins are those of the whole grid, where everything outside the support is zero
    near = grow(found, 1, pet.shape)
    seeds, support = seeds[near], support[near]
    masked = np.where(support, pet[near], 0.0).astype(np.float32)
    markers, _ = ndimage.label(h_maxima(np.where(seeds, masked, 0.0).astype(np.float32), depth) & seeds)
    regions[near] = watershed(-masked, markers=markers, mask=support)
    return regions


def _delineate(region: np.ndarray, pet: np.ndarray, background: float, *, threshold: float,
               iso_fraction: float) -> np.ndarray:
    """The part of one watershed region inside its background-corrected isocontour, holes filled."""
    peak = float(pet[region].max())
    level = max(threshold, background + iso_fraction * (peak - background))
    inside = region & (pet >= level)
    labels, _ = ndimage.label(inside)
    keep = labels == labels[np.unravel_index(np.argmax(np.where(inside, pet, -np.inf)), pet.shape)]
    return ndimage.binary_fill_holes(keep)


def _lesions_in(seeds: np.ndarray, support: np.ndarray, pet: np.ndarray, liver: np.ndarray, *, liver_suv: float,
                threshold: float, depth: float, iso_fraction: float,
                min_voxels: float) -> list[tuple[float, tuple[slice, ...], np.ndarray]]:
    """(SUVmax, box, mask) of each delineated lesion grown from ``seeds`` within ``support``."""
    regions = _split(pet, seeds, support, depth)
    kept = []
    for index, box in enumerate(ndimage.find_objects(regions), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        region = regions[box] == index
        peak_at = np.unravel_index(np.argmax(np.where(region, pet[box], -np.inf)), region.shape)
        background = liver_suv if liver[box][peak_at] else 0.0
        lesion = _delineate(region, pet[box], background, threshold=threshold, iso_fraction=iso_fraction)
        if (lesion & seeds[box]).sum() >= min_voxels:  # detection on the seeds alone; growth only delineates
            kept.append((float(pet[box][lesion].max()), box, lesion))
    return kept


def _left_over(found: np.ndarray, pet: np.ndarray, around: np.ndarray) -> np.ndarray:
    """Parts of ``found`` outside ``around`` (the lesions taken, grown by one voxel) that peak inside themselves.

    A fainter lesion next to a hot one shares its watershed region and falls below the hot one's
    isocontour; the hot lesion's own rim is left over too, but a rim peaks at its inner edge.
    """
    rest = found & ~around
    parts, _ = ndimage.label(rest)
    keep = np.zeros(found.shape, dtype=bool)
    for index, box in enumerate(ndimage.find_objects(parts), start=1):
        part = parts[box] == index
        peak = np.unravel_index(np.argmax(np.where(part, pet[box], -np.inf)), part.shape)
        if ndimage.binary_erosion(part)[peak]:
            keep[box] |= part
    return keep


def sstr_positive(pet: np.ndarray, fractions: dict[str, np.ndarray], spacing_mm: tuple[float, float, float],
                  ref: LiverReference, settings: MeasureSettings) -> np.ndarray:
    """Label map (int32, PET grid) of SSTR-positive lesions, 1..n by decreasing SUVmax.

    ``fractions`` maps organ names of :data:`~pfs_core.io.organs.ORGANS` to the fraction of each
    PET voxel they cover (0..1); ``"liver"`` is required. Background-corrected isocontours use the
    liver reference inside the liver and zero elsewhere.
    """
    seeds, support, threshold = candidates(pet, fractions, spacing_mm, ref, settings)
    liver = fractions["liver"] >= 0.5
    rule = {"liver_suv": ref.mean, "threshold": threshold, "depth": settings.split_depth_ratio * ref.mean,
            "iso_fraction": settings.iso_fraction,
            "min_voxels": settings.min_volume_ml * 1000.0 / float(np.prod(spacing_mm))}
    kept = _lesions_in(seeds, support, pet, liver, **rule)
    taken = np.zeros(pet.shape, dtype=bool)
    for _, box, lesion in kept:
        taken[box] |= lesion
    around = ndimage.binary_dilation(taken)
    kept += _lesions_in(_left_over(seeds, pet, around), support & ~around, pet, liver, **rule)
    labels = np.zeros(pet.shape, dtype=np.int32)
    for number, (_, box, lesion) in enumerate(sorted(kept, key=lambda k: -k[0]), start=1):
        view = labels[box]
        view[lesion & (view == 0)] = number
    return relabel_sequential(labels)[0]  # a lesion wholly inside an earlier one leaves no gap
