"""Repeated stratified cross-validation: the study's model comparison.

Splits: scikit-learn ``RepeatedStratifiedKFold`` with a fixed seed over *all*
patients, stratified by short PFS / long PFS / censored at or before 12 months,
so every patient gets one out-of-fold (OOF) prediction per repeat and all models
see the same splits. Censored-early patients never enter binary training (no
label) but are scored and count in the C-index. Metrics per repeat are computed
on that repeat's pooled OOF predictions; the summary is mean ± sd over repeats.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.model_selection import RepeatedStratifiedKFold
from tqdm.auto import tqdm

from pfs_core.config import TrainConfig
from pfs_core.dataset import CohortData
from pfs_core.errors import UsageError
from pfs_core.metrics import ALL_METRICS, all_metrics, mean_sd
from pfs_core.models.fitted import FittedModel
from pfs_core.models.registry import ModelSpec
from pfs_core.progress import emit
from pfs_core.training.fit import fit_model

if TYPE_CHECKING:
    import torch


OOF_COLUMNS: tuple[str, ...] = ("patient_id", "repeat", "fold", "model", "probability")


@dataclass(frozen=True)
class Split:
    """One train/test split: row indices into the cohort."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray

    @property
    def seed_offset(self) -> int:
        """Offset added to the run seed for models fitted on this split (same for every model)."""
        return 1000 * self.repeat + self.fold


def strata(data: CohortData) -> np.ndarray:
    """(N,) int: 1 short PFS, 0 long PFS, 2 censored at or before 12 months (no binary label)."""
    label = data.label
    return np.where(np.isnan(label), 2, np.nan_to_num(label)).astype(int)


def make_splits(data: CohortData, *, folds: int, repeats: int, seed: int) -> list[Split]:
    """Repeated stratified k-fold splits over all patients (fixed ``seed``)."""

    y = strata(data)
    counts = np.bincount(y, minlength=3)
    if folds < 2 or repeats < 1:
        raise UsageError("--folds must be >= 2 and --repeats >= 1")
    if min(counts[0], counts[1]) < folds:
        raise UsageError(f"{folds} folds need at least {folds} short-PFS and {folds} long-PFS patients "
                         f"(cohort has {counts[1]} short, {counts[0]} long); use fewer folds or more patients")
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    with warnings.catch_warnings():  # fewer censored-early patients than folds is fine
        warnings.filterwarnings("ignore", message="The least populated class")
        pairs = list(splitter.split(np.zeros(len(y)), y))
    return [Split(i // folds, i % folds, train, test) for i, (train, test) in enumerate(pairs)]


@dataclass
class CrossValidation:
    """OOF predictions (columns :data:`OOF_COLUMNS`) and, when kept, the fitted fold models.

    ``epochs``: per model, the epoch each split's network kept (:attr:`FittedModel.best_epoch`),
    keyed by (repeat, fold); None for a scikit-learn model.
    """

    oof: pd.DataFrame
    models: dict[str, list[FittedModel]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    epochs: dict[str, dict[tuple[int, int], int | None]] = field(default_factory=dict)

    def best_epoch(self, model: str) -> list[list[int | None]] | None:
        """[[kept epoch per fold] per repeat] of ``model``; None for a model without epochs."""
        kept = self.epochs.get(model, {})
        if all(epoch is None for epoch in kept.values()):
            return None
        repeats = sorted({repeat for repeat, _ in kept})
        return [[kept[(repeat, fold)] for fold in sorted(f for r, f in kept if r == repeat)] for repeat in repeats]


def cross_validate(
    data: CohortData,
    specs: Sequence[ModelSpec],
    splits: Sequence[Split],
    *,
    config: TrainConfig,
    seed: int,
    device: torch.device | None = None,
    progress: bool = False,
    cache_dir: Path | None = None,
    keep_models: bool = False,
) -> CrossValidation:
    """Fit every model on every split's training rows and predict its test rows.

    ``progress``: a tqdm bar on stderr. Independently, one :func:`pfs_core.progress.emit` line per
    model and split (stage "cross-validation") goes to the progress file when one is open.
    """

    rows: list[pd.DataFrame] = []
    result = CrossValidation(oof=pd.DataFrame(columns=list(OOF_COLUMNS)))
    total, done = len(splits) * len(specs), 0
    bar = tqdm(total=total, desc="cross-validation", disable=not progress)
    for split in splits:
        train, test = data.subset(split.train), data.subset(split.test)
        for spec in specs:
            bar.set_postfix(repeat=split.repeat, fold=split.fold, model=spec.name)
            emit("cross-validation", done, total, model=spec.name, repeat=split.repeat, fold=split.fold)
            started = time.perf_counter()
            model = fit_model(spec, train, config=config, seed=seed + split.seed_offset, device=device,
                              progress=progress, cache_dir=cache_dir)
            prob = model.predict_proba(test, device=device)
            result.seconds[spec.name] = result.seconds.get(spec.name, 0.0) + time.perf_counter() - started
            result.epochs.setdefault(spec.name, {})[(split.repeat, split.fold)] = model.best_epoch
            rows.append(pd.DataFrame({"patient_id": test.patient_ids, "repeat": split.repeat, "fold": split.fold,
                                      "model": spec.name, "probability": prob}))
            if keep_models:
                result.models.setdefault(spec.name, []).append(model)
            bar.update(1)
            done += 1
    bar.close()
    emit("cross-validation", done, total)
    result.oof = pd.concat(rows, ignore_index=True) if rows else result.oof
    return result


def repeat_metrics(data: CohortData, oof: pd.DataFrame) -> pd.DataFrame:
    """Metrics per (model, repeat) on that repeat's pooled OOF predictions (one row each)."""
    position = {pid: i for i, pid in enumerate(data.patient_ids)}
    records = []
    for (model, repeat), group in oof.groupby(["model", "repeat"], sort=False):
        idx = group["patient_id"].map(position).to_numpy(dtype=int)
        metrics = all_metrics(data.time_months[idx], data.event[idx], group["probability"].to_numpy(float))
        records.append({"model": model, "repeat": int(repeat), **metrics})
    return pd.DataFrame.from_records(records)


def summarise(per_repeat: pd.DataFrame, model_order: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{model: {metric: {"mean", "sd", "per_repeat"}}} over repeats."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in model_order:
        rows = per_repeat[per_repeat["model"] == name].sort_values("repeat")
        out[name] = {m: {**mean_sd(rows[m].to_list()), "per_repeat": [float(v) for v in rows[m]]}
                     for m in ALL_METRICS}
    return out


def mean_oof(oof: pd.DataFrame, model: str) -> pd.Series:
    """Per-patient OOF probability of ``model`` averaged over repeats (index patient_id)."""
    return oof[oof["model"] == model].groupby("patient_id", sort=False)["probability"].mean()


def training_oof_table(data: CohortData, oof: pd.DataFrame, *, threshold: float) -> pd.DataFrame:
    """Per training patient: fold, OOF probability, outcome, label and risk group (stored in a bundle)."""
    table = pd.DataFrame({"patient_id": oof["patient_id"].to_numpy(), "fold": oof["fold"].to_numpy(),
                          "oof_probability": oof["probability"].to_numpy(float)})
    position = {pid: i for i, pid in enumerate(data.patient_ids)}
    idx = table["patient_id"].map(position).to_numpy(int)
    table["pfs_months"] = data.time_months[idx]
    table["progressed"] = data.event[idx]
    table["short_pfs"] = data.label[idx]
    table["risk_group"] = np.where(table["oof_probability"] >= threshold, "high", "low")
    return table.sort_values("patient_id").reset_index(drop=True)
