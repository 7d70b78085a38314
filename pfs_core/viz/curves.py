"""Performance and outcome figures: ROC, precision–recall, calibration, decision curve, Kaplan–Meier, risk histogram.

The ``curves`` argument of the model-comparison figures maps a model name to
``(y_true, y_score)``: ``y_true`` ``(N,)`` 1 = PFS ≤ 12 months, 0 = longer (NaN =
no label, e.g. censored before 12 months: left out), ``y_score`` ``(N,)``
predicted probability of PFS ≤ 12 months. All metrics are scikit-learn's or
lifelines'; nothing is computed by hand except the net benefit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from pfs_core.errors import InputError
from pfs_core.schema import SHORT_PFS_MONTHS
from pfs_core.viz._style import NEUTRAL, OUTCOME, REFERENCE, color, dash, format_p, new_figure, rgba

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]
DEFAULT_THRESHOLDS = np.linspace(0.05, 0.8, 76)

__all__ = ["roc_figure", "pr_figure", "calibration_figure", "decision_curve_figure", "net_benefit", "km_figure",
           "risk_distribution_figure", "cohort_percentile", "paired_delta_figure"]


def roc_figure(curves: Curves, *, title: str = "ROC curves") -> go.Figure:
    """ROC curve per model, AUROC (``sklearn.metrics.roc_auc_score``) in the legend and in ``trace.meta``."""

    fig = new_figure(title=title, x_title="1 − specificity (false-positive rate)",
                     y_title="Sensitivity (true-positive rate)")
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="Chance (AUROC 0.5)",
                             line={"color": REFERENCE, "dash": "dot", "width": 1}))
    for i, (name, (y, p)) in enumerate(_checked(curves).items()):
        fpr, tpr, _ = roc_curve(y, p)
        auroc = float(roc_auc_score(y, p))
        fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{name} (AUROC {auroc:.3f})",
                                 line={"color": color(i), "dash": dash(i), "width": 2.5},
                                 meta={"model": name, "auroc": auroc}, legendgroup=name,
                                 hovertemplate="FPR %{x:.2f}<br>TPR %{y:.2f}<extra>" + name + "</extra>"))
    _unit_square(fig)
    return fig


def pr_figure(curves: Curves, *, title: str = "Precision–recall curves") -> go.Figure:
    """Precision–recall curve per model, AUPRC (average precision) in the legend, prevalence line(s)."""

    fig = new_figure(title=title, x_title="Recall (sensitivity)",
                     y_title="Precision (positive predictive value)")
    checked = _checked(curves)
    for label, prevalence in _prevalences(checked).items():
        fig.add_trace(go.Scatter(x=[0, 1], y=[prevalence, prevalence], mode="lines",
                                 name=f"{label} {prevalence:.2f} (no skill)",
                                 line={"color": REFERENCE, "dash": "dot", "width": 1},
                                 meta={"prevalence": prevalence}))
    for i, (name, (y, p)) in enumerate(checked.items()):
        precision, recall, _ = precision_recall_curve(y, p)
        auprc = float(average_precision_score(y, p))
        fig.add_trace(go.Scatter(x=recall, y=precision, mode="lines", line_shape="hv",
                                 name=f"{name} (AUPRC {auprc:.3f})",
                                 line={"color": color(i), "dash": dash(i), "width": 2.5},
                                 meta={"model": name, "auprc": auprc}, legendgroup=name,
                                 hovertemplate="Recall %{x:.2f}<br>Precision %{y:.2f}<extra>" + name + "</extra>"))
    _unit_square(fig)
    return fig


def calibration_figure(curves: Curves, *, n_bins: int = 5, title: str = "Calibration") -> go.Figure:
    """Reliability diagram per model (``sklearn.calibration.calibration_curve``, quantile bins).

    The legend holds the Brier score; ``trace.meta`` the bin values.
    """

    if n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, not {n_bins}")
    fig = new_figure(title=f"{title} ({n_bins} quantile bins)", x_title="Mean predicted probability",
                     y_title=f"Observed fraction with {OUTCOME}")
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="Perfect calibration",
                             line={"color": REFERENCE, "dash": "dot", "width": 1}))
    for i, (name, (y, p)) in enumerate(_checked(curves).items()):
        observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
        brier = float(brier_score_loss(y, p))
        fig.add_trace(go.Scatter(x=predicted, y=observed, mode="lines+markers", name=f"{name} (Brier {brier:.3f})",
                                 line={"color": color(i), "dash": dash(i), "width": 2}, marker={"size": 8},
                                 meta={"model": name, "brier": brier, "observed": observed.tolist(),
                                       "predicted": predicted.tolist()}, legendgroup=name,
                                 hovertemplate="Predicted %{x:.2f}<br>Observed %{y:.2f}<extra>" + name + "</extra>"))
    _unit_square(fig)
    return fig


def net_benefit(y_true: np.ndarray, y_score: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Net benefit of treating patients with ``y_score >= pt``: ``TP/n − FP/n · pt / (1 − pt)``.

    Args:
        y_true: ``(N,)`` 0/1.
        y_score: ``(N,)`` predicted probability.
        thresholds: ``(T,)`` threshold probabilities in [0, 1).

    Returns:
        ``(T,)`` net benefit (true positives per patient).
    """
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_score, dtype=float)
    pt = _check_thresholds(thresholds)
    treated = p[None, :] >= pt[:, None]
    n = len(y)
    tp = (treated & (y[None, :] == 1)).sum(axis=1) / n
    fp = (treated & (y[None, :] == 0)).sum(axis=1) / n
    return tp - fp * pt / (1.0 - pt)


