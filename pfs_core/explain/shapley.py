"""SHAP values of the lab and clinical inputs and exact Shapley values over modalities.

Lab SHAP (one patient, the shap library): :class:`shap.KernelExplainer` (Kernel SHAP)
on the raw lab fields with the patient's own images held fixed (torch models reuse the
image embeddings, so only the lab branch and the fusion head run per evaluation) and a
background of the training cohort (the bundle's ``background_labs.csv``: k-means
centroids, no individual patient). Output space: probability (the ensemble mean shown to
the user). The random forest of ``lab_rf`` too: shap's interventional Tree SHAP, the
exact method for a game with held fields, broke the sum rule there by up to 0.003 (its
copy of the trees routes a value lying on a split threshold, as a median-imputed one
can, differently from scikit-learn); Kernel SHAP costs ~2 s more on it. Kernel SHAP
rather than ``PermutationExplainer``: the latter compiles numba kernels on first use
(~10-15 s of CPU in every new process, i.e. on a clinician's first Predict); Kernel SHAP
needs none, its constrained regression keeps the values exactly additive, and on the
sample cases its values agree with the permutation ones to about 0.01. Coalitions are
sampled with a fixed seed.

``base_value + sum(shap_values) == model output`` exactly (tested to 1e-4).

Imputed labs (not measured for this patient) are no players: the game is played over the
measured fields only, with the imputed ones held missing, i.e. at the model's imputation
(the training median), in the background rows and in the case alike. They get no
attribution of their own (0, flagged ``imputed``); what the imputation adds is in
``base_value``. (Kernel SHAP had credited a never-measured ALT with -0.17.)

Modality contributions: exact Shapley values of the players {labs, PET, CT}
present in the model, with the value of a coalition = the ensemble probability
when the other modalities are "absent": PET/CT replaced by the learned "missing"
input (the mechanism the fusion model uses for a missing scan), labs replaced by
all-missing labs, i.e. the training medians (the imputation the model uses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import shap
import torch
from sklearn.cluster import KMeans

from pfs_core import schema
from pfs_core.dataset import CohortData
from pfs_core.inference import ensemble_probabilities
from pfs_core.io.labs import is_missing
from pfs_core.models.device import resolve_device
from pfs_core.models.fitted import FittedModel, image_features, torch_inputs

if TYPE_CHECKING:
    from pfs_core.models.bundle import Bundle


OUTPUT_SPACE = "probability"


@dataclass
class LabShap:
    """SHAP values of one patient's raw lab/clinical fields (model units of :mod:`pfs_core.schema`)."""

    names: list[str]
    values: list[float | str | None]
    units: list[str]
    shap_values: list[float]
    base_value: float
    output: float
    imputed: list[bool]
    method: str
    output_space: str = OUTPUT_SPACE

    def to_dict(self) -> dict[str, Any]:
        rows = [
            {"name": n, "value": v, "unit": u, "shap": s, "imputed": i}
            for n, v, u, s, i in zip(self.names, self.values, self.units, self.shap_values, self.imputed, strict=True)
        ]
        return {"method": self.method, "output_space": self.output_space, "base_value": self.base_value,
                "output": self.output, "features": rows}


@dataclass
class ModalityShapley:
    """Exact Shapley values of the modalities for one prediction (probability space)."""

    contributions: dict[str, float]
    empty_value: float
    full_value: float
    coalition_values: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"output_space": OUTPUT_SPACE, "contributions": self.contributions,
                "value_all_absent": self.empty_value, "value_all_present": self.full_value,
                "coalitions": self.coalition_values}


# ----------------------------------------------------------------------------- exact Shapley over few players


def exact_shapley(players: Sequence[str], value: Callable[[frozenset[str]], float]) -> dict[str, float]:
    """Exact Shapley values of a cooperative game with a handful of players.

    ``value`` maps a coalition to its payoff; it is called once per coalition
    (2^n calls), so keep n small (here at most 3 modalities).
    """
    n = len(players)
    cache = {frozenset(c): value(frozenset(c)) for k in range(n + 1) for c in combinations(players, k)}
    result = {}
    for p in players:
        others = [q for q in players if q != p]
        total = 0.0
        for k in range(n):
            weight = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
            for c in combinations(others, k):
                total += weight * (cache[frozenset(c) | {p}] - cache[frozenset(c)])
        result[p] = total
    return result


