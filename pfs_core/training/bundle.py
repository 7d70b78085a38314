"""Training a model bundle: one model per cross-validation fold, saved as a verified bundle.

The folds' out-of-fold predictions become the bundle's ``training_oof.csv`` (its risk
threshold and calibration evidence); the lab background for SHAP and the manifest
(features, training ranges, cohort summary, provenance) are written with it
(:func:`pfs_core.models.bundle.save_bundle`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pfs_core import DISCLAIMER
from pfs_core.config import TrainConfig
from pfs_core.dataset import CohortData
from pfs_core.explain.shapley import summarise_background
from pfs_core.features.lesions import FEATURE_BLOCKS
from pfs_core.measure.case import measurement_record
from pfs_core.metrics import all_metrics
from pfs_core.models.bundle import feature_manifest, model_card, save_bundle
from pfs_core.models.device import resolve_device
from pfs_core.models.fitted import FittedModel
from pfs_core.models.provenance import runtime_info
from pfs_core.models.registry import SKLEARN, ModelSpec
from pfs_core.training.benchmark import cohort_summary
from pfs_core.training.cv import cross_validate, make_splits, training_oof_table
from pfs_core.training.pretrain import describe
from pfs_core.training.references import read_ground_truth
from pfs_core.uncertainty import calibrate_oof, model_inputs

if TYPE_CHECKING:
    import torch


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
    The risk-group threshold is the median OOF probability of the training cohort. When the source cohort's
    folder holds the simulator's ground_truth.csv, the bundle's interval is calibrated against it
    (:func:`pfs_core.uncertainty.calibrate_oof`, manifest key ``uncertainty``); else it is the fold spread.
    """

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
    uncertainty = _calibration(data, table, members, spec, config, provenance.get("source"))
    manifest: dict[str, Any] = {
        "model_name": spec.name, "model_version": f"{provenance['created'][:10]}-{weights_digest[:8]}",
        "created": provenance["created"], "description": spec.description, "label": spec.label,
        "inputs": list(spec.modalities), "disclaimer": DISCLAIMER,
        "target": "probability of progression-free survival <= 12 months (short PFS)",
        "post_baseline_used": config.include_post_baseline,
        "features": feature_manifest(data.labs, include_post_baseline=config.include_post_baseline)
        if spec.use_lab else [],
        "image_inputs": {"pet": spec.use_pet, "ct": spec.use_ct},
        "lesion_measurements": _lesion_inputs(spec, config),
        # the measurement the model was trained on, which prediction repeats (pfs_core.inference.measure_settings)
        "measurement": measurement_record(config.measurement) if _lesion_inputs(spec, config) else None,
        "best_epochs": [m.best_epoch for m in members],
        "training_cohort": {**cohort_summary(data), "source": provenance.get("source"),
                            "simulated": provenance.get("simulated"), "note": provenance.get("note")},
        "cv_metrics": {**metrics, "folds": folds, "seed": seed,
                       "note": f"pooled out-of-fold predictions of the {folds} fold models of this bundle "
                               f"(one repeat); binary metrics on labelled patients, C-index on all"},
        "ensemble": {"n_members": len(members),
                     "interval": uncertainty["description"] if uncertainty else
                     "spread of the fold models (min-max); not a calibrated interval",
                     "risk_threshold": threshold,
                     "risk_threshold_rule": "median OOF probability of the training cohort; >= threshold → high"},
        "gradcam_layers": members[0].net.gradcam_layers() if members[0].net is not None else {},
        "gradcam_readout_layers": members[0].net.readout_layers() if members[0].net is not None else {},
        "pretraining": describe(config.pretrain) if spec.pretrained_ct else None,
        **({"uncertainty": uncertainty} if uncertainty else {}),
        "train_seconds": round(time.perf_counter() - started, 1),
        **{k: provenance[k] for k in ("command", "device", "versions", "machine") if k in provenance},
    }
    return save_bundle(out, members, preprocess=data.preprocess, training_oof=table, risk_threshold=threshold,
                       manifest=manifest, model_card=model_card(manifest), background_labs=_background(members, data))


def _calibration(data: CohortData, table: pd.DataFrame, members: Sequence[FittedModel], spec: ModelSpec,
                 config: TrainConfig, source: str | None) -> dict[str, Any] | None:
    """The interval calibration against the simulator's truth beside ``source`` (None without one)."""
    truth = read_ground_truth(source) if source else None
    if truth is None:
        return None
    names = [n for block in _lesion_inputs(spec, config).values() for n in block]
    inputs = model_inputs(data.labs.reset_index(drop=True), tabular=members[0].tabular if spec.use_lab else None,
                          lesion_features=data.lesion_features if names else None, lesion_names=names)
    inputs.index = pd.Index([str(p) for p in data.patient_ids])
    return calibrate_oof(table, truth, inputs, against=f"the simulator's true probability of PFS <= 12 months "
                                                      f"(ground_truth.csv beside {source})")


def _lesion_inputs(spec: ModelSpec, config: TrainConfig) -> dict[str, list[str]]:
    """Lesion measurements each image branch reads (:mod:`pfs_core.features.lesions`); empty without."""
    if not (config.lesion_features and spec.uses_images):
        return {}
    if spec.kind == SKLEARN:
        return {"pet": list(FEATURE_BLOCKS["pet"])}
    return {m: list(FEATURE_BLOCKS[m]) for m in ("pet", "ct") if getattr(spec, f"use_{m}")}


def _background(members: Sequence[FittedModel], data: CohortData) -> pd.DataFrame | None:
    """k-means centroids of the training labs (raw units) for SHAP, or None for image-only models."""
    tabular = members[0].tabular
    if tabular is None:
        return None

    return summarise_background(data.labs, [*tabular.numeric_columns, *tabular.categorical])


def _weights_digest(members: Sequence[FittedModel], oof_probability: np.ndarray) -> str:
    """Content hash of the fold models and their OOF predictions (part of the model version)."""

    digest = hashlib.sha256(np.asarray(oof_probability, np.float64).tobytes())
    for member in members:
        if member.net is not None:
            for key, value in member.net.state_dict().items():
                digest.update(key.encode())
                digest.update(value.detach().cpu().numpy().tobytes())
        else:
            digest.update(repr(member.estimator.get_params()).encode())
    return digest.hexdigest()
