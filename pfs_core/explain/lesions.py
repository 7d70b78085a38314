"""Lesion-level explanation: SHAP values of the lesion measurements, handed on to the lesions that produced them.

1. SHAP values (``shap.KernelExplainer``, output space: probability, the ensemble mean shown to the
   user) of the model-scale lesion measurements of :data:`pfs_core.features.lesions.LESION_FEATURES`,
   the case's labs and image trunks held fixed; background = the training rows' mean of each
   measurement (the standardisation buffers of the networks' branches, or the imputation medians of
   ``classic``). With 8 players, 2^8 coalitions: the values are exact.
2. Each lesion's contribution = sum over the measurements of (SHAP value × the lesion's share of that
   measurement, :func:`pfs_core.features.lesions.lesion_shares`). A measurement no lesion makes up
   (e.g. no SSTR-negative lesion: its volume is 0, below the cohort mean, and lowers the risk) is
   reported as ``unattributed``: it is the absence of disease, not a place in the body.

So lesion contributions + unattributed = sum of the measurement SHAP values = the model output minus
its value at the background measurements, with the labs and the image trunks as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
import pandas as pd
import shap
import torch

from pfs_core.dataset import CohortData
from pfs_core.features.lesions import (
    FEATURE_BLOCKS,
    FEATURE_LABELS,
    FEATURE_UNITS,
    LESION_FEATURES,
    from_model_scale,
    lesion_shares,
)
from pfs_core.inference import reads_lesions
from pfs_core.measure.case import Measurement
from pfs_core.models.device import resolve_device
from pfs_core.models.fitted import FittedModel, sklearn_features, torch_inputs

if TYPE_CHECKING:
    from pfs_core.models.bundle import Bundle

METHOD = ("shap.KernelExplainer over the lesion measurements (exact: all coalitions), labs and image trunks held "
          "fixed, background = training means; each measurement's SHAP value shared among the lesions that "
          "make it up")


@dataclass
class LesionContributions:
    """SHAP values of the measurements and each lesion's contribution (probability units)."""

    features: pd.DataFrame  # name, label, value (model scale), measured (own units), unit, shap
    lesions: pd.DataFrame  # lesion_id, contribution (+ the measurement table's columns when given)
    base_value: float
    output: float
    unattributed: float
    method: str = METHOD

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "output_space": "probability", "base_value": self.base_value,
                "output": self.output, "unattributed": self.unattributed,
                "features": self.features.to_dict("records"),
                "lesions": self.lesions[["lesion_id", "contribution"]].to_dict("records")}

    def top_lesion(self) -> int | None:
        """Id of the lesion that raises the risk most (None when none raises it)."""
        if self.lesions.empty or float(self.lesions["contribution"].max()) <= 0:
            return None
        return int(self.lesions.loc[self.lesions["contribution"].idxmax(), "lesion_id"])


def lesion_contributions(bundle: Bundle, data: CohortData, lesions: pd.DataFrame, *,
                         device: Any = None) -> LesionContributions | None:
    """Explain the one-row ``data`` (with ``lesion_features``) down to the rows of its lesion table ``lesions``.

    None when the model reads no lesion measurements or the case has none (no PET or no CT).
    """
    if not reads_lesions(bundle) or data.lesion_features is None:
        return None
    x = np.asarray(data.lesion_features, dtype=np.float64)[:1]
    if not np.isfinite(x).all():
        return None
    value = _value_function(bundle, data, device=device)
    background = _background(bundle)
    explainer = shap.KernelExplainer(value, background[None])
    state = np.random.get_state()
    np.random.seed(0)
    try:
        phi = np.asarray(explainer.shap_values(x, nsamples=2 ** len(LESION_FEATURES) + 2, l1_reg=False,
                                               silent=True)).reshape(-1)
    finally:
        np.random.set_state(state)
    shares = lesion_shares(lesions) if len(lesions) else pd.DataFrame(columns=list(LESION_FEATURES), dtype=float)
    attributed = shares.sum(axis=0).reindex(list(LESION_FEATURES)).to_numpy(float) > 0
    per_lesion = shares.to_numpy(float) @ phi if len(shares) else np.zeros(0)
    table = lesions.copy()
    table["contribution"] = per_lesion
    features = pd.DataFrame({"name": list(LESION_FEATURES), "label": [FEATURE_LABELS[n] for n in LESION_FEATURES],
                             "value": x[0], "measured": from_model_scale(x[0]),
                             "unit": [FEATURE_UNITS[n] for n in LESION_FEATURES], "shap": phi})
    return LesionContributions(features=features, lesions=table, base_value=float(np.ravel(explainer.expected_value)[0]),
                               output=float(value(x)[0]), unattributed=float(phi[~attributed].sum()))


