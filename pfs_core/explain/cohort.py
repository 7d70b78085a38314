"""A bundle explained over a cohort: modality contributions per patient and the fused-feature embedding.

Modality contributions are exact Shapley values over {labs, PET, CT}
(:mod:`pfs_core.explain.shapley`) for a seeded sample of patients; the embedding
projects the fused features of the network (PCA or UMAP) coloured by outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import umap
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from pfs_core import schema
from pfs_core.errors import InputError, UsageError
from pfs_core.explain.shapley import exact_shapley, modality_shapley
from pfs_core.metrics import short_pfs_label
from pfs_core.models.device import resolve_device
from pfs_core.models.fitted import torch_inputs

if TYPE_CHECKING:
    from pfs_core.dataset import CohortData
    from pfs_core.models.bundle import Bundle


OUTCOME_LABELS: dict[float, str] = {1.0: "short PFS (≤ 12 months)", 0.0: "long PFS (> 12 months)"}


NO_LABEL = "censored ≤ 12 months (no label)"


#: Extra columns of ``modality_contributions(..., with_values=True)``: prediction with all / no modalities.
VALUE_COLUMNS: tuple[str, str] = ("probability", "reference_probability")


def sample_rows(n_total: int, n_sample: int, *, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random sample of at most ``n_sample`` of ``n_total`` rows."""
    rng = np.random.default_rng(seed)
    if n_sample >= n_total:
        return np.arange(n_total)
    return np.sort(rng.choice(n_total, size=n_sample, replace=False))


def modality_contributions(bundle: Bundle, data: CohortData, *, n_sample: int = 30, seed: int = 0,
                           device: Any = None, with_values: bool = False) -> pd.DataFrame:
    """Exact modality Shapley values (probability space) of a seeded sample of patients.

    One row per sampled patient: ``patient_id`` and one column per modality of the
    model ("lab", "pet", "ct"); the cohort-level importance is the mean of the
    absolute values per column (:func:`mean_abs_contributions`). The game is that of
    :func:`pfs_core.explain.shapley.modality_shapley` (absent PET/CT = the learned
    "missing" embedding, absent labs = all labs missing, i.e. imputed). Fusion
    networks: each fold model embeds every patient's inputs once and only the
    fusion head is evaluated per coalition (same numbers, about 2^m times fewer
    image passes); scikit-learn models: :func:`modality_shapley` per patient.
    With ``with_values`` two more columns (:data:`VALUE_COLUMNS`): ``probability`` (every
    modality present: the model's prediction) and ``reference_probability`` (every
    modality absent); per row the contributions sum to their difference.
    """

    torch_device = resolve_device(device)
    rows = sample_rows(len(data), n_sample, seed=seed)
    players = list(bundle.spec.modalities)
    if bundle.members[0].net is None:
        games = [modality_shapley(bundle, data.subset([i]), device=torch_device) for i in rows]
        values = [game.contributions for game in games]
        full, empty = [g.full_value for g in games], [g.empty_value for g in games]
    else:
        coalition_probs = _coalition_probabilities(bundle, data.subset(rows), torch_device)
        values = [exact_shapley(players, _patient_value(coalition_probs, j)) for j in range(len(rows))]
        full, empty = list(coalition_probs[frozenset(players)]), list(coalition_probs[frozenset()])
    table = pd.DataFrame(values, columns=players)
    table.insert(0, schema.ID_COLUMN, [str(data.patient_ids[i]) for i in rows])
    if with_values:
        table[VALUE_COLUMNS[0]], table[VALUE_COLUMNS[1]] = np.asarray(full, float), np.asarray(empty, float)
    return table


def _patient_value(coalition_probs: dict[frozenset[str], np.ndarray], j: int) -> Callable[[frozenset[str]], float]:
    """The value function of patient ``j``: coalition → ensemble probability."""
    return lambda coalition: float(coalition_probs[coalition][j])


