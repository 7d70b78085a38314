"""Outcome label and thin wrappers over scikit-learn / lifelines metrics (nothing computed by hand).

Label: short PFS (1) = progressed and ``pfs_months`` <= 12
(:data:`pfs_core.schema.SHORT_PFS_MONTHS`); long PFS (0) = ``pfs_months`` > 12;
patients censored at or before 12 months have no binary label (NaN): they are
left out of binary training and metrics but kept in the C-index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from lifelines.statistics import multivariate_logrank_test
from lifelines.utils import concordance_index
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from pfs_core.schema import SHORT_PFS_MONTHS

BINARY_METRICS: tuple[str, ...] = ("auroc", "auprc", "brier")
ALL_METRICS: tuple[str, ...] = (*BINARY_METRICS, "c_index")


def short_pfs_label(time_months: np.ndarray, event: np.ndarray) -> np.ndarray:
    """(N,) float: 1.0 short PFS, 0.0 long PFS, NaN censored at or before 12 months."""
    time_months = np.asarray(time_months, dtype=float)
    event = np.asarray(event).astype(int)
    label = np.full(time_months.shape, np.nan)
    label[time_months > SHORT_PFS_MONTHS] = 0.0
    label[(time_months <= SHORT_PFS_MONTHS) & (event == 1)] = 1.0
    return label


def binary_metrics(label: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC (average precision), Brier score over rows with a label (NaN labels dropped)."""

    label = np.asarray(label, dtype=float)
    keep = ~np.isnan(label)
    y, p = label[keep].astype(int), np.asarray(probability, dtype=float)[keep]
    if len(np.unique(y)) < 2:
        return {"auroc": float("nan"), "auprc": float("nan"), "brier": float(brier_score_loss(y, p))}
    return {"auroc": float(roc_auc_score(y, p)), "auprc": float(average_precision_score(y, p)),
            "brier": float(brier_score_loss(y, p))}


def c_index(time_months: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C (lifelines ``concordance_index``) of a risk score (higher = shorter PFS)."""

    return float(concordance_index(np.asarray(time_months, float), -np.asarray(risk, float),
                                   np.asarray(event).astype(int)))


def logrank_p(time_months: np.ndarray, event: np.ndarray, group: np.ndarray) -> float:
    """Log-rank p-value (lifelines ``multivariate_logrank_test``) between the groups in ``group``."""

    group = np.asarray(group)
    if len(np.unique(group)) < 2:
        return float("nan")
    result = multivariate_logrank_test(np.asarray(time_months, float), group, np.asarray(event).astype(int))
    return float(result.p_value)


def all_metrics(time_months: np.ndarray, event: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC, Brier (labelled rows) and C-index (all rows) of one set of predictions."""
    label = short_pfs_label(time_months, event)
    return {**binary_metrics(label, probability), "c_index": c_index(time_months, event, probability)}


def mean_sd(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value) of per-repeat figures."""
    arr = np.asarray(values, dtype=float)
    sd = float(np.std(arr, ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(np.mean(arr)), "sd": sd}
