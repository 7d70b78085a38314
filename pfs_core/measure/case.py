"""``measure_case``: organs, liver reference, SSTR-positive and SSTR-negative lesions, tables, label maps.

PET in SUVbw on its own grid, CT in HU; the PET is never resampled for measuring, only masks are.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from pfs_core.errors import InputError
from pfs_core.io import Volume, check_overlap, voxel_spacing
from pfs_core.io.organ_files import read_organ_masks
from pfs_core.io.organs import ORGAN_CODE, ORGANS, OrganMasks
from pfs_core.measure.ct_lesions import (
    LiverCT,
    LiverDensity,
    hypodense,
    liver_ct,
    liver_ct_lesions,
    liver_density,
)
from pfs_core.measure.grids import (
    Box,
    bounding_box,
    grow,
    intersect,
    relative,
    resample_box,
    resample_full,
    sample_at,
    world_of,
)
from pfs_core.measure.pet_lesions import smoothed, sstr_positive
from pfs_core.measure.reference import LiverReference, liver_reference
from pfs_core.measure.settings import MeasureSettings, settings_of
from pfs_core.measure.table import (
    LESION_COLUMNS,
    LesionVoxels,
    lesion_row,
    patient_features,
    sphere_kernel,
    suv_peak,
)

# 1.1: photopenic SSTR-negative liver lesions (MeasureSettings.photopenic_*); 1.2: SSTR-negative only when the
# median uptake lies below the liver, necrotic cores at 10 % contact (MeasureSettings.cold_*, core_min_contact)
# 1.3: hypodense liver lesions grow into their weakly hypodense rims (MeasureSettings.cold_grow_*), and fainter
# hypodensities count where the PET is cold too (MeasureSettings.cold_both_*)
MEASURE_VERSION = "1.3"


def measurement_record(version: str) -> dict[str, Any]:
    """What a bundle or a results.json records of the lesion measurement it used: the version of the code,
    the measurement asked for (``TrainConfig.measurement``) and its settings."""
    return {"measure_version": MEASURE_VERSION, "measurement": version, "settings": settings_of(version).to_dict()}


@dataclass
class Measurement:
    """Everything ``measure`` reports for one PET/CT.

    ``lesion_labels`` is int32 on the CT grid with the ids of ``lesions``: SSTR-positive lesions found
    on the PET (by decreasing SUVmax), then faintly SSTR-positive liver lesions found on the CT, then
    SSTR-negative liver lesions.
    """

    lesions: pd.DataFrame
    features: dict[str, float]
    lesion_labels: np.ndarray
    organs: OrganMasks
    liver: LiverReference
    density: LiverDensity
    settings: MeasureSettings = field(default_factory=MeasureSettings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``measurements.json``)."""
        return {
            "measure_version": MEASURE_VERSION,
            "features": self.features,
            "n_lesions": len(self.lesions),
            "liver_reference": {"suv_median": round(self.liver.mean, 3), "suv_sd": round(self.liver.sd, 3),
                                "n_pet_voxels": self.liver.n_voxels, "erosion_mm": self.liver.erosion_mm},
            "liver_density": {"hu_median": round(self.density.median_hu, 1), "hu_sd": round(self.density.sd_hu, 1)},
            "organs": {"source": self.organs.source, "present": list(self.organs.present),
                       "volume_ml": {n: round(self.organs.volume_ml(n), 1) for n in self.organs.present}},
            "settings": self.settings.to_dict(),
        }


def organ_boxes(organs: OrganMasks) -> dict[str, Box]:
    """Bounding box (CT voxels, grown by 2) of each present, non-empty organ: one pass over the label map."""
    found = ndimage.find_objects(organs.labels, max_label=max(ORGANS))
    shape = organs.labels.shape
    return {name: grow(found[ORGAN_CODE[name] - 1], 2, shape) for name in organs.present
            if found[ORGAN_CODE[name] - 1] is not None}


def organ_fractions(organs: OrganMasks, pet: Volume, boxes: dict[str, Box] | None = None) -> dict[str, np.ndarray]:
    """Fraction (0..1) of each PET voxel that each delineated organ covers, on the PET grid.

    ``boxes`` from :func:`organ_boxes`; each organ is resampled only onto the PET voxels near its box.
    """
    boxes = organ_boxes(organs) if boxes is None else boxes
    return {name: resample_full((organs.labels[box] == ORGAN_CODE[name]).astype(np.float32), box, organs.affine,
                                to_affine=pet.affine, to_shape=pet.shape) for name, box in boxes.items()}


