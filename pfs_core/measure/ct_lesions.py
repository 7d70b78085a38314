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

    def voxels(self, volume_ml: float) -> float:
        """How many CT voxels make ``volume_ml`` mL."""
        return volume_ml * 1000.0 / float(np.prod(self.spacing_mm))


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


def grow_cold(seeds: np.ndarray, lct: LiverCT, density: LiverDensity, *, allowed: np.ndarray, ct_affine: np.ndarray,
              smooth_pet: np.ndarray, pet_affine: np.ndarray, ref: LiverReference,
              settings: MeasureSettings) -> np.ndarray:
    """Hypodense ``seeds`` of at least ``cold_min_volume_ml`` grown into the weakly hypodense liver around them
    where the PET is not above the liver (hysteresis; box grid, within ``allowed``).

    A real metastasis is darkest at its centre and fades into the liver over millimetres, so the strict
    hypodensity rule keeps only its core. A seed takes the voxels at least ``cold_grow_hu``, ``cold_grow_sd``
    SDs and ``cold_grow_depth`` × its own depth (the parenchyma minus its 5th-percentile HU) below the
    parenchyma, with smoothed uptake at most ``cold_grow_max_ratio`` × liver, within ``cold_grow_mm`` along
    paths inside them (so that a hypodense vessel does not carry a lesion across the liver). Half the depth
    is the edge of a uniform lesion on the smoothed CT, as a fixed fraction of SUVmax is on the PET.
    """
    seeds = seeds & allowed
    parts, n = ndimage.label(seeds)
    if settings.cold_grow_mm <= 0 or n == 0:
        return seeds
    steps = int(round(settings.cold_grow_mm / float(np.min(lct.spacing_mm)))) + 1
    min_voxels = lct.voxels(settings.cold_min_volume_ml)
    floor = max(settings.cold_grow_hu, settings.cold_grow_sd * density.sd_hu)
    origin = np.array([s.start for s in lct.box])
    out = seeds.copy()
    sizes = np.bincount(parts.ravel())
    for index, part_box in enumerate(ndimage.find_objects(parts), start=1):
        if sizes[index] < min_voxels:  # the many noise specks of the liver would grow into lesions of their own
            continue
        box = grow(part_box, steps, parts.shape)
        seed = parts[box] == index
        depth = density.median_hu - float(np.percentile(lct.smooth[box][seed], 5))
        weak = allowed[box] & lct.inner[box] & ~seeds[box] & (
            lct.smooth[box] < density.median_hu - max(floor, settings.cold_grow_depth * depth))
        where = np.argwhere(weak)
        corner = origin + [b.start for b in box]
        uptake = sample_at(smooth_pet, pet_affine, world_of(where + corner, ct_affine), order=1)
        weak[tuple(where[uptake > settings.cold_grow_max_ratio * ref.mean].T)] = False
        out[box] |= geodesic_grow(seed, weak | seed, lct.spacing_mm, settings.cold_grow_mm)
    return out


def _with_new(found: np.ndarray, more: np.ndarray, min_voxels: float) -> np.ndarray:
    """``found`` plus the regions of ``more`` that do not touch a region of ``found`` of at least ``min_voxels``:
    a looser rule may add lesions (and join specks too small to be one), but not widen the lesions a stricter
    rule delineated (at 8 HU the smoothed edge of a dark lesion lies millimetres outside it)."""
    near = bounding_box(more)
    if near is None:
        return found
    near = grow(near, 1, more.shape)  # only here can a region of ``found`` touch one of ``more``
    parts, _ = ndimage.label(more[near])
    seeds, _ = ndimage.label(found)
    sizes = np.bincount(seeds.ravel())
    local = seeds[near]
    lesions = np.isin(local, np.flatnonzero(sizes >= min_voxels)) & (local > 0)
    touching = np.unique(parts[ndimage.binary_dilation(lesions) & (parts > 0)])
    out = found.copy()
    out[near] |= (parts > 0) & ~np.isin(parts, touching[touching > 0])
    return out


