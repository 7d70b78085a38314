"""Figures of an external validation (:mod:`pfs_core.results.validation`): ROC, calibration, decision curve.

Each draws with the model-comparison figure of :mod:`pfs_core.viz.curves` and adds what the validation
knows: the bootstrap interval in the title, the fitted calibration line, the net-benefit band. Titles are
short and the legend sits below the plot, so the figures fit a half-width column at 1280 px.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from pfs_core.viz._style import LEGEND_ROW_PX, color, legend_rows, rgba
from pfs_core.viz.curves import calibration_figure, decision_curve_figure, roc_figure

__all__ = ["validation_roc_figure", "validation_calibration_figure", "validation_decision_figure",
           "legend_below"]


def legend_below(fig: go.Figure, *, height: int = 520, width_px: int = 360) -> go.Figure:
    """Legend under the whole chart (horizontal, at the bottom of the figure, not of the plot area: a square plot
    area shrinks in a narrow column and a legend hung below it ran into the x-axis title), with a bottom margin
    for as many legend rows as ``width_px`` (the narrowest expected chart) needs."""
    names = [t.name for t in fig.data if t.name and t.showlegend is not False]
    rows = legend_rows(names, width_px=width_px)
    bottom = 70 + LEGEND_ROW_PX * rows
    fig.update_layout(height=height + LEGEND_ROW_PX * max(0, rows - 2),
                      legend={"orientation": "h", "x": 0.0, "xanchor": "left", "y": 0.0, "yanchor": "bottom",
                              "yref": "container"},
                      margin={"l": 70, "r": 20, "t": 60, "b": bottom}, title={"font": {"size": 15}})
    return fig


def _interval_text(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.2f} ({low:.2f}–{high:.2f})" if np.isfinite(low) and np.isfinite(high) else f"{value:.2f}"


def validation_roc_figure(y: np.ndarray, p: np.ndarray, *, model: str,
                          auroc: tuple[float, float, float]) -> go.Figure:
    """ROC curve of the labelled patients; title: AUROC (95 % interval)."""
    fig = roc_figure({model: (y, p)}, title=f"ROC · AUROC {_interval_text(*auroc)}")
    return legend_below(fig)


def validation_calibration_figure(y: np.ndarray, p: np.ndarray, *, model: str, intercept: float, slope: float,
                                  line_intercept: float, n_bins: int | None = None) -> go.Figure:
    """Reliability diagram (quantile bins; default about 10 patients a bin, 2 to 10 bins) with the fitted
    logistic calibration line ``expit(a + b · logit(p))`` (``line_intercept`` a and ``slope`` b of the slope
    fit, drawn over the range of the predictions); the legend names the slope and the calibration-in-the-large
    ``intercept``."""
    bins = n_bins or int(np.clip(len(y) // 10, 2, 10))
    fig = calibration_figure({model: (y, p)}, n_bins=bins, title="Calibration")
    if np.isfinite(slope) and np.isfinite(line_intercept):
        grid = np.linspace(max(float(np.min(p)), 0.01), min(float(np.max(p)), 0.99), 60)
        fitted = 1.0 / (1.0 + np.exp(-(line_intercept + slope * np.log(grid / (1 - grid)))))
        fig.add_trace(go.Scatter(x=grid, y=fitted, mode="lines", name=f"Fit: slope {slope:.2f}, "
                                 f"intercept {intercept:+.2f}", line={"color": color(1), "width": 1.5},
                                 meta={"slope": slope, "intercept": intercept}))
    return legend_below(fig)


def validation_decision_figure(y: np.ndarray, p: np.ndarray, *, model: str,
                               band: Mapping[str, Sequence[float]]) -> go.Figure:
    """Decision curve (net benefit, treat all, treat none) with the bootstrap 95 % band of the model."""
    thresholds = np.asarray(band.get("threshold", []), dtype=float)
    fig = decision_curve_figure({model: (y, p)}, thresholds=thresholds, title="Decision curve") \
        if thresholds.size else decision_curve_figure({model: (y, p)}, title="Decision curve")
    low, high = np.asarray(band.get("low", []), float), np.asarray(band.get("high", []), float)
    if thresholds.size and np.isfinite(low).all() and np.isfinite(high).all():
        fig.add_trace(go.Scatter(x=np.concatenate([thresholds, thresholds[::-1]]),
                                 y=np.concatenate([high, low[::-1]]), fill="toself", mode="lines",
                                 line={"width": 0}, fillcolor=rgba(color(0), 0.15), name="95 % bootstrap band",
                                 hoverinfo="skip"))
        top = max(float(np.max(high)), 0.05)
        fig.update_yaxes(range=[-0.25 * top, 1.1 * top])
    return legend_below(fig)
