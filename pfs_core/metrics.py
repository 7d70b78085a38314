"""Outcome label and thin wrappers over scikit-learn / lifelines metrics (nothing computed by hand).

Label: short PFS (1) = progressed and ``pfs_months`` <= 12
(:data:`pfs_core.schema.SHORT_PFS_MONTHS`); long PFS (0) = ``pfs_months`` > 12;
patients censored at or before 12 months have no binary label (NaN): they are
left out of binary training and metrics but kept in the C-index.

:func:`paired_auroc_bootstrap` is the one metric computed here rather than taken from a
library: 2000 patient resamples of scikit-learn's ``roc_auc_score`` take seconds per
pair, the rank form (:func:`rank_auroc`, equal to it) a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from lifelines.statistics import multivariate_logrank_test
from lifelines.utils import concordance_index
from scipy import special
from scipy.stats import rankdata
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


def rank_auroc(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``scores`` against the 0/1 labels ``y`` of the same shape (..., N).

    Mann–Whitney form: (rank sum of the positives − n₁(n₁ + 1)/2) / (n₁ n₀), ranks
    over the last axis with ties averaged, which equals ``roc_auc_score`` (a tied
    positive/negative pair counts ½). Shape (...,); NaN for a row with one class only.
    """
    y = np.asarray(y)
    ranks = rankdata(np.asarray(scores, dtype=float), axis=-1)  # method "average": ties share their mean rank
    positive = y == 1
    n_pos = positive.sum(axis=-1).astype(float)
    n_neg = y.shape[-1] - n_pos
    u = (ranks * positive).sum(axis=-1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def paired_auroc_bootstrap(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, *, n_boot: int = 2000,
                           seed: int = 0) -> dict[str, float]:
    """Paired difference AUROC(p_a) − AUROC(p_b) with a 95 % percentile interval from a patient bootstrap.

    ``y`` (N,) 1 short PFS, 0 long, NaN no label (left out); ``p_a``/``p_b`` (N,) two
    predictions of the same patients. Each of ``n_boot`` resamples draws the labelled
    patients with replacement (``numpy.random.default_rng(seed)``) and scores both
    predictions on the same draw, so what the two share cancels. Returns ``delta`` (on
    all labelled patients), ``low``/``high`` (2.5th/97.5th percentiles of the resampled
    differences) and ``p_le_0`` (share of resamples with a difference ≤ 0); resamples
    holding one class only are left out. All NaN without both classes.
    """
    label = np.asarray(y, dtype=float)
    keep = ~np.isnan(label)
    y_int = label[keep].astype(int)
    a, b = np.asarray(p_a, dtype=float)[keep], np.asarray(p_b, dtype=float)[keep]
    delta = float(rank_auroc(y_int, a) - rank_auroc(y_int, b))
    if not np.isfinite(delta) or n_boot < 1:
        return {"delta": delta, "low": float("nan"), "high": float("nan"), "p_le_0": float("nan")}
    idx = np.random.default_rng(seed).integers(0, len(y_int), size=(n_boot, len(y_int)))
    deltas = rank_auroc(y_int[idx], a[idx]) - rank_auroc(y_int[idx], b[idx])
    deltas = deltas[np.isfinite(deltas)]
    if not deltas.size:
        return {"delta": delta, "low": float("nan"), "high": float("nan"), "p_le_0": float("nan")}
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {"delta": delta, "low": float(low), "high": float(high), "p_le_0": float(np.mean(deltas <= 0))}


#: Probabilities are clipped to [EPS, 1 − EPS] before the logit (a score of exactly 0 or 1 has no logit).
LOGIT_EPS = 1e-6


def logit(probability: np.ndarray | float, *, eps: float = LOGIT_EPS) -> np.ndarray:
    """log(p / (1 − p)) elementwise (scipy.special.logit), ``p`` clipped to [eps, 1 − eps] so that 0 and 1 stay
    finite."""
    return np.asarray(special.logit(np.clip(np.asarray(probability, dtype=float), eps, 1.0 - eps)))


def calibration_fit(y: np.ndarray, probability: np.ndarray, *, steps: int = 30,
                    tol: float = 1e-8) -> dict[str, np.ndarray]:
    """Calibration intercept and slope (Cox 1958; Steyerberg, *Clinical Prediction Models*) of each row.

    ``y`` (..., N) 0/1 labels and ``probability`` (..., N) predictions of the same patients; every row (e.g.
    one bootstrap resample) is fitted on its own. ``slope``: b of the logistic regression
    ``logit P(y=1) = a + b · logit(p)`` (1 = ideal, < 1 = predictions too extreme); ``intercept``:
    a of ``logit P(y=1) = a + logit(p)`` (the slope held at 1: calibration-in-the-large, 0 = ideal,
    > 0 = risks underestimated). Maximum likelihood by Newton–Raphson over all rows at once (equal to an
    unpenalised scikit-learn ``LogisticRegression``, tested). A row whose fit does not converge (one
    class only, or perfect separation: the estimate runs off to infinity) is NaN. Shapes (...,);
    ``slope_fit_intercept`` is the a of the slope's fit (to draw the fitted calibration line).
    """
    yy = np.asarray(y, dtype=float)
    lp = logit(probability)
    # slope: two parameters (a, b), Newton steps batched over the leading axes
    a = np.zeros(yy.shape[:-1])
    b = np.ones(yy.shape[:-1])
    converged = np.zeros(yy.shape[:-1], dtype=bool)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(steps):
            mu = 1.0 / (1.0 + np.exp(-(a[..., None] + b[..., None] * lp)))
            w = mu * (1.0 - mu)
            g_a, g_b = (yy - mu).sum(-1), ((yy - mu) * lp).sum(-1)
            h_aa, h_ab, h_bb = w.sum(-1), (w * lp).sum(-1), (w * lp * lp).sum(-1)
            det = h_aa * h_bb - h_ab**2
            da, db = (h_bb * g_a - h_ab * g_b) / det, (h_aa * g_b - h_ab * g_a) / det
            a, b = a + da, b + db
            converged = np.abs(da) + np.abs(db) < tol
        slope_ok = converged & np.isfinite(b) & (np.abs(b) < 50)
        slope = np.where(slope_ok, b, np.nan)
        # intercept with the slope fixed at 1 (logit(p) as offset): one parameter
        c = np.zeros(yy.shape[:-1])
        for _ in range(steps):
            mu = 1.0 / (1.0 + np.exp(-(c[..., None] + lp)))
            step = (yy - mu).sum(-1) / (mu * (1.0 - mu)).sum(-1)
            c = c + step
            done = np.abs(step) < tol
        intercept = np.where(done & np.isfinite(c) & (np.abs(c) < 50), c, np.nan)
    both = (yy.min(-1) != yy.max(-1))
    return {"intercept": np.where(both, intercept, np.nan), "slope": np.where(both, slope, np.nan),
            "slope_fit_intercept": np.where(both & slope_ok, a, np.nan)}