def _cold_on_pet(lct: LiverCT, ct: Volume, pet: Volume, settings: MeasureSettings) -> np.ndarray | None:
    """PET voxels mostly covered by CT-hypodense liver (lesions, necrosis): not parenchyma."""
    cold = hypodense(lct, liver_density(lct), settings)
    if not cold.any():
        return None
    return resample_full(cold.astype(np.float32), lct.box, ct.affine, to_affine=pet.affine, to_shape=pet.shape) >= 0.5


def _eroded(mask: np.ndarray, depth_mm: float, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """``mask`` eroded by a box of ``depth_mm`` (at least one voxel) on each side."""
    depth = [max(int(round(depth_mm / s)), 1) for s in spacing_mm]
    return ndimage.binary_erosion(mask, structure=np.ones([2 * d + 1 for d in depth], bool))


def _photopenic_on_ct(smooth_pet: np.ndarray, liver_fraction: np.ndarray, ref: LiverReference, pet: Volume,
                      ct: Volume, box: Box, settings: MeasureSettings) -> np.ndarray | None:
    """Photopenic liver defects of the PET (``settings.photopenic_*``) on the CT box ``box``, or None."""
    liver = liver_fraction >= 0.5
    cold = _eroded(liver, settings.liver_erosion_mm, pet.spacing_mm) & (smooth_pet < settings.photopenic_ratio * ref.mean)
    parts, n = ndimage.label(cold)
    if n == 0:
        return None
    sizes = ndimage.sum_labels(cold, parts, index=np.arange(1, n + 1)) * float(np.prod(pet.spacing_mm)) / 1000.0
    seeds = np.isin(parts, 1 + np.flatnonzero(sizes >= settings.photopenic_min_ml))
    # each defect grows to the midpoint between its floor and the liver (half the erosion from the edge)
    reach = _eroded(liver, settings.liver_erosion_mm / 2, pet.spacing_mm) & (
        smooth_pet < (1 + settings.photopenic_ratio) / 2 * ref.mean)
    grown, _ = ndimage.label(reach)
    reached = np.unique(grown[seeds])
    return _pet_mask_on_ct(np.isin(grown, reached[reached > 0]) | seeds, pet, ct, box)


def _pet_mask_on_ct(keep: np.ndarray, pet: Volume, ct: Volume, box: Box) -> np.ndarray | None:
    """The PET-grid mask ``keep`` on the CT box ``box`` (CT voxels at least half covered), or None when empty."""
    found = bounding_box(keep)
    if found is None:
        return None
    done = resample_box(keep[found].astype(np.float32), found, pet.affine, to_affine=ct.affine, to_shape=ct.shape)
    out = np.zeros(tuple(s.stop - s.start for s in box), dtype=bool)
    both = intersect(done[0], box) if done is not None else None
    if done is None or both is None:
        return None
    out[relative(both, box)] = done[1][relative(both, done[0])] >= 0.5
    return out


def _cold_pet_on_ct(smooth_pet: np.ndarray, liver_fraction: np.ndarray, ref: LiverReference, pet: Volume,
                    ct: Volume, box: Box, settings: MeasureSettings) -> np.ndarray | None:
    """Liver PET voxels whose smoothed uptake lies below the SSTR-negative threshold, at least
    ``cold_both_inside_mm`` inside the liver (nearer its edge the PET's blur mixes in the surroundings), on the
    CT box ``box``; None when there are none or the rule is off (``cold_both_hu`` 0)."""
    if settings.cold_both_hu <= 0:
        return None
    limit = settings.cold_max_ratio * ref.mean + settings.cold_noise_sd * ref.sd
    cold = _eroded(liver_fraction >= 0.5, settings.cold_both_inside_mm, pet.spacing_mm) & (smooth_pet < limit)
    return _pet_mask_on_ct(cold, pet, ct, box)


def _onto_pet(labels: np.ndarray, box: Box, ct: Volume, pet: Volume) -> np.ndarray:
    """Label map on the box ``box`` of the CT grid (zero outside it) on the PET grid (nearest)."""
    return resample_full(labels, box, ct.affine, to_affine=pet.affine, to_shape=pet.shape,
                         mode="nearest").astype(np.int32)


def _lesions_on_ct(labels: np.ndarray, pet: Volume, ct: Volume) -> dict[int, tuple[Box, np.ndarray]]:
    """Each lesion of the PET-grid label map on the CT grid (nearest): its CT box and its mask there.

    Lesion by lesion, over each one's own box (a clinical CT holds ~80 M voxels).
    """
    pieces = {}
    for number, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        grown = grow(found, 1, labels.shape)  # the neighbours decide where the lesion's nearest voxels end
        done = resample_box(labels[grown], grown, pet.affine, to_affine=ct.affine, to_shape=ct.shape, mode="nearest",
                            reach=found)
        if done is not None:
            pieces[number] = (done[0], done[1] == number)
    return pieces


def _merge(pieces: dict[int, tuple[Box, np.ndarray]], more: dict[int, tuple[Box, np.ndarray]]) -> None:
    """Add ``more``'s CT voxels to the lesions of ``pieces`` (both from :func:`_lesions_on_ct`; in place)."""
    for number, (box, mask) in more.items():
        old_box, old_mask = pieces.get(number, (box, np.zeros(mask.shape, dtype=bool)))
        union = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(old_box, box, strict=True))
        merged = np.zeros(tuple(u.stop - u.start for u in union), dtype=bool)
        merged[relative(old_box, union)] |= old_mask
        merged[relative(box, union)] |= mask
        pieces[number] = (union, merged)