def _background(bundle: Bundle) -> np.ndarray:
    """(F,) training mean of each model-scale measurement (median for ``classic``), over the members."""
    rows = []
    for member in bundle.members:
        row = np.zeros(len(LESION_FEATURES))
        if member.net is not None:
            for modality, names in FEATURE_BLOCKS.items():
                branch = getattr(member.net, f"{modality}_branch", None)
                if branch is not None and branch.n_given:
                    row[[LESION_FEATURES.index(n) for n in names]] = branch.readout_mean.cpu().numpy()
        else:
            medians = member.estimator.named_steps["impute"].statistics_
            names = FEATURE_BLOCKS["pet"]
            row[[LESION_FEATURES.index(n) for n in names]] = medians[-len(names):]
        rows.append(row)
    return np.mean(rows, axis=0)


def _value_function(bundle: Bundle, data: CohortData, *, device: Any) -> Any:
    """Ensemble probability as a function of (k, F) model-scale measurement rows, all else of ``data`` fixed."""
    if bundle.spec.kind == "sklearn":
        return lambda matrix: np.mean([_sklearn_probs(m, data, matrix) for m in bundle.members], axis=0)
    device = device or resolve_device()
    fixed = [_embedded(member, data, device) for member in bundle.members]

    def value(matrix: np.ndarray) -> np.ndarray:
        given = torch.as_tensor(np.asarray(matrix), dtype=torch.float32, device=device)
        probs = []
        with torch.no_grad():
            for member, (parts, lab) in zip(bundle.members, fixed, strict=True):
                assert member.net is not None
                swapped = {k: v.expand(len(given), -1).clone() for k, v in parts.items()}
                for modality, names in FEATURE_BLOCKS.items():
                    branch = getattr(member.net, f"{modality}_branch", None)
                    if branch is None or not branch.n_given or modality not in swapped:
                        continue
                    block = given[:, [LESION_FEATURES.index(n) for n in names]]
                    swapped[modality][:, -branch.n_given:] = branch.standardise(block)
                logits = member.net.fuse(swapped, None if lab is None else lab.expand(len(given), -1))[:, 0]
                probs.append(torch.sigmoid(logits).cpu().numpy())
        return np.mean(probs, axis=0).astype(np.float64)

    return value


def _embedded(member: FittedModel, data: CohortData,
              device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    assert member.net is not None
    net = member.net.to(device).eval()
    inputs = torch_inputs(member, data, np.array([0]), device)
    with torch.no_grad():
        parts = net.embed(**inputs)
    return parts, inputs["lab"]


def _sklearn_probs(member: FittedModel, data: CohortData, matrix: np.ndarray) -> np.ndarray:
    base = sklearn_features(member.spec, data, member.tabular, member.config)[:1]
    names = FEATURE_BLOCKS["pet"]
    rows = np.repeat(base, len(matrix), axis=0)
    rows[:, -len(names):] = np.asarray(matrix)[:, [LESION_FEATURES.index(n) for n in names]]
    return member.estimator.predict_proba(rows)[:, 1]


def contribution_map(measurement: Measurement, contributions: LesionContributions) -> nib.Nifti1Image:
    """float32 map on the CT grid: each lesion's voxels hold its contribution (probability units), 0 elsewhere."""
    lookup = np.zeros(int(measurement.lesion_labels.max()) + 1, np.float32)
    table = contributions.lesions
    lookup[table["lesion_id"].to_numpy(int)] = table["contribution"].to_numpy(np.float32)
    image = nib.Nifti1Image(lookup[measurement.lesion_labels], measurement.organs.affine)
    image.header["descrip"] = b"pfs_core lesion contributions (probability)"
    return image
