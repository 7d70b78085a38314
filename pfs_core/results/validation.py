"""External validation of a model bundle's scores on a cohort with observed outcomes.

What a group does first with a shipped model: score its own patients (:func:`pfs_core.inference.score_cohort`),
then compare the probabilities with what happened. :func:`external_validation` gives

- **AUROC** of the short-PFS label (PFS ≤ 12 months with progression = 1, PFS > 12 months = 0,
  censored at or before 12 months = no label: left out; :func:`pfs_core.metrics.short_pfs_label`,
  the label the models were trained on);
- **C-index** (Harrell's, lifelines) of the probability as a risk score against ``pfs_months`` /
  ``progressed`` of every patient with an outcome (censored ones included);
- **calibration** intercept (calibration-in-the-large, 0 = ideal) and slope (1 = ideal)
  (:func:`pfs_core.metrics.calibration_fit`);
- **Brier score** (labelled patients);
- **net benefit** of a decision curve at a few thresholds, beside treat-all;

each with a 95 % percentile interval from a seeded patient bootstrap (default 1000 resamples: the
labelled patients for the binary metrics, every patient with an outcome for the C-index). A resample
holding one outcome class only gives no AUROC (and no calibration fit when it separates perfectly): it
is left out, and ``n_resamples`` says how many counted. The same numbers come from the page (Batch
scoring) and from ``python -m pfs_core score --outcomes-report FILE``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pfs_core import schema
from pfs_core.errors import InputError
from pfs_core.metrics import (
    binary_metrics,
    c_index,
    calibration_fit,
    rank_auroc,
    short_pfs_label,
)
from pfs_core.viz.curves import net_benefit

N_BOOT = 1000
SEED = 0
#: Thresholds of the decision-curve table (the figure uses a finer grid).
TABLE_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
FIGURE_THRESHOLDS = np.linspace(0.05, 0.8, 31)

#: metric key → (label, what is ideal, which patients)
METRICS: dict[str, tuple[str, str, str]] = {
    "auroc": ("AUROC", "1 (0.5 = chance)", "labelled"),
    "c_index": ("C-index (Harrell)", "1 (0.5 = chance)", "with outcome"),
    "calibration_intercept": ("Calibration intercept", "0 (> 0: risks underestimated)", "labelled"),
    "calibration_slope": ("Calibration slope", "1 (< 1: predictions too extreme)", "labelled"),
    "brier": ("Brier score", "0 (lower is better)", "labelled"),
}
METRIC_TABLE_COLUMNS = ("metric", "key", "value", "low", "high", "n_resamples", "patients", "ideal")


@dataclass
class ExternalValidation:
    """Result of :func:`external_validation`.

    ``metrics``: columns :data:`METRIC_TABLE_COLUMNS` (one row per metric of :data:`METRICS`; ``low``/``high``
    the 95 % bootstrap interval). ``decision``: threshold, net_benefit, low, high, treat_all (labelled
    patients). ``y``/``p`` (L,): label and probability of the labelled patients; ``time``/``event``/``risk``
    (M,): every patient with an outcome. ``decision_band``: thresholds and the bootstrap net-benefit band for
    the figure; ``line_intercept``: a of the calibration-slope fit (to draw the fitted line).
    """

    model: str
    counts: dict[str, int]
    metrics: pd.DataFrame
    decision: pd.DataFrame
    y: np.ndarray
    p: np.ndarray
    time: np.ndarray
    event: np.ndarray
    risk: np.ndarray
    n_boot: int
    seed: int
    decision_band: dict[str, list[float]] = field(default_factory=dict)
    line_intercept: float = float("nan")
    notes: list[str] = field(default_factory=list)

    def value(self, key: str) -> tuple[float, float, float]:
        """(value, low, high) of metric ``key``."""
        row = self.metrics.set_index("key").loc[key]
        return float(row["value"]), float(row["low"]), float(row["high"])

    def summary(self, key: str = "auroc", *, digits: int = 2) -> str:
        """E.g. ``"AUROC 0.71 (95 % CI 0.58–0.83)"``; ``"AUROC n/a"`` without a value."""
        value, low, high = self.value(key)
        label = METRICS[key][0]
        if not math.isfinite(value):
            return f"{label} n/a"
        interval = f" (95 % CI {low:.{digits}f}–{high:.{digits}f})" if math.isfinite(low) else " (no interval)"
        return f"{label} {value:.{digits}f}{interval}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: model, counts, bootstrap settings, metrics, decision table, notes (no patient ids)."""
        return {"model": self.model, "counts": self.counts,
                "bootstrap": {"n_boot": self.n_boot, "seed": self.seed, "interval": "95 % percentile",
                              "unit": "patient"},
                "label": "short PFS: pfs_months <= 12 with progressed = 1 (1), pfs_months > 12 (0); censored "
                         "at or before 12 months: no label (left out of AUROC, calibration, Brier, decision curve)",
                "metrics": [_clean(r) for r in self.metrics.to_dict(orient="records")],
                "decision_curve": [_clean(r) for r in self.decision.to_dict(orient="records")],
                "notes": self.notes}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """NaN → None, numpy scalars → Python (strict JSON)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, np.generic):
            value = value.item()
        out[key] = None if isinstance(value, float) and not math.isfinite(value) else value
    return out


def attach_outcomes(scores: pd.DataFrame, good: pd.DataFrame) -> pd.DataFrame:
    """``scores`` (one row per scored patient, column ``row`` = spreadsheet row) with ``pfs_months`` and
    ``progressed`` taken from ``good`` (the validation report's usable rows, indexed by spreadsheet row).

    NaN where the cohort gives no outcome for that patient.
    """
    outcome = good.reindex(scores["row"].to_numpy())[[schema.TIME_COLUMN, schema.EVENT_COLUMN]]
    out = scores.copy()
    out[schema.TIME_COLUMN] = outcome[schema.TIME_COLUMN].to_numpy(dtype=float)
    out[schema.EVENT_COLUMN] = outcome[schema.EVENT_COLUMN].to_numpy(dtype=float)
    return out


def has_outcomes(frame: pd.DataFrame) -> bool:
    """True when at least one row has both ``pfs_months`` and ``progressed``."""
    if not {schema.TIME_COLUMN, schema.EVENT_COLUMN} <= set(frame.columns):
        return False
    known = frame[schema.TIME_COLUMN].notna() & frame[schema.EVENT_COLUMN].notna()
    return bool(known.any())


def external_validation(probability: np.ndarray, time_months: np.ndarray, event: np.ndarray, *, model: str = "",
                        n_boot: int = N_BOOT, seed: int = SEED) -> ExternalValidation:
    """AUROC, C-index, calibration intercept/slope, Brier and net benefit with 95 % patient-bootstrap intervals.

    Args:
        probability: (N,) predicted probability of PFS ≤ 12 months.
        time_months: (N,) observed PFS in months (NaN: no outcome, row left out).
        event: (N,) 1 progressed, 0 censored (NaN: no outcome).
        model: name shown in tables and figures.
        n_boot: bootstrap resamples (0: no intervals).
        seed: of ``numpy.random.default_rng``.

    Raises:
        InputError: no row has both ``pfs_months`` and ``progressed``.
    """
    p_all = np.asarray(probability, dtype=float)
    t_all, e_all = np.asarray(time_months, dtype=float), np.asarray(event, dtype=float)
    known = np.isfinite(t_all) & np.isfinite(e_all) & np.isfinite(p_all)
    if not known.any():
        raise InputError("no scored patient has both pfs_months (months) and progressed (0/1); fill in these "
                         "columns of the cohort table to validate the model against the outcomes")
    if n_boot < 0:
        raise InputError(f"n_boot must be 0 or more, not {n_boot}")
    t, e, p = t_all[known], e_all[known].astype(int), p_all[known]
    label = short_pfs_label(t, e)
    labelled = ~np.isnan(label)
    y, pl = label[labelled].astype(int), p[labelled]
    counts = {"n_scored": int(len(p_all)), "n_with_outcome": int(known.sum()), "n_labelled": int(labelled.sum()),
              "n_short_pfs": int((y == 1).sum()), "n_long_pfs": int((y == 0).sum()),
              "n_censored_before_12_months": int((~labelled).sum()),
              "n_events": int(e.sum())}
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    both = counts["n_short_pfs"] > 0 and counts["n_long_pfs"] > 0
    if not both:
        notes.append(f"the labelled patients hold one outcome only ({counts['n_short_pfs']} short, "
                     f"{counts['n_long_pfs']} long PFS): no AUROC, calibration fit or decision curve")
    if counts["n_labelled"] < 30:
        notes.append(f"only {counts['n_labelled']} labelled patients: the intervals are wide and rough")

    rows = []
    # binary metrics: resample the labelled patients
    point_bin = binary_metrics(y.astype(float), pl) if counts["n_labelled"] else {"auroc": np.nan, "brier": np.nan}
    cal = calibration_fit(y, pl) if both else {"intercept": np.nan, "slope": np.nan, "slope_fit_intercept": np.nan}
    boot: dict[str, np.ndarray] = {}
    if n_boot and counts["n_labelled"]:
        idx = rng.integers(0, len(y), size=(n_boot, len(y)))
        yb, pb = y[idx], pl[idx]
        boot["auroc"] = rank_auroc(yb, pb)
        fit = calibration_fit(yb, pb)
        boot["calibration_intercept"], boot["calibration_slope"] = fit["intercept"], fit["slope"]
        boot["brier"] = np.mean((pb - yb) ** 2, axis=-1)
    point = {"auroc": point_bin["auroc"], "brier": point_bin["brier"],
             "calibration_intercept": float(cal["intercept"]), "calibration_slope": float(cal["slope"])}
    # C-index: resample every patient with an outcome
    point["c_index"] = _c_index(t, e, p)
    if n_boot and np.isfinite(point["c_index"]):
        idx_all = rng.integers(0, len(t), size=(n_boot, len(t)))
        boot["c_index"] = np.array([_c_index(t[i], e[i], p[i]) for i in idx_all])
    for key, (label_text, ideal, patients) in METRICS.items():
        low, high, used = _interval(boot.get(key))
        n_patients = counts["n_with_outcome"] if patients == "with outcome" else counts["n_labelled"]
        rows.append({"metric": label_text, "key": key, "value": float(point[key]), "low": low, "high": high,
                     "n_resamples": used, "patients": n_patients, "ideal": ideal})
    metrics = pd.DataFrame(rows, columns=list(METRIC_TABLE_COLUMNS))

    decision, band = _decision(y, pl, rng=rng, n_boot=n_boot) if both else (_empty_decision(), {})
    return ExternalValidation(model=model, counts=counts, metrics=metrics, decision=decision, y=y, p=pl, time=t,
                              event=e, risk=p, n_boot=n_boot, seed=seed, decision_band=band,
                                line_intercept=float(cal["slope_fit_intercept"]), notes=notes)


def _c_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C, NaN without an admissible pair (no event, or a resample of one patient repeated)."""
    if event.sum() == 0 or len(time) < 2:
        return float("nan")
    try:
        return c_index(time, event, risk)
    except ZeroDivisionError:  # lifelines: "No admissable pairs in the dataset."
        return float("nan")


def _interval(values: np.ndarray | None) -> tuple[float, float, int]:
    """(2.5th, 97.5th percentile, number of finite values); NaN bounds with fewer than 20 finite values."""
    if values is None:
        return float("nan"), float("nan"), 0
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size < 20:
        return float("nan"), float("nan"), int(finite.size)
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high), int(finite.size)