def _paint(pieces: dict[int, tuple[Box, np.ndarray]], shape: tuple[int, ...], box: Box | None = None) -> np.ndarray:
    """int32 label map from :func:`_lesions_on_ct`'s pieces, in the order of their ids, on the box ``box`` of
    the grid of ``shape`` (all of it by default)."""
    box = box if box is not None else tuple(slice(0, n) for n in shape)
    out = np.zeros(tuple(b.stop - b.start for b in box), dtype=np.int32)
    for number in sorted(pieces):
        where, mask = pieces[number]
        both = intersect(where, box)
        if both is not None:
            out[relative(both, box)][mask[relative(both, where)]] = number
    return out


def _positive_rows(labels: np.ndarray, pet: Volume, ct: Volume, organs: OrganMasks,
                   ref: LiverReference) -> list[dict[str, object]]:
    kernel = sphere_kernel(pet.spacing_mm)
    reach = [k // 2 for k in kernel.shape]  # SUVpeak spheres centred in the lesion reach this far out
    voxel_ml = float(np.prod(pet.spacing_mm)) / 1000.0
    rows = []
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        near = grow(box, reach, labels.shape)
        lesion = labels[near] == number
        index = np.argwhere(lesion) + [s.start for s in near]
        world = world_of(index, pet.affine)
        voxels = LesionVoxels(suv=pet.data[near][lesion], hu=sample_at(ct.data, ct.affine, world, order=1),
                              organ=sample_at(organs.labels, organs.affine, world, order=0).astype(np.int64),
                              world=world, voxel_ml=voxel_ml, suv_peak=suv_peak(pet.data[near], lesion, kernel))
        rows.append(lesion_row(number, "SSTR-positive", voxels, ref.mean))
    return rows


def _ct_rows(labels: np.ndarray, origin: Box, first_id: int, status: str, pet: Volume, ct: Volume,
             ref: LiverReference) -> list[dict[str, object]]:
    """Rows of liver lesions delineated on the CT grid (uptake sampled from the PET); ``labels`` holds
    them on the box ``origin`` of the CT grid."""
    voxel_ml = float(np.prod(ct.spacing_mm)) / 1000.0
    rows = []
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        index = np.argwhere(labels[box] == number) + [s.start + o.start for s, o in zip(box, origin, strict=True)]
        world = world_of(index, ct.affine)
        suv = sample_at(pet.data, pet.affine, world, order=1)
        voxels = LesionVoxels(suv=suv, hu=ct.data[tuple(index.T)], organ=np.full(len(index), ORGAN_CODE["liver"]),
                              world=world, voxel_ml=voxel_ml, suv_peak=float("nan"))
        rows.append(lesion_row(first_id + number - 1, status, voxels, ref.mean))
    return rows


def _add(labels: np.ndarray, more: np.ndarray, offset: int) -> None:
    """Write ``more`` (ids 1..n) into the free voxels of ``labels`` as ids offset+1..offset+n (in place)."""
    free = (more > 0) & (labels == 0)
    labels[free] = more[free] + offset


def find_organs(ct: Volume, *, organs: str | Path | None = None, label_names: str | Path | None = None,
                device: str | None = None) -> OrganMasks:
    """Organ masks on the CT grid: from the file or folder ``organs`` when given, else the organ network."""
    if organs is not None:
        return read_organ_masks(organs, ct=ct, label_names=label_names)
    from pfs_core.models.organ_seg import segment_organs  # torch network: loaded only when needed

    return plausible_abdomen(segment_organs(ct, device=device))


#: The network's organs are used only when at least two of these hold this many mL: an upper abdomen
#: shows the liver with the spleen and kidneys (a splenectomy or a nephrectomy still leaves two).
ABDOMEN_ORGANS = ("spleen", "kidney_right", "kidney_left")
ABDOMEN_MIN_ML = 30.0


def plausible_abdomen(organs: OrganMasks) -> OrganMasks:
    """``organs`` from the network, or an InputError when they do not look like an upper abdomen.

    The network was trained on simulated abdomens only; on a CT of another region it still labels a
    "liver", and every lesion figure would be measured against it.
    """
    found = {n: organs.volume_ml(n) for n in ABDOMEN_ORGANS if n in organs.present}
    if organs.volume_ml("liver") > 0 and sum(v >= ABDOMEN_MIN_ML for v in found.values()) >= 2:
        return organs
    sizes = ", ".join(f"{n} {v:.0f} mL" for n, v in found.items()) or "none"
    raise InputError(f"the organ network found no plausible upper abdomen on this CT (liver "
                     f"{organs.volume_ml('liver'):.0f} mL; {sizes}): the CT may not show the liver, or the network "
                     "(trained on simulated CTs) failed on it; give organ masks (--organs, e.g. TotalSegmentator output)")


def measure_case(pet: Volume, ct: Volume, *, organs: OrganMasks | None = None,
                 settings: MeasureSettings | None = None, device: str | None = None) -> Measurement:
    """Delineate and measure the lesions of one PET/CT.

    ``organs`` on the CT grid (:func:`find_organs`); without them the organ network delineates them.
    Same input, same output: nothing here is random.
    """
    settings = settings or MeasureSettings()
    check_overlap(pet, ct)
    organs = organs if organs is not None else find_organs(ct, device=device)
    boxes = organ_boxes(organs)
    if "liver" not in boxes:
        raise InputError(f"organ masks ({organs.source}): no liver; the liver is the reference of every "
                         "lesion measure: give masks that include the liver")
    liver = organs.labels[boxes["liver"]] == ORGAN_CODE["liver"]  # on the liver's box only
    fractions = organ_fractions(organs, pet, boxes)
    lct = liver_ct(ct.data, liver, boxes["liver"], ct.affine, settings,
                   edge_mm=settings.network_edge_mm if organs.from_network else 0.0)
    smooth_pet = smoothed(pet.data, pet.spacing_mm, settings.detect_smooth_mm)
    ref = liver_reference(pet.data, fractions["liver"] >= 0.5, pet.spacing_mm, erosion_mm=settings.liver_erosion_mm,
                          smoothed_pet=smooth_pet, exclude=_cold_on_pet(lct, ct, pet, settings))
    physiology = replace(settings, organ_margin_mm=settings.network_organ_margin_mm) if organs.from_network else settings
    positive = sstr_positive(pet.data, fractions, pet.spacing_mm, ref, physiology)
    pieces = _lesions_on_ct(positive, pet, ct)
    negative, faint, cores, density = liver_ct_lesions(
        lct, ct.affine, pet=pet.data, pet_affine=pet.affine, positive=_paint(pieces, ct.shape, lct.box), ref=ref,
        settings=settings, photopenic=_photopenic_on_ct(smooth_pet, fractions["liver"], ref, pet, ct, lct.box,
                                                        settings),
        cold_pet=_cold_pet_on_ct(smooth_pet, fractions["liver"], ref, pet, ct, lct.box, settings), smooth_pet=smooth_pet)
    if cores.any():  # necrotic cores belong to their lesions' volumes
        added = np.where(positive > 0, 0, _onto_pet(cores, lct.box, ct, pet))
        positive = np.where(positive > 0, positive, added)
        # a CT voxel whose nearest PET voxel joined a lesion joins it too: only the added voxels are resampled
        _merge(pieces, _lesions_on_ct(added, pet, ct))
    labels = _paint(pieces, ct.shape)
    rows = _positive_rows(positive, pet, ct, organs, ref)
    rows += _ct_rows(faint, lct.box, len(rows) + 1, "SSTR-positive", pet, ct, ref)
    rows += _ct_rows(negative, lct.box, len(rows) + 1, "SSTR-negative", pet, ct, ref)
    table = pd.DataFrame(rows, columns=list(LESION_COLUMNS))
    n_pet = int(positive.max())
    in_liver = labels[lct.box]  # a view: the CT-found lesions lie in the liver's box
    _add(in_liver, faint, n_pet)
    _add(in_liver, negative, n_pet + int(faint.max()))
    # organs.volume_ml("liver"), counted on the liver's box instead of the whole CT
    liver_ml = float(np.count_nonzero(liver) * np.prod(voxel_spacing(organs.affine)) / 1000.0)
    features = patient_features(table, liver_suv=ref.mean, liver_volume_ml=liver_ml)
    return Measurement(lesions=table, features=features, lesion_labels=labels, organs=organs, liver=ref,
                       density=density, settings=settings)