def decision_curve_figure(curves: Curves, *, thresholds: np.ndarray = DEFAULT_THRESHOLDS,
                          title: str = "Decision curve") -> go.Figure:
    """Net benefit per model against the threshold probability, with treat-all and treat-none.

    Treat-all is ``prevalence − (1 − prevalence) · pt / (1 − pt)`` (one line per
    distinct prevalence when the models were scored on different patients),
    treat-none is 0.
    """
    pt = _check_thresholds(thresholds)
    checked = _checked(curves)
    fig = new_figure(title=title, x_title=f"Threshold probability of {OUTCOME}",
                     y_title="Net benefit (true positives per patient)")
    fig.add_trace(go.Scatter(x=pt, y=np.zeros_like(pt), mode="lines", name="Treat none",
                             line={"color": REFERENCE, "width": 1.5}))
    top = 0.0
    for label, prevalence in _prevalences(checked).items():
        treat_all = prevalence - (1.0 - prevalence) * pt / (1.0 - pt)
        fig.add_trace(go.Scatter(x=pt, y=treat_all, mode="lines", name=label.replace("Prevalence", "Treat all"),
                                 line={"color": NEUTRAL, "dash": "dash", "width": 1.5},
                                 meta={"prevalence": prevalence}))
        top = max(top, prevalence)
    for i, (name, (y, p)) in enumerate(checked.items()):
        benefit = net_benefit(y, p, pt)
        top = max(top, float(benefit.max()))
        fig.add_trace(go.Scatter(x=pt, y=benefit, mode="lines", name=name,
                                 line={"color": color(i), "dash": dash(i), "width": 2.5},
                                 meta={"model": name}, legendgroup=name,
                                 hovertemplate="Threshold %{x:.2f}<br>Net benefit %{y:.3f}<extra>" + name
                                 + "</extra>"))
    top = max(top, 0.05)
    fig.update_yaxes(range=[-0.25 * top, 1.1 * top])
    fig.update_xaxes(range=[float(pt.min()), float(pt.max())])
    return fig


