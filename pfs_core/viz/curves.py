"""Performance and outcome figures: ROC, precision–recall, calibration, decision curve, Kaplan–Meier with
numbers at risk, a patient's predicted PFS curve, risk histogram.

The ``curves`` argument of the model-comparison figures maps a model name to
``(y_true, y_score)``: ``y_true`` ``(N,)`` 1 = PFS ≤ 12 months, 0 = longer (NaN =
no label, e.g. censored before 12 months: left out), ``y_score`` ``(N,)``
predicted probability of PFS ≤ 12 months. All metrics are scikit-learn's or
lifelines'; nothing is computed by hand except the net benefit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test
from plotly.subplots import make_subplots
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
from pfs_core.viz._style import (
    LEGEND_ROW_PX,
    LINE_PX,
    NEUTRAL,
    OUTCOME,
    REFERENCE,
    color,
    dash,
    format_p,
    legend_on_top,
    legend_rows,
    new_figure,
    rgba,
    style_axes,
    style_figure,
)

if TYPE_CHECKING:
    from pfs_core.outlook import Outlook

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]
DEFAULT_THRESHOLDS = np.linspace(0.05, 0.8, 76)

__all__ = ["roc_figure", "pr_figure", "calibration_figure", "decision_curve_figure", "net_benefit", "km_figure",
           "numbers_at_risk", "patient_pfs_figure", "risk_distribution_figure", "cohort_percentile",
           "paired_delta_figure"]


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


#: Months of the numbers-at-risk row under a Kaplan–Meier plot (and of its ticks).
AT_RISK_MONTHS: tuple[float, ...] = (0, 6, 12, 18, 24, 30, 36)


def numbers_at_risk(time_months: np.ndarray, months: Sequence[float]) -> list[int]:
    """Patients still followed and free of progression at each of ``months`` (PFS or censoring time >= month),
    the convention of lifelines' ``add_at_risk_counts``."""
    t = np.asarray(time_months, dtype=float).ravel()
    return [int(np.sum(t >= m)) for m in months]


def km_figure(time_months: np.ndarray, event: np.ndarray, group: Sequence[str], *, highlight: str | None = None,
              title: str = "Progression-free survival by group",
              at_risk_months: Sequence[float] = AT_RISK_MONTHS) -> tuple[go.Figure, float]:
    """Kaplan–Meier curves (lifelines) per group with 95 % bands, numbers at risk and the log-rank p-value.

    Args:
        time_months: ``(N,)`` PFS or censoring time (months, >= 0).
        event: ``(N,)`` 1 = progressed, 0 = censored.
        group: ``(N,)`` group label per patient (e.g. predicted risk group).
        highlight: a group drawn thicker (the current patient's group); ignored when no patient is in it.
        title: the log-rank p-value is added on a second, smaller line.
        at_risk_months: months of the numbers-at-risk row under the plot (sorted, >= 0); the x axis shows
            0 … the last of them (the curves hold the whole follow-up: zoom out to see the rest).

    The legend is horizontal above the plot so that it takes none of the plot's width; the numbers at risk
    are a second subplot under the time axis, one text row per group in the group's colour
    (``trace.meta["at_risk"]``, and ``layout.meta["at_risk"]`` = {group: counts}).

    Returns:
        The figure and the log-rank p-value (``logrank_test`` for two groups,
        ``multivariate_logrank_test`` for more; NaN for one group).
    """

    t, e, g = _checked_survival(time_months, event, group)
    months = [float(m) for m in at_risk_months]
    if not months or any(m < 0 for m in months) or months != sorted(months):
        raise ValueError(f"at_risk_months must be sorted months >= 0, not {list(at_risk_months)}")
    names = sorted(set(g.tolist()))
    p_value = _logrank(t, e, g, names)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=False)
    legend = []
    at_risk: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        rows = g == name
        legend.append(_km_group(fig, t[rows], e[rows], name=name, index=i, highlight=name == highlight))
        at_risk[name] = numbers_at_risk(t[rows], months)
        fig.add_trace(go.Scatter(
            x=months, y=[name] * len(months), mode="text", text=[str(n) for n in at_risk[name]],
            textfont={"color": color(i), "size": 12}, showlegend=False, hoverinfo="skip", cliponaxis=False,
            name=f"{name} at risk", meta={"at_risk": {"group": name, "months": months, "n": at_risk[name]}}),
            row=2, col=1)
    rows_on_top = legend_rows(legend)
    style_figure(fig, title=f"{title}<br><sup>log-rank {format_p(p_value)}</sup>",
                 height=_km_height(len(names), rows_on_top), legend_rows_on_top=rows_on_top)
    legend_on_top(fig)
    _km_axes(fig, months, n_groups=len(names), rows_on_top=rows_on_top)
    fig.update_layout(meta={"logrank_p": p_value, "at_risk": at_risk, "at_risk_months": months})
    return fig, p_value


