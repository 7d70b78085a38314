"""Frozen configuration objects saved as JSON inside every model bundle.

Training and inference read the same object from the bundle, so preprocessing
cannot drift between them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-able dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from :func:`to_dict` output (nested configs too); unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
            kwargs[key] = from_dict(hint, value)
        else:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
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
    # Added for pfs_core.preprocessing.model_grid (see docs/input.md):
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


#: Model grid of the shipped models and the benchmark default: 12-mm voxels, 32×24×32 (384×288×384 mm,
#: the field of view of the 6-mm default), PET clipped at SUV 60 instead of 20 so that tumour-to-liver
#: ratios above ~3 (lesion SUV > 20 with a liver SUV of 5-9) are not flattened. Measured on the simulated
#: cohort: 8× fewer voxels than 64×48×64 lets the CNNs train 40 epochs within the time budget. The PET is
#: not smoothed again before the 12-mm grid: with the true lesion masks, the lesion-to-liver ratio read on the
#: grid keeps a Spearman correlation of 0.83 with the true one instead of 0.59 (docs/models.md).
MODEL_PREPROCESS = PreprocessConfig(spacing_mm=(12.0, 12.0, 12.0), shape=(32, 24, 32), pet_suv_max=60.0,
                                    pet_antialias=False)


@dataclass(frozen=True)
class PretrainConfig:
    """Hyper-parameters of the CT pretraining (patch in voxels of the model grid)."""

    epochs: int = 30
    batch_size: int = 8
    lr: float = 2e-3
    mask_fraction: float = 0.4
    patch: int = 4
    noise_sd: float = 0.05
    visible_weight: float = 0.2


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of all models (stored in every bundle's config.json)."""

    # 0: the networks stay at their logistic start (the wide path on labs and lesion measurements). A CNN
    # residual trained for 40 epochs lowered the paired AUROC on development seeds (docs/models.md).
    epochs: int = 0
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-2
    channels: tuple[int, ...] = (8, 16, 32)
    strides: tuple[int, ...] = (2, 2, 2)
    embed_dim: int = 16
    hidden: int = 32
    dropout: float = 0.3
    modality_dropout: float = 0.2
    # Image branches read the lesion measurements of pfs_core.measure (issue 23); the grid read-outs of
    # pfs_core.features.readouts (pet_quant/ct_quant) were their input before and remain for comparison.
    lesion_features: bool = True
    # which lesion measurement they read ("1.3", or "1.2" / "1.1" to repeat the results made before it:
    # pfs_core.measure.settings.MEASUREMENTS)
    measurement: str = "1.3"
    pet_quant: bool = False
    ct_quant: bool = False
    wide: bool = True
    wide_logistic: bool = True
    wide_search: bool = True
    validation_fraction: float = 0.2
    # A later epoch replaces epoch 0 (the logistic start) only if its held-out loss is this much lower
    # (nats): on ~15 held-out patients the lowest of 40 losses beats epoch 0 by chance (docs/models.md).
    min_improvement: float = 0.05
    # Stop after this many epochs without a kept one (0: train all epochs); later epochs only lost ranking
    # on the simulated cohorts (docs/models.md, benchmarks/epoch_selection.py).
    patience: int = 10
    augment: bool = True
    rotate_rad: float = 0.08
    translate_vox: float = 2.0
    intensity_jitter: float = 0.1
    pretrained_lr_factor: float = 0.3
    aux_weight: float = 0.5
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    rf_trees: int = 300
    rf_min_leaf: int = 3
    logistic_c: float = 0.3
    include_post_baseline: bool = False

    def branch_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`pfs_core.models.nets.ImageBranch` (besides spatial_dims/in_channels)."""
        return {"channels": list(self.channels), "strides": list(self.strides), "embed_dim": self.embed_dim,
                "dropout": self.dropout}