def km_figure(time_months: np.ndarray, event: np.ndarray, group: Sequence[str], *, highlight: str | None = None,
              title: str = "Kaplan–Meier estimate of progression-free survival") -> tuple[go.Figure, float]:
    """Kaplan–Meier curves (lifelines) per group with 95 % bands and the log-rank p-value.

    Args:
        time_months: ``(N,)`` PFS or censoring time (months, >= 0).
        event: ``(N,)`` 1 = progressed, 0 = censored.
        group: ``(N,)`` group label per patient (e.g. predicted risk group).
        highlight: a group drawn thicker (the current patient's group); ignored when no patient is in it.
        title: the log-rank p-value is appended.

    Returns:
        The figure and the log-rank p-value (``logrank_test`` for two groups,
        ``multivariate_logrank_test`` for more; NaN for one group).
    """

    t = np.asarray(time_months, dtype=float).ravel()
    e = np.asarray(event).ravel()
    g = np.asarray([str(v) for v in group])
    if not (len(t) == len(e) == len(g)) or len(t) == 0:
        raise InputError(f"km_figure: time ({len(t)}), event ({len(e)}) and group ({len(g)}) need the same, "
                         "non-zero length")
    if not np.isfinite(t).all() or (t < 0).any():
        raise InputError("km_figure: PFS times must be finite and >= 0 months")
    if not np.isin(e, (0, 1)).all():
        raise InputError("km_figure: event must be 1 (progressed) or 0 (censored)")
    e = e.astype(int)
    names = sorted(set(g.tolist()))
    if len(names) == 2:
        a, b = (g == names[0]), (g == names[1])
        p_value = float(logrank_test(t[a], t[b], e[a], e[b]).p_value)
    elif len(names) > 2:
        p_value = float(multivariate_logrank_test(t, g, e).p_value)
    else:
        p_value = float("nan")
    fig = new_figure(title=f"{title} (log-rank {format_p(p_value)})", x_title="Time since baseline (months)",
                     y_title="Progression-free survival probability")
    for i, name in enumerate(names):
        rows = g == name
        fitter = KaplanMeierFitter(label=name).fit(t[rows], e[rows])
        timeline = fitter.survival_function_.index.to_numpy()
        survival = fitter.survival_function_[name].to_numpy()
        band = fitter.confidence_interval_
        lower, upper = band.iloc[:, 0].to_numpy(), band.iloc[:, 1].to_numpy()
        median = fitter.median_survival_time_
        median_text = f"median {median:.1f} mo" if np.isfinite(median) else "median not reached"
        width = 4.5 if name == highlight else 2.0
        line_color = color(i)
        fig.add_trace(go.Scatter(x=timeline, y=upper, mode="lines", line={"width": 0, "shape": "hv"},
                                 showlegend=False, hoverinfo="skip", legendgroup=name, name=f"{name} 95% CI upper"))
        fig.add_trace(go.Scatter(x=timeline, y=lower, mode="lines", line={"width": 0, "shape": "hv"}, fill="tonexty",
                                 fillcolor=rgba(line_color, 0.25 if name == highlight else 0.15), showlegend=False,
                                 hoverinfo="skip", legendgroup=name, name=f"{name} 95% CI lower"))
        fig.add_trace(go.Scatter(
            x=timeline, y=survival, mode="lines", line={"color": line_color, "width": width, "shape": "hv",
                                                        "dash": dash(i)},
            name=f"{name} (n={int(rows.sum())}, events={int(e[rows].sum())}, {median_text})", legendgroup=name,
            meta={"group": name, "highlight": name == highlight},
            hovertemplate="%{x:.1f} months<br>PFS %{y:.2f}<extra>" + name + "</extra>"))
    fig.add_vline(x=SHORT_PFS_MONTHS, line={"color": REFERENCE, "dash": "dot", "width": 1},
                  annotation_text=f"{SHORT_PFS_MONTHS:g} months", annotation_position="top right")
    fig.update_yaxes(range=[0, 1.02])
    fig.update_xaxes(rangemode="tozero")
    fig.update_layout(meta={"logrank_p": p_value})
    return fig, p_value


def cohort_percentile(cohort_probs: np.ndarray, patient_prob: float) -> float:
    """Percentage (0–100) of the cohort with a strictly lower predicted probability than the patient."""
    cohort = np.asarray(cohort_probs, dtype=float).ravel()
    cohort = cohort[np.isfinite(cohort)]
    if cohort.size == 0:
        return float("nan")
    return float(100.0 * np.mean(cohort < float(patient_prob)))


def risk_distribution_figure(cohort_probs: np.ndarray, patient_prob: float, *, threshold: float | None,
                             bins: int = 20) -> go.Figure:
    """Histogram of the training cohort's predicted probabilities with this patient marked.

    Args:
        cohort_probs: ``(N,)`` out-of-fold predicted probabilities of the training cohort.
        patient_prob: this patient's predicted probability.
        threshold: decision threshold (dashed line), or None.
        bins: number of equal bins on [0, 1].

    The title states the patient's percentile (:func:`cohort_percentile`).
    """
    cohort = np.asarray(cohort_probs, dtype=float).ravel()
    cohort = cohort[np.isfinite(cohort)]
    if cohort.size == 0:
        raise InputError("risk_distribution_figure: the cohort has no predicted probabilities")
    if not 0.0 <= float(patient_prob) <= 1.0:
        raise ValueError(f"patient_prob must lie in [0, 1], not {patient_prob}")
    percentile = cohort_percentile(cohort, patient_prob)
    fig = new_figure(
        title=(f"This patient: {patient_prob:.2f}, higher than {percentile:.0f}% of the "
               f"{cohort.size} training patients"),
        x_title=f"Predicted probability of {OUTCOME}", y_title="Training patients (n)", height=380)
    fig.add_trace(go.Histogram(x=cohort, xbins={"start": 0.0, "end": 1.0, "size": 1.0 / bins}, name="Training cohort",
                               marker={"color": rgba("#56B4E9", 0.8), "line": {"color": "#0072B2", "width": 1}},
                               hovertemplate="%{x}<br>%{y} patients<extra></extra>"))
    fig.add_vline(x=float(patient_prob), line={"color": "#D55E00", "width": 3},
                  annotation_text=f"This patient ({patient_prob:.2f})", annotation_position="top")
    if threshold is not None:
        fig.add_vline(x=float(threshold), line={"color": REFERENCE, "dash": "dash", "width": 1.5},
                      annotation_text=f"Threshold {threshold:.2f}", annotation_position="bottom right")
    fig.update_xaxes(range=[0, 1])
    fig.update_layout(bargap=0.05, showlegend=False, meta={"percentile": percentile})
    return fig


