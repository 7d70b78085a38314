"""One fitted model (a CV fold or a bundle member) and how it turns a cohort into probabilities.

Scikit-learn models read the prepared labs (+ PET features for ``classic``); torch
models read labs and PET/CT tensors (:func:`torch_inputs`), batched, in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pfs_core.config import TrainConfig
from pfs_core.dataset import CohortData
from pfs_core.errors import InputError
from pfs_core.features.lesions import FEATURE_BLOCKS, LESION_FEATURES
from pfs_core.features.tabular import TabularParams
from pfs_core.models.device import resolve_device
from pfs_core.models.precision import autocast
from pfs_core.models.registry import SKLEARN, ModelSpec

if TYPE_CHECKING:
    from pfs_core.models.nets import FusionNet


@dataclass
class FittedModel:
    """One trained model (a CV fold, or one member of a bundle ensemble)."""

    spec: ModelSpec
    config: TrainConfig
    tabular: TabularParams | None
    net: FusionNet | None = None
    estimator: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def best_epoch(self) -> int | None:
        """Epoch whose weights the network kept (0 = before training, e.g. its logistic start; see
        :func:`pfs_core.training.loop.train_loop`); None for a scikit-learn model."""
        value = self.info.get("best_epoch")
        return None if value is None else int(value)

    def predict_proba(self, data: CohortData, *, device: torch.device | None = None,
                      batch_size: int = 16) -> np.ndarray:
        """(N,) probability of short PFS for every row of ``data``."""
        if self.spec.kind == SKLEARN:
            return self.estimator.predict_proba(sklearn_features(self.spec, data, self.tabular, self.config))[:, 1]
        return _predict_torch(self, data, device=device or resolve_device(), batch_size=batch_size)


def sklearn_features(spec: ModelSpec, data: CohortData, tabular: TabularParams | None,
                     config: TrainConfig) -> np.ndarray:
    """(N, F) input of the scikit-learn models: prepared labs, then :func:`image_features` for ``classic``."""
    parts = [tabular.transform(data.labs)] if tabular is not None else []
    image = image_features(spec, data, config)
    return np.hstack(parts + ([image] if image is not None else []))


def image_features(spec: ModelSpec, data: CohortData, config: TrainConfig) -> np.ndarray | None:
    """(N, k) image input of ``classic`` (None for other scikit-learn models): the PET lesion measurements,
    or with ``config.lesion_features`` off the log1p grid PET features; NaN = not measured (imputed later)."""
    if not spec.pet_features:
        return None
    if config.lesion_features:
        return lesion_block(data, "pet", spec.name)
    return np.log1p(data.pet_features().to_numpy(dtype=np.float64)).astype(np.float32)


def torch_inputs(model: FittedModel, data: CohortData, idx: np.ndarray,
                  device: torch.device) -> dict[str, torch.Tensor | None]:
    """Network inputs of rows ``idx``: ``lab`` (B, F), ``pet``/``ct`` (B, 1, D, H, W) in [0, 1] and
    ``pet_present``/``ct_present`` (B,) flags; None for an input the model does not use."""
    spec = model.spec
    out: dict[str, torch.Tensor | None] = {"pet": None, "ct": None, "lab": None}
    if spec.use_lab and model.tabular is not None:
        out["lab"] = torch.from_numpy(model.tabular.transform(data.labs.iloc[idx])).to(device)
    for name in ("pet", "ct"):
        if getattr(spec, f"use_{name}"):
            volumes, present = getattr(data, name), getattr(data, f"{name}_present")
            if volumes is None or present is None:
                raise InputError(f"model {spec.name} needs {name.upper()} volumes; the cohort data has none")
            present = present[idx].astype(bool)
            out[name] = torch.from_numpy(np.ascontiguousarray(volumes[idx][:, None])).to(device)
            branch = getattr(model.net, f"{name}_branch", None) if model.net is not None else None
            if branch is not None and branch.n_given:
                given = lesion_block(data, name, spec.name)[idx]
                present = present & np.isfinite(given).all(axis=1)  # not measured: the branch's "missing" input
                out[f"{name}_given"] = torch.from_numpy(np.nan_to_num(given).astype(np.float32)).to(device)
            out[f"{name}_present"] = torch.from_numpy(present).to(device)
    return out


def lesion_block(data: CohortData, modality: str, model_name: str) -> np.ndarray:
    """(N, n) columns of ``data.lesion_features`` that the ``modality`` branch reads (NaN: not measured)."""
    if data.lesion_features is None:
        raise InputError(f"model {model_name} reads lesion measurements; the cohort data has none "
                         "(pfs_core.measure.features.attach_lesion_features)")
    columns = [LESION_FEATURES.index(n) for n in FEATURE_BLOCKS[modality]]
    block = np.asarray(data.lesion_features, dtype=np.float32)[:, columns]
    present = getattr(data, f"{modality}_present")
    if present is not None:  # a modality made absent (explanations) takes its measurements with it
        block = np.where(np.asarray(present, bool)[:, None], block, np.float32(np.nan))
    return block


def _predict_torch(model: FittedModel, data: CohortData, *, device: torch.device, batch_size: int) -> np.ndarray:
    return torch.sigmoid(torch_logits(model, data, device=device, batch_size=batch_size)).cpu().numpy().astype(float)


def torch_logits(model: FittedModel, data: CohortData, *, device: torch.device, batch_size: int,
                 allow_float16: bool = True) -> torch.Tensor:
    """(N,) short-PFS logits (float32) of the network for every row of ``data`` (eval mode, batched).

    On CUDA the conv trunks run under :func:`pfs_core.models.precision.autocast` (bfloat16 where
    the card has it, else float16 unless ``allow_float16`` is False: then float32, as training
    runs there); on CPU nothing changes.
    """

    assert model.net is not None
    net = model.net.to(device).eval()
    with torch.no_grad(), autocast(device, allow_float16=allow_float16):
        logits = [net(**torch_inputs(model, data, np.arange(start, min(start + batch_size, len(data))), device))[:, 0]
                  for start in range(0, len(data), batch_size)]
    return torch.cat(logits).float() if logits else torch.zeros(0, device=device)
