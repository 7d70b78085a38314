"""Reference rows of the benchmark: fixed, fast yardsticks evaluated on the models' own splits.

When the cohort folder holds the simulator's ground truth (:data:`pfs_core.schema.TRUTH_FILE`),
the benchmark adds rows that are not models of the study but bounds to read them against:

- ``ref_labs``: L2 logistic regression on the labs (the models' lab transform,
  :func:`pfs_core.features.tabular.fit_lab_transform`);
- ``ref_readouts``: the same on the labs and the image read-outs (the ``classic`` model's
  PET features and the CT read-outs of :mod:`pfs_core.features.readouts`); only when images
  were loaded;
- ``ref_oracle``: the same on the labs and the simulator's true image quantities
  (:data:`pfs_core.schema.ORACLE_IMAGE_COLUMNS` present in the file): what perfect read-outs
  could add;
- ``ref_bayes``: the true probability itself, no fit (the Bayes limit).

Every fitted step (lab transform, imputation, scaling, logistic) sees the training rows of
the split only; the penalty is ``TrainConfig.logistic_c`` (not tuned on any fold). The logistic
models are unweighted: their probabilities stay calibrated, so Brier and calibration are
read as the truth's are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pfs_core import schema
from pfs_core.config import TrainConfig
from pfs_core.dataset import CohortData
from pfs_core.errors import InputError
from pfs_core.features.readouts import CT_READOUT_NAMES, ct_hepatic_readout, to_hu
from pfs_core.features.tabular import fit_lab_transform
from pfs_core.training.cv import OOF_COLUMNS, Split


@dataclass(frozen=True)
class Reference:
    """One reference row: what it reads (``inputs``: "lab", "pet", "ct", "truth"; ``features``:
    the non-lab columns) and, for ``ref_oracle``, the truth columns the file lacked."""

    name: str
    label: str
    description: str
    inputs: tuple[str, ...]
    features: tuple[str, ...] = ()
    missing_columns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"label": self.label, "description": self.description,
                                  "inputs": list(self.inputs), "features": list(self.features)}
        return out | ({"missing_columns": list(self.missing_columns)} if self.missing_columns else {})


@dataclass
class ReferenceRun:
    """Reference rows, their OOF predictions (columns :data:`OOF_COLUMNS`) and fit times (s)."""

    references: tuple[Reference, ...]
    oof: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.references]


def read_ground_truth(cohort_csv: str | Path) -> pd.DataFrame | None:
    """The simulator's ``ground_truth.csv`` beside ``cohort_csv`` (patient_id as str), or None when absent."""
    path = Path(cohort_csv).parent / schema.TRUTH_FILE
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype={schema.ID_COLUMN: str})
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable ({exc}); remove it or rewrite it with 'python -m pfs_core synth'") \
            from None
    if schema.ID_COLUMN not in table.columns:
        raise InputError(f"{path}: no {schema.ID_COLUMN} column; remove it or rewrite it with 'python -m pfs_core synth'")
    return table


def run_references(data: CohortData, splits: Sequence[Split], truth: pd.DataFrame, *,
                   config: TrainConfig) -> ReferenceRun:
    """Fit and predict every reference on every split; rows that cannot be built are named in ``notes``."""
    run = ReferenceRun(references=(), oof=pd.DataFrame(columns=list(OOF_COLUMNS)))
    aligned = truth.drop_duplicates(schema.ID_COLUMN).set_index(schema.ID_COLUMN)
    absent = [pid for pid in data.patient_ids if pid not in aligned.index]
    if absent:
        run.notes.append(f"{schema.TRUTH_FILE} lacks {len(absent)} of the {len(data)} benchmarked patients "
                         f"(e.g. {absent[0]}): no reference rows")
        return run
    aligned = aligned.loc[list(data.patient_ids)].reset_index()
    rows: list[pd.DataFrame] = []
    references = []
    for build in (_labs_row, _readouts_row, _oracle_row, _bayes_row):
        started = time.perf_counter()  # the read-outs' feature extraction counts in their fit time
        built = build(data, aligned, config)
        if isinstance(built, str):
            run.notes.append(built)
            continue
        reference, predict = built
        rows += [pd.DataFrame({"patient_id": data.patient_ids[split.test], "repeat": split.repeat,
                               "fold": split.fold, "model": reference.name, "probability": predict(split)})
                 for split in splits]
        run.seconds[reference.name] = time.perf_counter() - started
        references.append(reference)
    run.references = tuple(references)
    run.oof = pd.concat(rows, ignore_index=True) if rows else run.oof
    return run


Predictor = Callable[[Split], np.ndarray]


Built = tuple[Reference, Predictor] | str  # a reference and its predictor, or why it is left out


def _labs_row(data: CohortData, truth: pd.DataFrame, config: TrainConfig) -> Built:
    reference = Reference("ref_labs", "Labs, logistic (reference)", "L2 logistic regression on the labs (the "
                          f"models' lab transform), C = {config.logistic_c}.", ("lab",))
    return reference, _logistic(data, None, config)