# ----------------------------------------------------------------------------- helpers


def paired_delta_figure(paired: Mapping[str, Mapping[str, Mapping[str, float | None]]], *,
                        title: str = "Paired ΔAUROC (model − comparator), 95 % bootstrap interval") -> go.Figure:
    """Forest plot of ``{model: {comparator: {"delta", "low", "high", ...}}}`` (``paired_delta_auroc`` of a
    benchmark's results.json): one marker per model and comparator at Δ, error bars to the interval's
    bounds, a line at Δ = 0. Pairs without a finite interval are left out. One trace per comparator,
    ``trace.meta`` = {"comparator", "delta", "low", "high"} of the points drawn."""

    comparators = list(dict.fromkeys(c for row in paired.values() for c in row))
    models = list(paired)
    fig = new_figure(title=title, x_title="ΔAUROC (model − comparator); > 0: the model ranks better",
                     y_title="Model", height=max(300, 120 + 45 * len(models) * max(1, len(comparators)) // 2))
    fig.add_vline(x=0.0, line={"color": REFERENCE, "dash": "dot", "width": 1})
    for i, comparator in enumerate(comparators):
        points = [(m, interval) for m in models if (interval := _interval(paired[m].get(comparator))) is not None]
        delta, low, high = ([p[1][k] for p in points] for k in range(3))
        fig.add_trace(go.Scatter(
            x=delta, y=[m for m, _ in points], mode="markers", name=f"vs {comparator}", orientation="h",
            marker={"color": color(i), "size": 9, "symbol": "diamond"},
            error_x={"type": "data", "symmetric": False, "array": np.subtract(high, delta),
                     "arrayminus": np.subtract(delta, low), "thickness": 1.5, "width": 4},
            meta={"comparator": comparator, "delta": delta, "low": low, "high": high},
            hovertemplate="%{y} vs " + comparator + ": Δ %{x:+.3f}<extra></extra>"))
    fig.update_layout(scattermode="group", legend={"x": 1.02, "y": 1.0, "xanchor": "left"})
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=models[::-1])
    return fig


def _interval(stat: Mapping[str, float | None] | None) -> tuple[float, float, float] | None:
    """(delta, low, high) of one pair, None when any is missing or not finite."""
    values = [(stat or {}).get(k) for k in ("delta", "low", "high")]
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return (finite[0], finite[1], finite[2]) if len(finite) == 3 else None


def _checked(curves: Curves) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Validated ``{name: (y 0/1 int, p float)}`` with unlabelled (NaN) rows dropped."""
    if not curves:
        raise ValueError("curves is empty: give at least one model name → (y_true, y_score)")
    out = {}
    for name, (y_true, y_score) in curves.items():
        y = np.asarray(y_true, dtype=float).ravel()
        p = np.asarray(y_score, dtype=float).ravel()
        if y.shape != p.shape:
            raise InputError(f"{name}: y_true has {y.size} values but y_score has {p.size}")
        keep = ~np.isnan(y)
        y, p = y[keep], p[keep]
        if not np.isfinite(p).all():
            raise InputError(f"{name}: y_score holds NaN or infinite values")
        if not np.isin(y, (0.0, 1.0)).all():
            raise InputError(f"{name}: y_true must be 1 ({OUTCOME}), 0 or NaN (no label)")
        if len(np.unique(y)) < 2:
            raise InputError(f"{name}: needs patients of both outcomes ({OUTCOME} and longer); "
                             f"got {y.size} labelled patients of one outcome")
        out[str(name)] = (y.astype(int), p)
    return out


def _prevalences(checked: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """One ``{"Prevalence": value}`` when all models share their labels, else one entry per model."""
    labels = [y for y, _ in checked.values()]
    if all(len(y) == len(labels[0]) and np.array_equal(y, labels[0]) for y in labels):
        return {"Prevalence": float(labels[0].mean())}
    return {f"Prevalence ({name})": float(y.mean()) for name, (y, _) in checked.items()}


def _check_thresholds(thresholds: np.ndarray) -> np.ndarray:
    pt = np.asarray(thresholds, dtype=float).ravel()
    if pt.size == 0 or not np.isfinite(pt).all() or (pt < 0).any() or (pt >= 1).any():
        raise ValueError("thresholds must be a non-empty array of probabilities in [0, 1)")
    return pt


def _unit_square(fig: go.Figure) -> None:
    fig.update_xaxes(range=[-0.01, 1.01], constrain="domain")
    fig.update_yaxes(range=[-0.01, 1.01], scaleanchor="x", scaleratio=1, constrain="domain")
    fig.update_layout(legend={"x": 1.02, "y": 1.0, "xanchor": "left"})