def modality_shapley(bundle: Bundle, data: CohortData, *, device: Any = None) -> ModalityShapley:
    """Shapley values over the modalities of ``bundle.spec`` for the one-row ``data``."""

    players = list(bundle.spec.modalities)
    coalitions = [frozenset(c) for k in range(len(players) + 1) for c in combinations(players, k)]
    batch = _coalition_batch(data, coalitions)
    probs = ensemble_probabilities(bundle, batch, device=device).mean(axis=1)
    values = dict(zip(coalitions, probs.tolist(), strict=True))
    contributions = exact_shapley(players, lambda c: values[c])
    return ModalityShapley(
        contributions=contributions, empty_value=values[frozenset()], full_value=values[frozenset(players)],
        coalition_values={"+".join(sorted(c)) or "none": v for c, v in values.items()},
    )


def _coalition_batch(data: CohortData, coalitions: Sequence[frozenset[str]]) -> CohortData:
    """One row per coalition: modalities outside it made absent (labs → all missing, images → not present)."""
    idx = np.zeros(len(coalitions), dtype=int)
    batch = data.subset(idx)
    for row, coalition in enumerate(coalitions):
        if "lab" not in coalition:
            batch.labs.iloc[row] = None
        for name in ("pet", "ct"):
            present = getattr(batch, f"{name}_present")
            if present is not None and name not in coalition:
                present[row] = False
    if batch.pet_present is not None and batch.pet_suv_max_original is not None:
        batch.pet_suv_max_original = np.where(batch.pet_present, batch.pet_suv_max_original, np.nan)
    return batch


# ----------------------------------------------------------------------------- lab SHAP


def lab_columns(bundle: Bundle) -> list[str]:
    """Raw lab fields the bundle's models read (numeric then categorical)."""
    tabular = bundle.members[0].tabular
    return [*tabular.numeric_columns, *tabular.categorical] if tabular is not None else []


def lab_shap(bundle: Bundle, data: CohortData, *, background: pd.DataFrame, device: Any = None,
             n_samples: int = 2048, seed: int = 0) -> LabShap | None:
    """SHAP values of the measured lab fields for the one-row ``data`` (None when the model reads no labs).

    Imputed fields get 0 and ``imputed=True``; their effect is part of ``base_value`` (module docstring).
    """
    columns = lab_columns(bundle)
    if not columns:
        return None
    row = data.labs.iloc[0]
    values = [None if is_missing(row.get(c)) else _plain(row.get(c)) for c in columns]
    imputed = [v is None for v in values]
    held = background.reindex(columns=list(columns))  # its imputed columns are replaced by the case's (missing)
    shap_values, base, output = _kernel_shap(bundle, data, columns, imputed, background=held, device=device,
                                             n_samples=n_samples, seed=seed)
    method = (f"shap.KernelExplainer, images held fixed, background = {len(held)} "
              "k-means centroids of the training labs")
    if any(imputed):
        method += "; imputed labs held at the training median (in the base value), no attribution of their own"
    units = [schema.NUMERIC_BY_NAME[c].unit if c in schema.NUMERIC_BY_NAME else "" for c in columns]
    return LabShap(names=columns, values=values, units=units, shap_values=[float(v) for v in shap_values],
                   base_value=float(base), output=float(output), imputed=imputed, method=method)


def _kernel_shap(bundle: Bundle, data: CohortData, columns: Sequence[str], imputed: Sequence[bool], *,
                 background: pd.DataFrame, device: Any, n_samples: int, seed: int) -> tuple[np.ndarray, float, float]:
    """Kernel SHAP over the measured fields; the imputed ones stay as in the case (missing) in every row."""
    predict_labs = lab_value_function(bundle, data, device=device)
    case = encode_labs(data.labs.iloc[[0]], columns)
    output = float(predict_labs(decode_labs(case, columns))[0])
    measured = np.flatnonzero(~np.asarray(imputed, dtype=bool))
    values = np.zeros(len(columns))
    if measured.size == 0:  # nothing measured: nothing to attribute, the base is the output
        return values, output, output

    def model(matrix: np.ndarray) -> np.ndarray:
        full = np.repeat(case, len(matrix), axis=0)
        full[:, measured] = matrix
        return predict_labs(decode_labs(full, columns))

    explainer = shap.KernelExplainer(model, encode_labs(background, columns)[:, measured])
    # KernelExplainer samples coalitions from numpy's global generator: seed it for reproducible
    # values and put the caller's state back.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        # l1_reg=False: shap's default keeps at most 10 features by LARS and, where it keeps none, returns
        # zeros, breaking additivity (base + sum = output) for the 15 lab fields.
        found = np.asarray(explainer.shap_values(case[:, measured], nsamples=n_samples + 2 * measured.size,
                                                 l1_reg=False, silent=True))
    finally:
        np.random.set_state(state)
    values[measured] = found.reshape(-1)
    return values, float(np.ravel(explainer.expected_value)[0]), output