def _coalition_probabilities(bundle: Bundle, data: CohortData, device: Any,
                             batch_size: int = 16) -> dict[frozenset[str], np.ndarray]:
    """Ensemble probability (N,) of every coalition of modalities, from one embedding pass per fold model."""



    players = list(bundle.spec.modalities)
    coalitions = [frozenset(c) for k in range(len(players) + 1) for c in combinations(players, k)]
    totals = {c: np.zeros(len(data)) for c in coalitions}
    absent_labs = pd.DataFrame([dict.fromkeys(data.labs.columns)], columns=data.labs.columns)
    for member in bundle.members:
        net = member.net.to(device).eval()  # type: ignore[union-attr]
        with torch.no_grad():
            absent: dict[str, Any] = {m: getattr(net, f"missing_{m}")[None, :] for m in ("pet", "ct") if m in players}
            absent_lab = None
            if "lab" in players:
                absent_lab = torch.from_numpy(member.tabular.transform(absent_labs)).to(device)  # type: ignore[union-attr]
                absent["lab"] = net.lab_branch(absent_lab)  # type: ignore[misc]
            for start in range(0, len(data), batch_size):
                idx = np.arange(start, min(start + batch_size, len(data)))
                inputs = torch_inputs(member, data, idx, device)
                present = net.embed(**inputs)
                for c in coalitions:
                    parts = {m: present[m] if m in c else absent[m].expand(len(idx), -1) for m in players}
                    lab = inputs["lab"] if "lab" in c else (
                        absent_lab.expand(len(idx), -1) if absent_lab is not None else None)
                    logits = net.fuse(parts, lab)[:, 0]
                    totals[c][idx] += torch.sigmoid(logits).cpu().numpy()
    return {c: total / len(bundle.members) for c, total in totals.items()}


def mean_abs_contributions(contributions: pd.DataFrame) -> dict[str, float]:
    """Mean |Shapley value| per modality column (probability points)."""
    skip = {schema.ID_COLUMN, *VALUE_COLUMNS}
    return {c: float(contributions[c].abs().mean()) for c in contributions.columns if c not in skip}


@dataclass
class Embedding:
    """2D map of the fused features: ``points`` (N, 2), ``labels`` (N,) outcome text, ``method``."""

    patient_ids: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    method: str
    n_features: int


def fused_features(bundle: Bundle, data: CohortData, *, device: Any = None, batch_size: int = 16) -> np.ndarray:
    """(N, K * m * embed_dim) concatenated branch embeddings (:meth:`FusionNet.embed`) of all K fold models."""


    if bundle.members[0].net is None:
        raise UsageError(f"model {bundle.name} is not a fusion network and has no fused features; "
                         "choose a bundle of a CNN or fusion model")
    torch_device = resolve_device(device)
    per_member = []
    for member in bundle.members:
        net = member.net.to(torch_device).eval()  # type: ignore[union-attr]
        chunks = []
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                idx = np.arange(start, min(start + batch_size, len(data)))
                parts = net.embed(**torch_inputs(member, data, idx, torch_device))
                chunks.append(torch.cat([parts[k] for k in ("lab", "pet", "ct") if k in parts], dim=1).cpu().numpy())
        per_member.append(np.concatenate(chunks))
    return np.concatenate(per_member, axis=1)


def outcome_labels(data: CohortData) -> np.ndarray:
    """(N,) text: short / long PFS, or no label (censored at or before 12 months, or outcome unknown)."""
    label = short_pfs_label(data.time_months, data.event)
    return np.array([OUTCOME_LABELS.get(float(v), NO_LABEL) for v in label])


def fused_embedding(bundle: Bundle, data: CohortData, *, method: str = "pca", seed: int = 0,
                    device: Any = None) -> Embedding:
    """2D PCA (default) or UMAP of the standardised fused features of every patient in ``data``."""

    if len(data) < 3:
        raise InputError("the embedding needs at least 3 patients")
    features = StandardScaler().fit_transform(fused_features(bundle, data, device=device))
    points = _project(features, method=method, seed=seed)
    return Embedding(patient_ids=np.asarray(data.patient_ids), points=points, labels=outcome_labels(data),
                     method=method, n_features=features.shape[1])


def _project(features: np.ndarray, *, method: str, seed: int) -> np.ndarray:
    if method == "pca":

        return PCA(n_components=2, random_state=seed).fit_transform(features)
    if method == "umap":

        neighbours = max(2, min(15, len(features) - 1))
        return umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed).fit_transform(features)
    raise UsageError(f"unknown embedding method {method!r}; use 'pca' or 'umap'")
