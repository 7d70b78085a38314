"""Honest uncertainty of a predicted probability of PFS <= 12 months (issue 25).

**Calibrated interval** (bundles whose training cohort carried the simulator's true risk): a split-conformal
interval on the logit scale. For each training patient ``i`` the bundle holds the out-of-fold probability
``p̂_i`` (one fold model that never saw the patient) and the simulator's true probability ``p_i``; the
nonconformity score is ``r_i = |logit p_i - logit p̂_i| / s_i``, where ``s`` is the case's *difficulty*:

    s(x) = 1 + a * overshoot(x) + c * missing(x)

- ``overshoot``: summed over the model's numeric inputs (labs on the model's log1p scale, lesion
  measurements on their model scale), how far the value lies outside the training range, in units of the
  training 1st-99th percentile span of that input (0 inside the range);
- ``missing``: the fraction of those inputs not given (imputed labs; lesion measurements without images);
- ``a = 4``, ``c = 1`` are not fitted on the training cohort, which holds too few extrapolating rows to learn
  how fast the error grows outside it: ``a`` was chosen on the development cohort sim400_dev101 (seed 101) by
  pushing one lab (albumin, gamma-GT, Ki-67) beyond the training range and recomputing the simulator's true
  risk (a = 1 covered 70-87 %, a = 4 83-98 %; docs/uncertainty.md). A value a quarter span beyond the range
  doubles the interval's half-width on the logit scale.

For the calibration rows ``s_i`` is computed against the ranges of the *other* folds (the data the fold model
that predicted row ``i`` was trained on), so rows that the fold model saw as out of range count as such. ``q``
is the conformal quantile of the scores at the level 0.9 with the finite-sample correction (the
``ceil((n + 1) * 0.9)``-th smallest score), and the interval of a new case is
``expit(logit p̂ ± q * s(x))``. It is calibrated against the simulator's truth, for patients drawn like the
training cohort; the ensemble mean of the 3 fold models is a little more accurate than one fold model, so the
interval is slightly conservative.

**Fallback** (no true risk in the training cohort, e.g. a real cohort): the min-max of the fold models'
probabilities, labelled as what it is (``level`` None): the spread of the fold models, not a calibrated interval.

Stored in the bundle manifest under :data:`MANIFEST_KEY` (:func:`calibrate` builds the entry). This module
sits beside :mod:`pfs_core.inference` and imports nothing above :mod:`pfs_core.models`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from pfs_core.errors import BundleError
from pfs_core.features.lesions import LESION_FEATURES
from pfs_core.features.tabular import TabularParams
from pfs_core.metrics import logit
from pfs_core.models.bundle import UNCERTAINTY_FIELD, Bundle

#: Manifest key of the calibration entry.
MANIFEST_KEY = UNCERTAINTY_FIELD
#: Nominal coverage of the calibrated interval.
LEVEL = 0.9
#: Weight of the summed out-of-range overshoot (in training spans) in the difficulty scale (chosen on a
#: development cohort, docs/uncertainty.md).
A_OUTSIDE = 4.0
#: Weight of the fraction of missing inputs in the difficulty scale.
C_MISSING = 1.0
CONFORMAL_METHOD = "split-conformal (logit scale, widened outside the training data)"
CONFORMAL_DESCRIPTION = (
    "90 % split-conformal interval on the logit scale, calibrated on the training cohort's out-of-fold "
    "predictions against the simulator's true risk; its width grows with how far inputs lie outside the "
    "training range and with the share of inputs missing")
FALLBACK_METHOD = "spread of the fold models; not a calibrated interval"
#: Probabilities are clipped to [EPS, 1 - EPS] before the logit.
EPS = 1e-6


@dataclass(frozen=True)
class Difficulty:
    """How unusual a case's inputs are for the training data: ``scale`` = 1 + a*overshoot + c*missing."""

    scale: float
    overshoot: float
    outside: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Interval:
    """An interval for one probability: bounds in [0, 1], its nominal ``level`` (None: not calibrated)."""

    low: float
    high: float
    level: float | None
    method: str
    sentence: str
    difficulty: Difficulty | None = None


