"""Repeated stratified cross-validation: the study's model comparison and bundle training.

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

from pfs_core.errors import UsageError
from pfs_core.metrics import ALL_METRICS, all_metrics, mean_sd
from pfs_core.registry import ModelSpec
from pfs_core.train import CohortData, FittedModel, TrainConfig, fit_model

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
    from sklearn.model_selection import RepeatedStratifiedKFold

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
    """OOF predictions (columns :data:`OOF_COLUMNS`) and, when kept, the fitted fold models."""

    oof: pd.DataFrame
    models: dict[str, list[FittedModel]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


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
    """Fit every model on every split's training rows and predict its test rows."""
    from tqdm.auto import tqdm

    rows: list[pd.DataFrame] = []
    result = CrossValidation(oof=pd.DataFrame(columns=list(OOF_COLUMNS)))
    bar = tqdm(total=len(splits) * len(specs), desc="cross-validation", disable=not progress)
    for split in splits:
        train, test = data.subset(split.train), data.subset(split.test)
        for spec in specs:
            bar.set_postfix(repeat=split.repeat, fold=split.fold, model=spec.name)
            started = time.perf_counter()
            model = fit_model(spec, train, config=config, seed=seed + split.seed_offset, device=device,
                              progress=progress, cache_dir=cache_dir)
            prob = model.predict_proba(test, device=device)
            result.seconds[spec.name] = result.seconds.get(spec.name, 0.0) + time.perf_counter() - started
            rows.append(pd.DataFrame({"patient_id": test.patient_ids, "repeat": split.repeat, "fold": split.fold,
                                      "model": spec.name, "probability": prob}))
            if keep_models:
                result.models.setdefault(spec.name, []).append(model)
            bar.update(1)
    bar.close()
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


# ----------------------------------------------------------------------------- bundles


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


def train_bundle(
    data: CohortData,
    spec: ModelSpec,
    out: Path,
    *,
    folds: int,
    seed: int,
    config: TrainConfig,
    device: torch.device | None = None,
    progress: bool = False,
    cache_dir: Path | None = None,
    provenance: dict[str, Any],
) -> Path:
    """Cross-validate ``spec`` once (``folds`` folds) and save the fold models as a bundle in ``out``.

    ``provenance``: command, source, simulated flag, data note, created, runtime info.
    The risk-group threshold is the median OOF probability of the training cohort.
    """
    from pfs_core import DISCLAIMER
    from pfs_core.benchmark import cohort_summary
    from pfs_core.bundle import feature_manifest, model_card, save_bundle
    from pfs_core.pretrain import describe
    from pfs_core.train import resolve_device, runtime_info

    started = time.perf_counter()
    device = device or resolve_device()
    provenance = {**runtime_info(str(device)), **provenance}
    splits = make_splits(data, folds=folds, repeats=1, seed=seed)
    cv = cross_validate(data, [spec], splits, config=config, seed=seed, device=device, progress=progress,
                        cache_dir=cache_dir, keep_models=True)
    members = cv.models[spec.name]
    prob = cv.oof["probability"].to_numpy(float)
    threshold = float(np.median(prob))
    table = training_oof_table(data, cv.oof, threshold=threshold)
    idx = pd.Series(range(len(data)), index=data.patient_ids)[cv.oof["patient_id"]].to_numpy()
    metrics = all_metrics(data.time_months[idx], data.event[idx], prob)
    weights_digest = _weights_digest(members, prob)
    manifest: dict[str, Any] = {
        "model_name": spec.name, "model_version": f"{provenance['created'][:10]}-{weights_digest[:8]}",
        "created": provenance["created"], "description": spec.description, "label": spec.label,
        "inputs": list(spec.modalities), "disclaimer": DISCLAIMER,
        "target": "probability of progression-free survival <= 12 months (short PFS)",
        "post_baseline_used": config.include_post_baseline,
        "features": feature_manifest(data.labs, include_post_baseline=config.include_post_baseline)
        if spec.use_lab else [],
        "image_inputs": {"pet": spec.use_pet, "ct": spec.use_ct},
        "training_cohort": {**cohort_summary(data), "source": provenance.get("source"),
                            "simulated": provenance.get("simulated"), "note": provenance.get("note")},
        "cv_metrics": {**metrics, "folds": folds, "seed": seed,
                       "note": f"pooled out-of-fold predictions of the {folds} fold models of this bundle "
                               f"(one repeat); binary metrics on labelled patients, C-index on all"},
        "ensemble": {"n_members": len(members),
                     "interval": "min-max of the fold models' probabilities",
                     "risk_threshold": threshold,
                     "risk_threshold_rule": "median OOF probability of the training cohort; >= threshold → high"},
        "gradcam_layers": members[0].net.gradcam_layers() if members[0].net is not None else {},
        "gradcam_readout_layers": members[0].net.readout_layers() if members[0].net is not None else {},
        "pretraining": describe(config.pretrain) if spec.pretrained_ct else None,
        "train_seconds": round(time.perf_counter() - started, 1),
        **{k: provenance[k] for k in ("command", "device", "versions", "machine") if k in provenance},
    }
    return save_bundle(out, members, preprocess=data.preprocess, training_oof=table, risk_threshold=threshold,
                       manifest=manifest, model_card=model_card(manifest), background_labs=_background(members, data))


def _background(members: Sequence[FittedModel], data: CohortData) -> pd.DataFrame | None:
    """k-means centroids of the training labs (raw units) for SHAP, or None for image-only models."""
    tabular = members[0].tabular
    if tabular is None:
        return None
    from pfs_core.explain.shapley import summarise_background

    return summarise_background(data.labs, [*tabular.numeric_columns, *tabular.categorical])


def _weights_digest(members: Sequence[FittedModel], oof_probability: np.ndarray) -> str:
    """Content hash of the fold models and their OOF predictions (part of the model version)."""
    import hashlib

    digest = hashlib.sha256(np.asarray(oof_probability, np.float64).tobytes())
    for member in members:
        if member.net is not None:
            for key, value in member.net.state_dict().items():
                digest.update(key.encode())
                digest.update(value.detach().cpu().numpy().tobytes())
        else:
            digest.update(repr(member.estimator.get_params()).encode())
    return digest.hexdigest()