def _checked_survival(time_months: np.ndarray, event: np.ndarray,
                      group: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    return t, e.astype(int), g


def _logrank(t: np.ndarray, e: np.ndarray, g: np.ndarray, names: list[str]) -> float:
    if len(names) == 2:
        a, b = (g == names[0]), (g == names[1])
        return float(logrank_test(t[a], t[b], e[a], e[b]).p_value)
    if len(names) > 2:
        return float(multivariate_logrank_test(t, g, e).p_value)
    return float("nan")


def _km_group(fig: go.Figure, t: np.ndarray, e: np.ndarray, *, name: str, index: int, highlight: bool) -> str:
    """One group's band and curve on row 1; returns its legend name."""
    fitter = KaplanMeierFitter(label=name).fit(t, e)
    timeline = fitter.survival_function_.index.to_numpy()
    survival = fitter.survival_function_[name].to_numpy()
    band = fitter.confidence_interval_
    lower, upper = band.iloc[:, 0].to_numpy(), band.iloc[:, 1].to_numpy()
    median = fitter.median_survival_time_
    median_text = f"median {median:.1f} mo" if np.isfinite(median) else "median not reached"
    line_color = color(index)
    fig.add_trace(go.Scatter(x=timeline, y=upper, mode="lines", line={"width": 0, "shape": "hv"},
                             showlegend=False, hoverinfo="skip", legendgroup=name, name=f"{name} 95% CI upper"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=timeline, y=lower, mode="lines", line={"width": 0, "shape": "hv"}, fill="tonexty",
                             fillcolor=rgba(line_color, 0.25 if highlight else 0.15), showlegend=False,
                             hoverinfo="skip", legendgroup=name, name=f"{name} 95% CI lower"), row=1, col=1)
    legend = f"{name}: n={len(t)}, {median_text}"
    fig.add_trace(go.Scatter(
        x=timeline, y=survival, mode="lines", line={"color": line_color, "width": 4.5 if highlight else 2.0,
                                                    "shape": "hv", "dash": dash(index)},
        name=legend, legendgroup=name, meta={"group": name, "highlight": highlight, "n": len(t),
                                             "events": int(e.sum()), "median_months": float(median)},
        hovertemplate="%{x:.1f} months<br>PFS %{y:.2f}<extra>" + f"{name} ({int(e.sum())} events)</extra>"),
        row=1, col=1)
    return legend


KM_PLOT_PX = 300
KM_GAP_PX = 62  # tick labels and title of the time axis between the plot and the numbers at risk
KM_ROW_PX = 20  # one group's row of numbers at risk


def _km_height(n_groups: int, rows_on_top: int) -> int:
    return 24 + LINE_PX * 2 + LEGEND_ROW_PX * rows_on_top + KM_PLOT_PX + KM_GAP_PX + _table_px(n_groups) + 30


def _table_px(n_groups: int) -> int:
    return 12 + KM_ROW_PX * n_groups


def _km_axes(fig: go.Figure, months: list[float], *, n_groups: int, rows_on_top: int) -> None:
    """Plot on top, the numbers-at-risk table under the time axis, both on one month scale."""
    paper = KM_PLOT_PX + KM_GAP_PX + _table_px(n_groups)
    table = _table_px(n_groups) / paper
    span = [-0.02 * months[-1] - 0.5, months[-1] * 1.03 + 0.5]
    style_axes(fig, x_title="Months since baseline", y_title="PFS probability", row=1, col=1)
    fig.update_xaxes(range=span, tickvals=months, row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], domain=[1.0 - KM_PLOT_PX / paper, 1.0], row=1, col=1)
    fig.update_xaxes(matches="x", range=span, showticklabels=False, showgrid=False, showline=False,
                     zeroline=False, row=2, col=1)
    fig.update_yaxes(domain=[0.0, table], type="category", range=[n_groups - 0.5, -0.5], showgrid=False,
                     showline=False,
                     zeroline=False, automargin=True, title_text="At risk", title_font={"size": 12},
                     tickfont={"size": 12}, row=2, col=1)
    fig.add_vline(x=SHORT_PFS_MONTHS, line={"color": REFERENCE, "dash": "dot", "width": 1}, row=1, col=1,
                  annotation_text=f"{SHORT_PFS_MONTHS:g} mo", annotation_position="top right")
    fig.update_layout(margin={"b": 20})


