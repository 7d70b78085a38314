"""``measure_case``: organs, liver reference, SSTR-positive and SSTR-negative lesions, tables, label maps.

PET in SUVbw on its own grid, CT in HU; the PET is never resampled for measuring, only masks are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from pfs_core.errors import InputError
from pfs_core.io import Volume, check_overlap
from pfs_core.io.organ_files import read_organ_masks
from pfs_core.io.organs import ORGAN_CODE, OrganMasks
from pfs_core.measure.ct_lesions import (
    LiverCT,
    LiverDensity,
    hypodense,
    liver_ct,
    liver_ct_lesions,
    liver_density,
)
from pfs_core.measure.pet_lesions import smoothed, sstr_positive
from pfs_core.measure.reference import LiverReference, liver_reference
from pfs_core.measure.settings import MeasureSettings
from pfs_core.measure.table import (
    LESION_COLUMNS,
    LesionVoxels,
    lesion_row,
    patient_features,
    sphere_kernel,
    suv_peak,
)
from pfs_core.preprocessing.resample import resample_array

MEASURE_VERSION = "1.0"


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


def _world(index: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return (np.c_[index, np.ones(len(index))] @ np.asarray(affine).T)[:, :3]


def _sample(data: np.ndarray, affine: np.ndarray, world: np.ndarray, *, order: int) -> np.ndarray:
    """Values of ``data`` (grid ``affine``) at world points ``(N, 3)``; 0 outside."""
    at = (np.c_[world, np.ones(len(world))] @ np.linalg.inv(affine).T)[:, :3]
    return ndimage.map_coordinates(data, at.T, order=order, mode="constant", cval=0.0)


def organ_fractions(organs: OrganMasks, pet: Volume) -> dict[str, np.ndarray]:
    """Fraction (0..1) of each PET voxel that each delineated organ covers, on the PET grid."""
    out = {}
    for name in organs.present:
        mask = organs.mask(name)
        box = ndimage.find_objects(mask.astype(np.uint8))
        if not box or box[0] is None:
            continue
        box = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in box[0])
        shift = np.eye(4)
        shift[:3, 3] = [s.start for s in box]
        out[name] = resample_array(mask[box].astype(np.float32), organs.affine @ shift,
                                   to_affine=pet.affine, to_shape=pet.shape)
    return out


def _cold_on_pet(lct: LiverCT | None, ct: Volume, pet: Volume, settings: MeasureSettings) -> np.ndarray | None:
    """PET voxels mostly covered by CT-hypodense liver (lesions, necrosis): not parenchyma."""
    if lct is None:
        return None
    cold = hypodense(lct, liver_density(lct), settings)
    if not cold.any():
        return None
    shift = np.eye(4)
    shift[:3, 3] = [s.start for s in lct.box]
    return resample_array(cold.astype(np.float32), ct.affine @ shift, to_affine=pet.affine, to_shape=pet.shape) >= 0.5


def _onto_pet(labels: np.ndarray, ct: Volume, pet: Volume) -> np.ndarray:
    """CT-grid label map on the PET grid (nearest)."""
    return resample_array(labels, ct.affine, to_affine=pet.affine, to_shape=pet.shape, mode="nearest").astype(np.int32)


def _onto_ct(labels: np.ndarray, pet: Volume, ct: Volume) -> np.ndarray:
    """PET-grid label map on the CT grid (nearest), computed only over the lesions' box."""
    out = np.zeros(ct.shape, dtype=np.int32)
    if not labels.any():
        return out
    found = np.argwhere(labels > 0)
    corners = _world(np.array([[a, b, c] for a in (found[:, 0].min() - 1, found[:, 0].max() + 1)
                               for b in (found[:, 1].min() - 1, found[:, 1].max() + 1)
                               for c in (found[:, 2].min() - 1, found[:, 2].max() + 1)], float), pet.affine)
    at = (np.c_[corners, np.ones(8)] @ np.linalg.inv(ct.affine).T)[:, :3]
    lo = np.clip(np.floor(at.min(axis=0)).astype(int), 0, ct.shape)
    hi = np.clip(np.ceil(at.max(axis=0)).astype(int) + 1, 0, ct.shape)
    if np.any(hi <= lo):
        return out
    shift = np.eye(4)
    shift[:3, 3] = lo
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    out[box] = resample_array(labels, pet.affine, to_affine=ct.affine @ shift, to_shape=tuple(hi - lo), mode="nearest")
    return out