def lab_value_function(bundle: Bundle, data: CohortData, *, device: Any = None) -> Callable[[pd.DataFrame], np.ndarray]:
    """Ensemble probability as a function of raw lab rows, the case's images held fixed."""
    if bundle.spec.kind == "sklearn":
        return _sklearn_lab_function(bundle.members, data)
    return _torch_lab_function(bundle.members, data, device=device)


def _sklearn_lab_function(members: Sequence[FittedModel], data: CohortData) -> Callable[[pd.DataFrame], np.ndarray]:
    pet_block = image_features(members[0].spec, data, members[0].config)

    def predict(frame: pd.DataFrame) -> np.ndarray:
        probs = []
        for member in members:
            assert member.tabular is not None
            parts = [member.tabular.transform(frame)]
            if pet_block is not None:
                parts.append(np.repeat(pet_block[:1], len(frame), axis=0))
            probs.append(member.estimator.predict_proba(np.hstack(parts))[:, 1])
        return np.mean(probs, axis=0)

    return predict


def _torch_lab_function(members: Sequence[FittedModel], data: CohortData, *,
                        device: Any) -> Callable[[pd.DataFrame], np.ndarray]:
    device = device or resolve_device()
    image_parts = []
    for member in members:
        assert member.net is not None
        net = member.net.to(device).eval()
        with torch.no_grad():
            parts = net.embed(**torch_inputs(member, data, np.array([0]), device))
        image_parts.append({k: parts[k] for k in ("pet", "ct") if k in parts})

    def predict(frame: pd.DataFrame) -> np.ndarray:
        probs = []
        with torch.no_grad():
            for member, images in zip(members, image_parts, strict=True):
                assert member.net is not None and member.tabular is not None and member.net.lab_branch is not None
                lab = torch.from_numpy(member.tabular.transform(frame)).to(device)
                embedded: dict[str, torch.Tensor] = {"lab": member.net.lab_branch(lab),
                                                     **{k: p.expand(len(frame), -1) for k, p in images.items()}}
                logits = member.net.fuse(embedded, lab)[:, 0]
                probs.append(torch.sigmoid(logits).cpu().numpy())
        return np.mean(probs, axis=0).astype(np.float64)

    return predict


# ----------------------------------------------------------------------------- numeric encoding for shap maskers


def encode_labs(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """(N, F) float64: numeric labs as is, categorical as level index, NaN = missing."""
    out = np.full((len(frame), len(columns)), np.nan)
    for j, name in enumerate(columns):
        if name not in frame:
            continue
        if name in schema.CATEGORICAL_BY_NAME:
            levels = schema.CATEGORICAL_BY_NAME[name].levels
            out[:, j] = [levels.index(v) if v in levels else np.nan for v in frame[name]]
        else:
            out[:, j] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def decode_labs(matrix: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """Inverse of :func:`encode_labs`."""
    data: dict[str, Any] = {}
    for j, name in enumerate(columns):
        col = matrix[:, j]
        if name in schema.CATEGORICAL_BY_NAME:
            levels = schema.CATEGORICAL_BY_NAME[name].levels
            data[name] = [None if np.isnan(v) else levels[int(round(v))] for v in col]
        else:
            data[name] = col
    return pd.DataFrame(data)


def summarise_background(labs: pd.DataFrame, columns: Sequence[str], *, k: int = 20, seed: int = 0) -> pd.DataFrame:
    """k-means centroids of the training labs (raw units) as a SHAP background with no individual patient.

    Numeric fields are clustered after median imputation and standardisation;
    centroids are mapped back to raw units; categorical fields take the most
    frequent level of the cluster.
    """

    encoded = encode_labs(labs, columns)
    medians = np.nanmedian(encoded, axis=0)
    filled = np.where(np.isnan(encoded), np.nan_to_num(medians)[None, :], encoded)
    scale = filled.std(axis=0)
    scale[scale == 0] = 1.0
    k = min(k, len(labs))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict((filled - filled.mean(0)) / scale)
    rows = []
    for cluster in range(k):
        members = filled[labels == cluster]
        row = members.mean(axis=0)
        for j, name in enumerate(columns):
            if name in schema.CATEGORICAL_BY_NAME:
                values, counts = np.unique(members[:, j], return_counts=True)
                row[j] = values[np.argmax(counts)]
        rows.append(row)
    return decode_labs(np.asarray(rows), columns)


def _plain(value: Any) -> float | str:
    return value if isinstance(value, str) else float(value)