def patient_pfs_figure(outlook: Outlook, *, cohort: tuple[np.ndarray, np.ndarray] | None = None,
                       title: str = "This patient's predicted progression-free survival") -> go.Figure:
    """The patient's predicted PFS curve (:func:`pfs_core.outlook.patient_outlook`) with its 95 % band, marked
    and labelled at the outlook's months, and optionally the training cohort's Kaplan–Meier curve in grey.

    Args:
        outlook: ``times`` ``(T,)`` months, ``survival`` ``(T,)``, optional ``lower``/``upper`` ``(T,)``, and
            ``at`` {month: probability of progression or death by then}.
        cohort: ``(time_months (N,), event (N,))`` of the training cohort for the reference curve, or None.
        title: a second line says what the band and the grey curve are.

    ``trace.meta`` of the markers: {"months", "pfs"} (PFS probability at each month).
    """
    times = np.asarray(outlook.times, dtype=float)
    survival = np.asarray(outlook.survival, dtype=float)
    subtitle = "Cox model on the classifier's score"
    subtitle += "; band: 95 % bootstrap" if outlook.lower is not None else ""
    fig = new_figure(title=f"{title}<br><sup>{subtitle}</sup>", x_title="Months since baseline",
                     y_title="PFS probability", height=420)
    if cohort is not None:
        t, e, _ = _checked_survival(cohort[0], cohort[1], ["cohort"] * len(np.ravel(cohort[0])))
        km = KaplanMeierFitter(label="cohort").fit(t, e)
        fig.add_trace(go.Scatter(x=km.survival_function_.index, y=km.survival_function_["cohort"], mode="lines",
                                 line={"color": "#A0A0A0", "width": 1.5, "shape": "hv"},
                                 name="Training cohort (Kaplan–Meier)", meta={"reference": True, "n": len(t)},
                                 hovertemplate="%{x:.1f} months<br>PFS %{y:.2f}<extra>training cohort</extra>"))
    if outlook.lower is not None and outlook.upper is not None:
        fig.add_trace(go.Scatter(x=times, y=outlook.upper, mode="lines", line={"width": 0, "shape": "hv"},
                                 showlegend=False, hoverinfo="skip", name="95% band upper"))
        fig.add_trace(go.Scatter(x=times, y=outlook.lower, mode="lines", line={"width": 0, "shape": "hv"},
                                 fill="tonexty", fillcolor=rgba(PATIENT, 0.2), name="95 % band", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=times, y=survival, mode="lines", line={"color": PATIENT, "width": 3, "shape": "hv"},
                             name="This patient",
                             hovertemplate="%{x:.1f} months<br>PFS %{y:.2f}<extra>this patient</extra>"))
    _outlook_markers(fig, outlook)
    fig.update_xaxes(range=[0, float(times[-1]) + 0.5], tickvals=list(AT_RISK_MONTHS))
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    # Inside the plot, bottom left, where a PFS curve (falling from the top left) never is: a legend above the
    # plot wraps onto one row per entry in a half-page chart and ran into the subtitle.
    fig.update_layout(legend={"orientation": "v", "x": 0.02, "xanchor": "left", "y": 0.02, "yanchor": "bottom",
                              "bgcolor": "rgba(255, 255, 255, 0.8)"})
    return fig


PATIENT = "#D55E00"  # the patient's curve: the colour that marks the patient elsewhere (risk histogram)


def _outlook_markers(fig: go.Figure, outlook: Outlook) -> None:
    months = [m for m, v in outlook.at.items() if np.isfinite(v)]
    pfs = [1.0 - outlook.at[m] for m in months]
    labels = [f"{round(100 * p)}%" for p in pfs]
    hover = [f"{m} months: PFS {p:.2f}; {round(100 * (1 - p))} of 100 progressed or died" for m, p in
             zip(months, pfs, strict=True)]
    fig.add_trace(go.Scatter(x=months, y=pfs, mode="markers+text", text=labels, textposition="top right",
                             marker={"color": PATIENT, "size": 9, "line": {"color": "white", "width": 1.5}},
                             textfont={"color": PATIENT, "size": 13}, name="PFS at " + ", ".join(
                                 str(m) for m in months) + " months", hovertext=hover, hoverinfo="text",
                             showlegend=False, cliponaxis=False, meta={"months": months, "pfs": pfs}))


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