def _positive_rows(labels: np.ndarray, pet: Volume, ct: Volume, organs: OrganMasks,
                   ref: LiverReference) -> list[dict[str, object]]:
    kernel = sphere_kernel(pet.spacing_mm)
    voxel_ml = float(np.prod(pet.spacing_mm)) / 1000.0
    rows = []
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        lesion = np.zeros(labels.shape, dtype=bool)
        lesion[box] = labels[box] == number
        index = np.argwhere(lesion)
        world = _world(index, pet.affine)
        voxels = LesionVoxels(suv=pet.data[lesion], hu=_sample(ct.data, ct.affine, world, order=1),
                              organ=_sample(organs.labels, organs.affine, world, order=0).astype(np.int64),
                              world=world, voxel_ml=voxel_ml, suv_peak=suv_peak(pet.data, lesion, kernel))
        rows.append(lesion_row(number, "SSTR-positive", voxels, ref.mean))
    return rows


def _ct_rows(labels: np.ndarray, first_id: int, status: str, pet: Volume, ct: Volume,
             ref: LiverReference) -> list[dict[str, object]]:
    """Rows of liver lesions delineated on the CT grid (uptake sampled from the PET)."""
    voxel_ml = float(np.prod(ct.spacing_mm)) / 1000.0
    rows = []
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        index = np.argwhere(labels[box] == number) + [s.start for s in box]
        world = _world(index, ct.affine)
        suv = _sample(pet.data, pet.affine, world, order=1)
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

    return segment_organs(ct, device=device)


def measure_case(pet: Volume, ct: Volume, *, organs: OrganMasks | None = None,
                 settings: MeasureSettings | None = None, device: str | None = None) -> Measurement:
    """Delineate and measure the lesions of one PET/CT.

    ``organs`` on the CT grid (:func:`find_organs`); without them the organ network delineates them.
    Same input, same output: nothing here is random.
    """
    settings = settings or MeasureSettings()
    check_overlap(pet, ct)
    organs = organs if organs is not None else find_organs(ct, device=device)
    if "liver" not in organs.present or not organs.mask("liver").any():
        raise InputError(f"organ masks ({organs.source}): no liver; the liver is the reference of every "
                         "lesion measure: give masks that include the liver")
    fractions = organ_fractions(organs, pet)
    lct = liver_ct(ct.data, organs.mask("liver"), ct.affine, settings)
    ref = liver_reference(pet.data, fractions["liver"] >= 0.5, pet.spacing_mm, erosion_mm=settings.liver_erosion_mm,
                          smoothed_pet=smoothed(pet.data, pet.spacing_mm, settings.detect_smooth_mm),
                          exclude=_cold_on_pet(lct, ct, pet, settings))
    positive = sstr_positive(pet.data, fractions, pet.spacing_mm, ref, settings)
    labels = _onto_ct(positive, pet, ct)
    negative, faint, cores, density = liver_ct_lesions(lct, ct.affine, pet=pet.data, pet_affine=pet.affine,
                                                       positive=labels, ref=ref, settings=settings)
    if cores.any():  # necrotic cores belong to their lesions' volumes
        positive = np.where(positive > 0, positive, _onto_pet(cores, ct, pet))
        labels = _onto_ct(positive, pet, ct)
    rows = _positive_rows(positive, pet, ct, organs, ref)
    rows += _ct_rows(faint, len(rows) + 1, "SSTR-positive", pet, ct, ref)
    rows += _ct_rows(negative, len(rows) + 1, "SSTR-negative", pet, ct, ref)
    table = pd.DataFrame(rows, columns=list(LESION_COLUMNS))
    n_pet = int(positive.max())
    _add(labels, faint, n_pet)
    _add(labels, negative, n_pet + int(faint.max()))
    features = patient_features(table, liver_suv=ref.mean, liver_volume_ml=organs.volume_ml("liver"))
    return Measurement(lesions=table, features=features, lesion_labels=labels, organs=organs, liver=ref,
                       density=density, settings=settings)
