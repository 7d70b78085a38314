"""Frozen configuration objects saved as JSON inside every model bundle.

Training and inference read the same object from the bundle, so preprocessing
cannot drift between them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-able dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from :func:`to_dict` output; unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


def digest(config: Any) -> str:
    """Short stable hash of a config (used in cache keys)."""
    text = json.dumps(to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PreprocessConfig:
    """How a PET/CT pair becomes fixed-size network input.

    The model grid is in ``orientation`` (RAS) with voxel size ``spacing_mm``
    (mm, per axis) and ``shape`` voxels (x, y, z), centred on the body found in
    the CT (HU > ``body_threshold_hu``). CT (HU) is clipped to ``ct_window_hu``
    and scaled to [0, 1]; PET (SUVbw) is clipped to [0, ``pet_suv_max``] and
    scaled to [0, 1].
    """

    orientation: str = "RAS"
    spacing_mm: tuple[float, float, float] = (6.0, 6.0, 6.0)
    shape: tuple[int, int, int] = (64, 48, 64)
    ct_window_hu: tuple[float, float] = (-200.0, 400.0)
    pet_suv_max: float = 20.0
    body_threshold_hu: float = -500.0
    # Added for pfs_core.preprocess (see docs/input.md):
    body_threshold_suv: float = 0.3  # body = PET > this SUV when no CT is given
    antialias: bool = True  # Gaussian pre-smoothing (sigma = (factor - 1) / 2 voxels) before downsampling
    # The PET is already band-limited by the scanner (~6 mm FWHM); smoothing it again before a 12-mm grid
    # halves small-lesion contrast (docs/models.md), so the shipped grid turns it off for the PET only.
    pet_antialias: bool = True
    version: int = 1

    @property
    def voxel_ml(self) -> float:
        """Volume of one model voxel (mL)."""
        return float(self.spacing_mm[0] * self.spacing_mm[1] * self.spacing_mm[2]) / 1000.0

    def __post_init__(self) -> None:
        if any(s <= 0 for s in self.spacing_mm) or any(n < 8 for n in self.shape):
            raise ValueError("spacing_mm must be positive and shape at least 8 voxels per axis")
        if self.ct_window_hu[0] >= self.ct_window_hu[1] or self.pet_suv_max <= 0:
            raise ValueError("ct_window_hu must be increasing and pet_suv_max positive")
        code = self.orientation.upper()
        if len(code) != 3 or any(sum(c in pair for c in code) != 1 for pair in ("LR", "AP", "IS")):
            raise ValueError(f"orientation must be an axis code such as 'RAS' or 'LPS', not {self.orientation!r}")
        if self.body_threshold_suv < 0:
            raise ValueError("body_threshold_suv must be >= 0")
