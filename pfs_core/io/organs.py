"""Organ label maps on the CT grid: the one set of organ codes that measurement uses.

Names follow TotalSegmentator's file names so its output folders map without a table.
Providers (files a user gives, the organ network, the simulator's truth) all return an
:class:`OrganMasks`; ``source`` says which one was used and is shown to the user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# uint8 codes of ``organs.nii.gz`` (0 = none). Liver, spleen and kidneys are needed for
# measurement; bladder, pancreas (uncinate process) and adrenals remove physiological uptake.
ORGANS: dict[int, str] = {
    1: "liver",
    2: "spleen",
    3: "kidney_right",
    4: "kidney_left",
    5: "urinary_bladder",
    6: "pancreas",
    7: "adrenal_gland_right",
    8: "adrenal_gland_left",
}
ORGAN_CODE: dict[str, int] = {name: code for code, name in ORGANS.items()}
# Organs whose normal SSTR uptake is at or above the liver's (kidneys also excrete into the bladder).
PHYSIOLOGICAL_UPTAKE: tuple[str, ...] = (
    "spleen", "kidney_right", "kidney_left", "urinary_bladder", "pancreas",
    "adrenal_gland_right", "adrenal_gland_left",
)


@dataclass
class OrganMasks:
    """Organ label map on a CT grid.

    Attributes:
        labels: uint8 ``(I, J, K)`` with codes of :data:`ORGANS` (0 = no organ), on the grid
            ``affine`` (the CT's).
        affine: ``(4, 4)`` voxel index → world mm, RAS+.
        source: where the masks came from, shown to the user, e.g.
            ``"TotalSegmentator folder segs/"`` or ``"organ network organ_seg 1.0 (simulated training)"``.
        present: names of the organs the source delineated (a provided file may lack some).
    """

    labels: np.ndarray
    affine: np.ndarray
    source: str
    present: tuple[str, ...]

    @property
    def from_network(self) -> bool:
        """True when the organ network delineated these organs (no masks were given)."""
        return self.source.startswith("organ network")

    def mask(self, name: str) -> np.ndarray:
        """Boolean ``(I, J, K)`` mask of one organ of :data:`ORGANS`."""
        return self.labels == ORGAN_CODE[name]

    def volume_ml(self, name: str) -> float:
        """Volume of one organ (mL)."""
        spacing = np.sqrt((np.asarray(self.affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
        return float(self.mask(name).sum() * np.prod(spacing) / 1000.0)
