"""Phantom builders of the measurement tests: a CT (HU), an SSTR PET (SUVbw) and organ masks with exact answers.

Geometry (world mm, RAS+). The CT has 2-mm voxels, voxel ``i`` spanning ``[2i, 2i + 2)``; the PET has
4-mm voxels on another grid with other origins (``PET_START``), voxel ``p`` spanning
``[PET_START + 4p, PET_START + 4p + 4)``. Every PET voxel boundary is a CT voxel boundary, so each
PET voxel holds exactly 2 × 2 × 2 CT voxels, and a box whose faces lie on multiples of 4 mm
(``Phantom.box``) is a whole number of voxels on both grids. The PET is the CT-grid activity
averaged over each PET voxel (exact partial volume), optionally blurred (Gaussian, FWHM in mm) and
made noisy (seeded).

Default anatomy (``Phantom()``, boxes ``[lo, hi)`` in mm): body (40 HU, SUV 1) in air (−1000 HU,
SUV 0); liver x 8–88, y 28–104, z 8–88 (60 HU or 110 HU enhanced, SUV 6, 486.4 mL); spleen
x 92–112 (SUV 24); right kidney touching the liver's posterior face y = 28 (SUV 14); left kidney
under the spleen (SUV 14); pancreas x 92–112, y 88–104, z 16–80 (SUV 3).

Test modules import these helpers as ``measure_phantoms`` (registered below): ``conftest`` is the name of
every folder's conftest module, so ``from conftest import`` would depend on which was imported last.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest
from scipy import ndimage

from pfs_core.io import Volume
from pfs_core.io.organs import ORGAN_CODE, OrganMasks

CT_SPACING = 2.0
PET_SPACING = 4.0
CT_SHAPE = (60, 56, 48)  # 120 x 112 x 96 mm
PET_START = (-8.0, -4.0, -12.0)  # world mm of the PET grid's first voxel edge (the CT's is 0, 0, 0)
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
LIVER_SUV = 6.0
PET_VOXEL_ML = PET_SPACING**3 / 1000.0
CT_VOXEL_ML = CT_SPACING**3 / 1000.0

Box = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]

BODY: Box = ((4, 116), (4, 108), (0, 96))
LAYOUT: dict[str, Box] = {
    "liver": ((8, 88), (28, 104), (8, 88)),
    "spleen": ((92, 112), (40, 84), (32, 80)),
    "kidney_right": ((16, 44), (8, 28), (24, 64)),  # its anterior face is the liver's posterior face (y = 28)
    "kidney_left": ((92, 112), (8, 32), (24, 64)),
    "pancreas": ((92, 112), (88, 104), (16, 80)),
}
SUV = {"liver": LIVER_SUV, "spleen": 24.0, "kidney_right": 14.0, "kidney_left": 14.0, "pancreas": 3.0}
HU = {"liver": 60.0, "spleen": 45.0, "kidney_right": 30.0, "kidney_left": 30.0, "pancreas": 40.0}


def box_volume_ml(box: Box) -> float:
    return float(np.prod([hi - lo for lo, hi in box])) / 1000.0


def ct_affine() -> np.ndarray:
    affine = np.diag([CT_SPACING, CT_SPACING, CT_SPACING, 1.0])
    affine[:3, 3] = CT_SPACING / 2.0  # voxel 0 centred at 1 mm: it spans [0, 2) mm
    return affine


@dataclass
class Phantom:
    """Organs, uptake and attenuation painted on the CT grid; ``build`` makes the three inputs of ``measure_case``.

    Later paints win: paint organs first (done by the constructor), then lesions.
    """

    liver_hu: float = 60.0
    layout: dict[str, Box] = field(default_factory=lambda: dict(LAYOUT))
    suv: dict[str, float] = field(default_factory=lambda: dict(SUV))

    def __post_init__(self) -> None:
        self.affine = ct_affine()
        centres = [np.arange(n) * CT_SPACING + CT_SPACING / 2.0 for n in CT_SHAPE]
        self.x, self.y, self.z = np.meshgrid(*centres, indexing="ij", sparse=True)
        self.labels = np.zeros(CT_SHAPE, dtype=np.uint8)
        self.hu = np.full(CT_SHAPE, -1000.0, dtype=np.float32)
        self.activity = np.zeros(CT_SHAPE, dtype=np.float32)
        body = self.box(BODY)
        self.hu[body], self.activity[body] = 40.0, 1.0
        hu = dict(HU, liver=self.liver_hu)
        for name, where in self.layout.items():
            mask = self.box(where)
            self.labels[mask] = ORGAN_CODE[name]
            self.hu[mask], self.activity[mask] = hu[name], self.suv[name]

    def box(self, where: Box) -> np.ndarray:
        """CT-grid mask of the world box ``[lo, hi)`` per axis (mm); faces on multiples of 4 mm fit both grids."""
        (x0, x1), (y0, y1), (z0, z1) = where
        return (x0 <= self.x) & (self.x < x1) & (y0 <= self.y) & (self.y < y1) & (z0 <= self.z) & (self.z < z1)

    def sphere(self, centre: tuple[float, float, float], radius_mm: float) -> np.ndarray:
        """CT-grid mask of the voxels whose centre lies within ``radius_mm`` of ``centre`` (mm)."""
        cx, cy, cz = centre
        return (self.x - cx) ** 2 + (self.y - cy) ** 2 + (self.z - cz) ** 2 <= radius_mm**2

    def paint(self, mask: np.ndarray, *, suv: float | None = None, hu: float | None = None,
              hu_delta: float | None = None) -> np.ndarray:
        """Set uptake (SUVbw) and/or attenuation (HU, or a change of HU) inside ``mask``; returns ``mask``."""
        if suv is not None:
            self.activity[mask] = suv
        if hu is not None:
            self.hu[mask] = hu
        if hu_delta is not None:
            self.hu[mask] += hu_delta
        return mask

    def organs(self, *, without: tuple[str, ...] = ()) -> OrganMasks:
        labels = self.labels.copy()
        for name in without:
            labels[labels == ORGAN_CODE[name]] = 0
        present = tuple(n for n in ORGAN_CODE if (labels == ORGAN_CODE[n]).any())
        return OrganMasks(labels=labels, affine=self.affine.copy(), source="phantom", present=present)

    def pet(self, *, blur_fwhm_mm: float = 0.0, noise: float = 0.0, seed: int = 0, lps: bool = False) -> Volume:
        """The activity averaged over each PET voxel (SUVbw), then blurred and made noisy.

        ``noise``: relative SD of a Poisson-like noise (SD = ``noise`` × sqrt(SUV × liver SUV)).
        ``lps``: store the PET with its first two voxel axes reversed (an LPS-ordered grid, same world).
        """
        before = [int(round(-s / CT_SPACING)) for s in PET_START]
        shape = [math.ceil((n + b) / 2) for n, b in zip(CT_SHAPE, before, strict=True)]
        padded = np.zeros([2 * n for n in shape], dtype=np.float64)
        padded[before[0]:before[0] + CT_SHAPE[0], before[1]:before[1] + CT_SHAPE[1],
               before[2]:before[2] + CT_SHAPE[2]] = self.activity
        data = padded.reshape(shape[0], 2, shape[1], 2, shape[2], 2).mean(axis=(1, 3, 5))
        if blur_fwhm_mm > 0:
            data = ndimage.gaussian_filter(data, blur_fwhm_mm * FWHM_TO_SIGMA / PET_SPACING)
        if noise > 0:
            rng = np.random.default_rng(seed)
            data = data + rng.normal(0.0, 1.0, data.shape) * noise * np.sqrt(np.clip(data, 0, None) * LIVER_SUV)
            data = np.clip(data, 0.0, None)
        affine = np.diag([PET_SPACING, PET_SPACING, PET_SPACING, 1.0])
        affine[:3, 3] = np.asarray(PET_START) + PET_SPACING / 2.0
        if lps:
            flip = np.diag([-1.0, -1.0, 1.0, 1.0])
            flip[0, 3], flip[1, 3] = shape[0] - 1, shape[1] - 1
            data, affine = data[::-1, ::-1, :], affine @ flip
        return Volume(data=np.ascontiguousarray(data, dtype=np.float32), affine=affine, source="pet.nii.gz",
                      modality="PET", units="SUVbw")

    def ct(self, *, noise_hu: float = 0.0, seed: int = 1) -> Volume:
        data = self.hu.copy()
        if noise_hu > 0:
            data += np.random.default_rng(seed).normal(0.0, noise_hu, data.shape).astype(np.float32)
        return Volume(data=data, affine=self.affine.copy(), source="ct.nii.gz", modality="CT", units="HU")

    def build(self, **pet_options: object) -> tuple[Volume, Volume, OrganMasks]:
        return self.pet(**pet_options), self.ct(), self.organs()  # type: ignore[arg-type]


@pytest.fixture
def phantom() -> Phantom:
    """The default anatomy, unenhanced liver (60 HU); paint lesions, then ``build()``."""
    return Phantom()


if sys.modules.get(__name__) is not None:  # pytest imports this file before the test modules of its folder
    sys.modules.setdefault("measure_phantoms", sys.modules[__name__])