def conformal_quantile(scores: Sequence[float] | np.ndarray, level: float = LEVEL) -> float:
    """The split-conformal quantile: the ``ceil((n + 1) * level)``-th smallest of the n finite ``scores``
    (inf when that exceeds n, i.e. too few rows for the level)."""
    values = np.sort(np.asarray(scores, float)[np.isfinite(np.asarray(scores, float))])
    rank = math.ceil((len(values) + 1) * level)
    return float(values[rank - 1]) if 1 <= rank <= len(values) else math.inf


def input_ranges(inputs: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per column of model-scale ``inputs`` (N, F): min, max, 1st and 99th percentile of the given values."""
    out: dict[str, dict[str, float]] = {}
    for name in inputs.columns:
        values = pd.to_numeric(inputs[name], errors="coerce").to_numpy(float)
        values = values[np.isfinite(values)]
        if values.size:
            p01, p99 = np.quantile(values, [0.01, 0.99])
            out[str(name)] = {"min": float(values.min()), "max": float(values.max()),
                              "p01": float(p01), "p99": float(p99)}
    return out


def difficulty(values: Mapping[str, float | None], ranges: Mapping[str, Mapping[str, float]], *,
               a: float = A_OUTSIDE, c: float = C_MISSING) -> Difficulty:
    """Difficulty of one case: ``values`` are its model-scale inputs (None/NaN: missing); ``ranges`` as from
    :func:`input_ranges`. Inputs without a range are counted as missing when missing, else ignored."""
    overshoot, outside, missing = 0.0, [], []
    for name, value in values.items():
        if value is None or not np.isfinite(float(value)):
            missing.append(name)
            continue
        info = ranges.get(name)
        if info is None:
            continue
        span = max(float(info["p99"]) - float(info["p01"]), 1e-9, 1e-3 * abs(float(info["max"])))
        beyond = max(0.0, float(value) - float(info["max"]), float(info["min"]) - float(value))
        if beyond > 0:
            outside.append(name)
            overshoot += beyond / span
    share = len(missing) / len(values) if values else 0.0
    return Difficulty(scale=1.0 + a * overshoot + c * share, overshoot=overshoot, outside=outside, missing=missing)


def calibrate(oof_probability: Sequence[float] | np.ndarray, true_probability: Sequence[float] | np.ndarray,
              inputs: pd.DataFrame, *, folds: Sequence[int] | np.ndarray | None = None, level: float = LEVEL,
              against: str, a: float = A_OUTSIDE, c: float = C_MISSING) -> dict[str, Any]:
    """The manifest entry (:data:`MANIFEST_KEY`) of a conformal calibration.

    ``oof_probability``, ``true_probability``: (N,) out-of-fold and true probabilities of the training
    patients; ``inputs``: (N, F) their model-scale inputs (columns = input names, NaN = missing), rows in
    the same order; ``folds``: (N,) fold of each row (its difficulty is measured against the other folds'
    ranges); ``against``: what the truth is, in words (stored).
    """
    prob = np.asarray(oof_probability, float)
    truth = np.asarray(true_probability, float)
    if not (len(prob) == len(truth) == len(inputs)):
        raise ValueError("oof_probability, true_probability and inputs need one row per training patient")
    keep = np.isfinite(prob) & np.isfinite(truth)
    fold = np.zeros(len(prob), int) if folds is None else np.asarray(folds, int)
    scales = np.ones(len(prob))
    for k in np.unique(fold):
        rows = fold == k
        reference = inputs[~rows] if (~rows).any() else inputs
        ranges = input_ranges(reference)
        for i in np.flatnonzero(rows):
            scales[i] = difficulty(_row_values(inputs, int(i)), ranges, a=a, c=c).scale
    scores = np.abs(logit(truth) - logit(prob)) / scales
    q = conformal_quantile(scores[keep], level)
    if not math.isfinite(q):
        raise ValueError(f"{int(keep.sum())} calibration rows are too few for a {level:.0%} conformal interval")
    return {"method": CONFORMAL_METHOD, "description": CONFORMAL_DESCRIPTION, "level": float(level),
            "q": float(q), "n_calibration": int(keep.sum()), "calibrated_against": against,
            "scale": {"a_outside": float(a), "c_missing": float(c),
                      "rule": "s = 1 + a * (summed overshoot beyond the training range, in training 1-99 % "
                              "spans) + c * (fraction of inputs missing); calibration rows against the other "
                              "folds' ranges"},
            "in_sample_coverage": float(np.mean(scores[keep] <= q)),
            "median_half_width_logit": float(np.median(q * scales[keep])),
            "inputs": [str(n) for n in inputs.columns], "ranges": input_ranges(inputs)}


def model_inputs(labs: pd.DataFrame, *, tabular: TabularParams | None, lesion_features: np.ndarray | None,
                 lesion_names: Sequence[str] = ()) -> pd.DataFrame:
    """(N, F) model-scale inputs the difficulty is measured on: the numeric labs the model reads (log1p for
    its log columns) and the lesion measurements in ``lesion_names`` (columns of ``lesion_features``, (N,
    len(LESION_FEATURES)) model scale, NaN = not measured; None: all missing). Categorical inputs are left out."""
    out = pd.DataFrame(index=range(len(labs)))
    numeric = tabular.numeric_columns if tabular is not None else ()
    logs = tabular.log_columns if tabular is not None else ()
    for name in numeric:
        values = pd.to_numeric(labs[name], errors="coerce").to_numpy(float) if name in labs else \
            np.full(len(labs), np.nan)
        out[name] = np.log1p(np.clip(values, 0.0, None)) if name in logs else values
    for name in lesion_names:
        out[name] = np.full(len(labs), np.nan) if lesion_features is None else \
            np.asarray(lesion_features, float)[:, LESION_FEATURES.index(name)]
    return out


def lesion_inputs(bundle: Bundle) -> list[str]:
    """The lesion measurements the bundle's image branches read (manifest ``lesion_measurements``)."""
    blocks = bundle.manifest.get("lesion_measurements") or {}
    return [name for name in LESION_FEATURES if any(name in names for names in blocks.values())]


def bundle_inputs(bundle: Bundle, labs: pd.DataFrame, lesion_features: np.ndarray | None) -> pd.DataFrame:
    """:func:`model_inputs` of ``bundle`` (its lab transform and lesion measurements)."""
    return model_inputs(labs, tabular=bundle.members[0].tabular if bundle.spec.use_lab else None,
                        lesion_features=lesion_features, lesion_names=lesion_inputs(bundle))


#: Fewest training rows with a true risk that a calibration is made from.
MIN_CALIBRATION_ROWS = 20
TRUTH_COLUMN = "p_short_pfs_true"


def calibrate_oof(oof: pd.DataFrame, truth: pd.DataFrame | None, inputs: pd.DataFrame, *,
                  against: str, a: float = A_OUTSIDE, c: float = C_MISSING) -> dict[str, Any] | None:
    """:func:`calibrate` from a bundle's ``training_oof`` table (patient_id, fold, oof_probability), the
    simulator's ``truth`` table (patient_id, p_short_pfs_true) and the training ``inputs`` indexed by patient id
    (:func:`model_inputs`). None when ``truth`` is None or holds fewer than :data:`MIN_CALIBRATION_ROWS` of the
    training patients (then the bundle shows the fold spread)."""
    if truth is None or TRUTH_COLUMN not in truth.columns:
        return None
    known = truth.assign(patient_id=truth["patient_id"].astype(str)).drop_duplicates("patient_id") \
        .set_index("patient_id")
    ids = oof["patient_id"].astype(str)
    rows = ids.isin(known.index).to_numpy() & ids.isin(inputs.index.astype(str)).to_numpy()
    if rows.sum() < MIN_CALIBRATION_ROWS:
        return None
    ids = ids[rows]
    table = inputs.set_axis(inputs.index.astype(str)).loc[ids.to_numpy()].reset_index(drop=True)
    truth_p = pd.to_numeric(known.loc[ids.to_numpy(), TRUTH_COLUMN], errors="coerce").to_numpy(float)
    return calibrate(oof["oof_probability"].to_numpy(float)[rows], truth_p, table,
                     folds=oof["fold"].to_numpy(int)[rows] if "fold" in oof else None, against=against, a=a, c=c)


def _row_values(inputs: pd.DataFrame, i: int) -> dict[str, float | None]:
    row = inputs.iloc[i]
    return {str(k): (None if pd.isna(v) else float(v)) for k, v in row.items()}


def read_calibration(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """The manifest's calibration entry, checked; None when the bundle has none (BundleError when malformed)."""
    entry = manifest.get(MANIFEST_KEY)
    if entry is None:
        return None
    try:
        q, level = float(entry["q"]), float(entry["level"])
        ranges = entry["ranges"]
        inputs = [str(n) for n in entry["inputs"]]
        if not (math.isfinite(q) and q >= 0 and 0 < level < 1 and isinstance(ranges, dict)):
            raise ValueError("q must be a finite number >= 0, level in (0, 1), ranges a mapping")
        for info in ranges.values():
            [float(info[k]) for k in ("min", "max", "p01", "p99")]
        scale = entry.get("scale", {})
        a, c = float(scale.get("a_outside", A_OUTSIDE)), float(scale.get("c_missing", C_MISSING))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"manifest.json: the '{MANIFEST_KEY}' entry is malformed ({exc}); rerun "
                          "'python benchmarks/calibrate_intervals.py' on the bundle or retrain it") from None
    return {**entry, "q": q, "level": level, "inputs": inputs, "a": a, "c": c}


#: ``Interval.method`` of a calibrated bundle's interval for a case it was not calibrated for.
UNCALIBRATED_CASE_METHOD = "split-conformal width, but this case is measured unlike the calibration cohort; " \
    "not a calibrated interval"


def interval(probability: float, calibration: Mapping[str, Any] | None, *,
             values: Mapping[str, float | None], fold_probabilities: Sequence[float],
             labels: Mapping[str, str] | None = None, not_calibrated_for: str | None = None) -> Interval:
    """The interval of one prediction: calibrated when ``calibration`` (:func:`read_calibration`) is given,
    else the labelled fold spread. ``values``: the case's model-scale inputs by name (None: missing);
    ``labels``: plain names of inputs for the sentence (default: the names); ``not_calibrated_for``: why this
    case is unlike the calibration cohort (e.g. lesions measured against the organ network's organs): the
    interval keeps its width but loses its level (None) and says so."""
    if calibration is None:
        low, high = float(np.min(fold_probabilities)), float(np.max(fold_probabilities))
        n = len(fold_probabilities)
        sentence = (f"The {n} fold models give {_pct(low)}–{_pct(high)} %. This is only the spread of the fold "
                    "models, not a calibrated interval: the model's training cohort had no known true risk to "
                    "calibrate one against, so the true risk may well lie outside it.")
        return Interval(low, high, None, FALLBACK_METHOD, sentence)
    inputs = calibration["inputs"]
    case = {name: values.get(name) for name in inputs}
    hard = difficulty(case, calibration["ranges"], a=calibration["a"], c=calibration["c"])
    half = calibration["q"] * hard.scale
    centre = float(logit(probability))
    low, high = float(expit(centre - half)), float(expit(centre + half))
    if not_calibrated_for:
        sentence = (f"Interval {_pct(low)}–{_pct(high)} %, but not a calibrated one for this patient: "
                    f"{not_calibrated_for}, unlike the training patients it was calibrated on, so the true risk may "
                    "well lie outside it.")
        return Interval(low, high, None, UNCALIBRATED_CASE_METHOD, sentence, hard)
    return Interval(low, high, calibration["level"], str(calibration.get("description", CONFORMAL_DESCRIPTION)),
                    _sentence(low, high, calibration["level"], hard, labels or {}), hard)


def _pct(p: float) -> str:
    value = 100.0 * p
    return f"{value:.1f}" if 0 < value < 1 or 99 < value < 100 else f"{value:.0f}"


def _names(names: Sequence[str], labels: Mapping[str, str]) -> str:
    shown = [labels.get(n, n) for n in names[:3]]
    return ", ".join(shown) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _sentence(low: float, high: float, level: float, hard: Difficulty, labels: Mapping[str, str]) -> str:
    """One plain-language sentence for a calibrated interval."""
    tenths = round(10 * level)
    text = (f"The true risk of a patient like this one lies within {_pct(low)}–{_pct(high)} % with "
            f"{100 * level:.0f} % confidence: in the simulated training cohort, intervals made this way held the true risk "
            f"for {tenths} of 10 patients")
    reasons = []
    if hard.outside:
        n = len(hard.outside)
        reasons.append(f"{n} input{'s lie' if n > 1 else ' lies'} outside the training range "
                       f"({_names(hard.outside, labels)})")
    if hard.missing:
        n = len(hard.missing)
        reasons.append(f"{n} input{'s are' if n > 1 else ' is'} missing")
    if reasons:
        text += "; wider than usual because " + " and ".join(reasons)
    return text + "."
