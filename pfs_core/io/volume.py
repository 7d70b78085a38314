"""The :class:`Volume` record and world-space geometry helpers.

Conventions are nibabel's: ``data[i, j, k]`` is one voxel and ``affine`` maps the
voxel index ``(i, j, k, 1)`` of a voxel *centre* to world millimetres in RAS+
(x increases towards the patient's Right, y Anterior, z Superior). DICOM uses
LPS+ (x towards Left, y Posterior); ``LPS_TO_RAS`` flips the sign of x and y.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import nibabel as nib
import numpy as np

Modality = Literal["PET", "CT"]
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """One 3D image in memory.

    Attributes:
        data: float32 array ``(I, J, K)``, voxel axes as stored (nibabel order);
            HU for CT, SUVbw (g/mL) for PET.
        affine: ``(4, 4)`` float64, voxel index → world mm, RAS+ (nibabel convention).
        source: file or folder name, used in messages.
        modality: ``"PET"`` or ``"CT"``.
        units: ``"HU"`` or ``"SUVbw"``.
        suv_note: how the SUV values were obtained ("" for CT).
        warnings: what the loader noticed but accepted (values clipped, units doubtful), one sentence each,
            never a patient's value; a prediction from this volume repeats them.
    """

    data: np.ndarray
    affine: np.ndarray
    source: str
    modality: Modality
    units: str
    suv_note: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along the three voxel axes (mm)."""
        return voxel_spacing(self.affine)

    @property
    def orientation(self) -> str:
        """Axis code of the voxel axes, e.g. ``"RAS"`` or ``"LPS"`` (nibabel ``aff2axcodes``)."""
        return "".join(str(c) for c in nib.aff2axcodes(self.affine))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel counts ``(I, J, K)``."""
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Length (mm) of the three voxel-axis columns of ``affine``."""
    norms = np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    return tuple(float(n) for n in norms)  # type: ignore[return-value]


def world_bounds(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world box (mm, RAS) that holds every voxel of the grid, edges included.

    Returns ``(low, high)``, each of shape ``(3,)``.
    """
    edges = [(-0.5, n - 0.5) for n in shape[:3]]
    corners = np.array([[a, b, c, 1.0] for a in edges[0] for b in edges[1] for c in edges[2]])
    world = corners @ np.asarray(affine, dtype=float).T
    return world[:, :3].min(axis=0), world[:, :3].max(axis=0)


@dataclass(frozen=True)
class Overlap:
    """World-box overlap of two images: intersection volume over each image's box volume."""

    fraction_of_pet: float
    fraction_of_ct: float

    @property
    def fraction(self) -> float:
        """Share of the smaller box covered by the other (0..1)."""
        return max(self.fraction_of_pet, self.fraction_of_ct)


def world_overlap(pet: Volume, ct: Volume) -> Overlap:
    """Overlap of the world bounding boxes of ``pet`` and ``ct`` (fractions in 0..1)."""
    p_lo, p_hi = world_bounds(pet.affine, pet.shape)
    c_lo, c_hi = world_bounds(ct.affine, ct.shape)
    inter = np.clip(np.minimum(p_hi, c_hi) - np.maximum(p_lo, c_lo), 0.0, None).prod()
    return Overlap(float(inter / np.prod(p_hi - p_lo)), float(inter / np.prod(c_hi - c_lo)))