def geodesic_grow(seeds: np.ndarray, mask: np.ndarray, spacing_mm: np.ndarray, reach_mm: float) -> np.ndarray:
    """``seeds`` grown within ``mask`` by about ``reach_mm`` along paths inside it (face neighbours).

    One step per finest voxel spacing; an axis with coarser voxels takes part only in the steps at which the
    distance walked passes another of its voxels, so thick slices do not carry the growth further than thin ones.
    """
    step = float(np.min(spacing_mm))
    grown = seeds.copy()
    for i in range(int(round(reach_mm / step))):
        axes = [a for a, s in enumerate(spacing_mm) if int((i + 1) * step / s + 1e-6) > int(i * step / s + 1e-6)]
        structure = np.zeros((3, 3, 3), dtype=bool)
        structure[1, 1, 1] = True
        for a in axes:
            index = [1, 1, 1]
            for end in (0, 2):
                index[a] = end
                structure[tuple(index)] = True
        grown = ndimage.binary_dilation(grown, structure=structure, mask=mask)
    return grown


def liver_ct_lesions(lct: LiverCT, ct_affine: np.ndarray, *, pet: np.ndarray, pet_affine: np.ndarray,
                     positive: np.ndarray, ref: LiverReference, settings: MeasureSettings,
                     photopenic: np.ndarray | None = None, cold_pet: np.ndarray | None = None,
                     smooth_pet: np.ndarray | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, LiverDensity]:
    """Focal hypodense (or, with ``photopenic`` on ``lct.box``, PET-photopenic) liver lesions not already
    found on the PET, split by their PET uptake.

    Returns int32 label maps on the liver's box ``lct.box`` of the SSTR-negative lesions (``cold_quantile``
    percentile of uptake at most ``cold_max_ratio`` × liver plus ``cold_noise_sd`` SDs of the liver's noise),
    of the faintly SSTR-positive ones (above it, yet below the PET detection threshold) and of the
    necrotic cores of PET-found lesions (hypodense regions whose surface lies at least
    ``core_min_contact`` on a PET-found lesion; the ids of ``positive``), and the liver's density.
    ``lct`` comes from :func:`liver_ct`; ``positive`` holds the PET-found lesions on ``lct.box``; hypodense
    regions grow into their weakly hypodense rims (:func:`grow_cold`, read on ``smooth_pet``, else ``pet``).
    With ``cold_pet`` (on ``lct.box``: where the PET lies below the SSTR-negative threshold), regions only
    ``cold_both_hu`` below the parenchyma there are candidates too, unless they touch a hypodense lesion.
    """
    negative = np.zeros(positive.shape, dtype=np.int32)
    faint = np.zeros(positive.shape, dtype=np.int32)
    cores = np.zeros(positive.shape, dtype=np.int32)
    near_positive = ndimage.binary_dilation(positive > 0, iterations=2)
    density = liver_density(lct, exclude=near_positive)  # with a heavy burden the tumour would set it
    # a cold lesion next to a hot one is its own lesion; the hot lesion's rim is not
    candidates = grow_cold(hypodense(lct, density, settings), lct, density, allowed=~near_positive,
                           ct_affine=ct_affine, smooth_pet=pet if smooth_pet is None else smooth_pet,
                           pet_affine=pet_affine, ref=ref, settings=settings)
    min_voxels = lct.voxels(settings.cold_min_volume_ml)
    if cold_pet is not None:  # too faint for the CT alone, but cold on the PET too
        floor = max(settings.cold_both_hu, settings.cold_grow_sd * density.sd_hu)
        candidates = _with_new(candidates, cold_pet & lct.inner & (lct.smooth < density.median_hu - floor), min_voxels)
    if photopenic is not None:  # not where the CT is brighter than the liver: contrast-filled vessels
        candidates |= photopenic & lct.inner & (lct.smooth <= density.median_hu + settings.photopenic_max_hu_above)
    parts, _ = ndimage.label(candidates & ~near_positive)
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