DECISION_COLUMNS = ("threshold", "net_benefit", "low", "high", "treat_all")


def _empty_decision() -> pd.DataFrame:
    return pd.DataFrame(columns=list(DECISION_COLUMNS))


def _decision(y: np.ndarray, p: np.ndarray, *, rng: np.random.Generator,
              n_boot: int) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    """Net benefit at :data:`TABLE_THRESHOLDS` (table) and :data:`FIGURE_THRESHOLDS` (band), bootstrap 95 %."""
    grid = np.unique(np.round(np.concatenate([FIGURE_THRESHOLDS, TABLE_THRESHOLDS]), 6))
    value = net_benefit(y, p, grid)
    prevalence = float(y.mean())
    treat_all = prevalence - (1 - prevalence) * grid / (1 - grid)
    low = high = np.full(grid.shape, np.nan)
    if n_boot:
        idx = rng.integers(0, len(y), size=(n_boot, len(y)))
        draws = np.stack([net_benefit(y[i], p[i], grid) for i in idx])
        low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    table_rows = np.isin(np.round(grid, 6), np.round(TABLE_THRESHOLDS, 6))
    table = pd.DataFrame({"threshold": grid[table_rows], "net_benefit": value[table_rows], "low": low[table_rows],
                          "high": high[table_rows], "treat_all": treat_all[table_rows]})
    band = {"threshold": grid.tolist(), "net_benefit": value.tolist(), "low": np.asarray(low).tolist(),
            "high": np.asarray(high).tolist()}
    return table, band