def _readouts_row(data: CohortData, truth: pd.DataFrame, config: TrainConfig) -> Built:
    readouts = readout_features(data)
    if readouts is None:
        return "ref_readouts left out: no images were loaded (no benchmarked model reads them)"
    inputs = ("lab", "pet", "ct") if data.ct is not None else ("lab", "pet")
    reference = Reference("ref_readouts", "Labs + image read-outs, logistic (reference)",
                          "L2 logistic regression on the labs and log(1 + read-out) of the classic model's PET "
                          f"features and the CT read-outs (missing image: training median + missing flag), "
                          f"C = {config.logistic_c}.", inputs, tuple(readouts.columns))
    return reference, _logistic(data, readouts.to_numpy(float), config)


def _oracle_row(data: CohortData, truth: pd.DataFrame, config: TrainConfig) -> Built:
    oracle = oracle_features(truth)
    if not oracle.shape[1]:
        return f"ref_oracle left out: {schema.TRUTH_FILE} has none of {', '.join(schema.ORACLE_IMAGE_COLUMNS)}"
    missing = tuple(c for c in schema.ORACLE_IMAGE_COLUMNS if c not in truth.columns)
    reference = Reference("ref_oracle", "Labs + true image quantities, logistic (reference)",
                          "L2 logistic regression on the labs and the simulator's true per-patient image quantities "
                          "(log1p of volumes, log of the tumour-to-liver ratio; empty values: training median + "
                          f"missing flag), C = {config.logistic_c}.", ("lab", "truth"), tuple(oracle.columns),
                          missing)
    return reference, _logistic(data, oracle.to_numpy(float), config)


def _bayes_row(data: CohortData, truth: pd.DataFrame, config: TrainConfig) -> Built:
    column = schema.TRUTH_PROBABILITY_COLUMN
    if column not in truth.columns:
        return f"ref_bayes left out: {schema.TRUTH_FILE} has no {column} column"
    truth_p = pd.to_numeric(truth[column], errors="coerce").to_numpy(float)
    reference = Reference("ref_bayes", "True probability (Bayes limit)",
                          f"The simulator's true probability {column}, no fit: the most any model can reach on "
                          "this cohort.", ("truth",), (column,))
    return reference, lambda split: truth_p[split.test]


def _logistic(data: CohortData, extra: np.ndarray | None, config: TrainConfig) -> Predictor:
    """Split → probabilities of an L2 logistic regression on the labs (+ ``extra`` (N, k), NaN = missing)."""
    label = data.label
    block = np.zeros((len(data), 0)) if extra is None else extra

    def predict(split: Split) -> np.ndarray:
        train = split.train
        labs = fit_lab_transform(data.labs.iloc[train], include_post_baseline=config.include_post_baseline)
        impute = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True).fit(block[train]) \
            if block.shape[1] else None

        def design(rows: np.ndarray) -> np.ndarray:
            parts = [labs.transform(data.labs.iloc[rows]).astype(np.float64)]
            if impute is not None:
                parts.append(impute.transform(block[rows]))
            return np.hstack(parts)

        # Scaled once more over all columns (as classic's pipeline) so one penalty treats every input alike.
        scaler = StandardScaler().fit(design(train))
        fit_rows = train[~np.isnan(label[train])]
        model = LogisticRegression(C=config.logistic_c, max_iter=5000)
        model.fit(scaler.transform(design(fit_rows)), label[fit_rows].astype(int))
        return model.predict_proba(scaler.transform(design(split.test)))[:, 1]

    return predict


def readout_features(data: CohortData) -> pd.DataFrame | None:
    """(N, k) log(1 + read-out): the ``classic`` model's PET features and, with CT, the CT read-outs
    (NaN where the image is missing); None when no images were loaded."""
    if data.pet is None and data.ct is None:
        return None
    parts = []
    if data.pet is not None:
        parts.append(np.log1p(data.pet_features()))
    if data.ct is not None and data.ct_present is not None:
        hu = to_hu(torch.from_numpy(np.ascontiguousarray(data.ct[:, None])), data.preprocess.ct_window_hu)
        values = ct_hepatic_readout(hu, data.preprocess.voxel_ml).numpy().astype(np.float64)
        values[~data.ct_present.astype(bool)] = np.nan
        parts.append(pd.DataFrame(np.log1p(values), columns=list(CT_READOUT_NAMES)))
    return pd.concat(parts, axis=1)


def oracle_features(truth: pd.DataFrame) -> pd.DataFrame:
    """The true image quantities of :data:`pfs_core.schema.ORACLE_IMAGE_COLUMNS` present in ``truth``:
    ``*_ml`` volumes as log1p, the tumour-to-liver ratio as log (skewed, multiplicative), fractions as they
    are; empty values stay NaN (imputed per training fold)."""
    out = {}
    for name in schema.ORACLE_IMAGE_COLUMNS:
        if name not in truth.columns:
            continue
        values = pd.to_numeric(truth[name], errors="coerce").to_numpy(float)
        if name.endswith("_ml"):
            values = np.log1p(np.clip(values, 0.0, None))
        elif name == "tumour_to_liver_ratio":
            values = np.log(np.where(values > 0, values, np.nan))  # a ratio of 0 would be no SSTR uptake: empty
        out[name] = values
    return pd.DataFrame(out, index=truth.index)
