"""Explanation figures: lab SHAP bars of one patient, modality contributions, cohort modality importance.

Colour code everywhere: vermillion = pushes towards PFS ≤ 12 months (raises the
risk), blue = pushes towards longer PFS (lowers it). Imputed values are hatched
and labelled "(imputed)".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from pfs_core import schema
from pfs_core.viz._style import (
    LEGEND_ROW_PX,
    LINE_PX,
    LOWERS_RISK,
    NEUTRAL,
    RAISES_RISK,
    format_value,
    legend_on_top,
    line_count,
    new_figure,
    wrap_text,
)

OUTPUT_SPACES = ("logit", "probability")
MODALITY_LABELS = {"lab": "Labs", "labs": "Labs", "pet": "PET", "ct": "CT"}

__all__ = ["shap_bar_figure", "modality_bar_figure", "modality_importance_figure", "feature_label"]


def feature_label(name: str, value: float | int | str | None, unit: str) -> str:
    """``"Chromogranin A = 850 ng/mL"``: the schema's label when ``name`` is a known column."""
    label = schema.label(name)
    text = format_value(value)
    show_unit = unit and text != "missing" and not isinstance(value, str)
    return f"{label} = {text} {unit}" if show_unit else f"{label} = {text}"


def shap_bar_figure(names: Sequence[str], shap_values: Sequence[float] | np.ndarray,
                    feature_values: Sequence[float | int | str | None], units: Sequence[str], *,
                    base_value: float, output_space: str = "logit", max_features: int = 15,
                    imputed: Sequence[bool] | np.ndarray | None = None,
                    title: str = "Why this prediction: laboratory and clinical values") -> go.Figure:
    """Signed horizontal SHAP bars of one patient, largest |value| on top.

    Args:
        names: ``(F,)`` feature names (schema column names get their labels).
        shap_values: ``(F,)`` SHAP values in ``output_space`` units.
        feature_values: ``(F,)`` the patient's values (numbers, category strings or None).
        units: ``(F,)`` unit per feature (``""`` for none).
        base_value: expected model output over the background (``output_space`` units).
        output_space: ``"logit"`` (log-odds) or ``"probability"``.
        max_features: bars shown; the rest are summed into one "N other features" bar,
            so ``base_value + sum(bars)`` is still the model output.
        imputed: ``(F,)`` True where the value was missing and imputed by the model.

    ``trace.meta`` holds the plotted values, top bar first.
    """
    if output_space not in OUTPUT_SPACES:
        raise ValueError(f"output_space must be one of {OUTPUT_SPACES}, not {output_space!r}")
    if max_features < 1:
        raise ValueError(f"max_features must be at least 1, not {max_features}")
    values = np.asarray(shap_values, dtype=float).ravel()
    flags = np.zeros(values.size, bool) if imputed is None else np.asarray(imputed, dtype=bool).ravel()
    lengths = {len(names), values.size, len(feature_values), len(units), flags.size}
    if len(lengths) != 1:
        raise ValueError(f"names, shap_values, feature_values, units and imputed need one length each; got "
                         f"{len(names)}, {values.size}, {len(feature_values)}, {len(units)}, {flags.size}")
    if not np.isfinite(values).all() or not math.isfinite(base_value):
        raise ValueError("shap_values and base_value must be finite")
    order = np.argsort(-np.abs(values), kind="stable")
    shown, rest = order[:max_features], order[max_features:]
    labels = [feature_label(names[i], feature_values[i], units[i]) + (" (imputed)" if flags[i] else "")
              for i in shown]
    bars = values[shown].tolist()
    hatch = ["/" if flags[i] else "" for i in shown]
    if rest.size:
        labels.append(f"{rest.size} other feature{'s' if rest.size > 1 else ''}")
        bars.append(float(values[rest].sum()))
        hatch.append(".")
    output = base_value + float(values.sum())
    unit = "log-odds" if output_space == "logit" else "probability"
    summary = f"base {base_value:.3f} → output {output:.3f} ({unit})"
    if output_space == "logit":
        summary += f", probability {1.0 / (1.0 + math.exp(-output)):.2f}"
    fig = new_figure(title=f"{title}<br><sup>{summary}</sup>", x_title=f"SHAP value ({unit})",
                     y_title="", height=_bar_height(title, len(bars), per_bar=_per_bar(labels), minimum=300))
    colors = [RAISES_RISK if v > 0 else LOWERS_RISK for v in bars]
    fig.add_trace(go.Bar(
        x=bars, y=labels, orientation="h", name="SHAP value", showlegend=False, marker={
            "color": colors, "pattern": {"shape": hatch, "fillmode": "overlay", "fgcolor": "white", "size": 6}},
        text=[f"{v:+.3f}" for v in bars], textposition="outside", cliponaxis=False,
        meta={"values": bars, "labels": labels, "colors": colors, "base_value": base_value, "output": output,
              "output_space": output_space},
        hovertemplate="%{y}<br>%{x:+.4f} " + unit + "<extra></extra>"))
    _legend_keys(fig, labels=("raises the risk", "lowers the risk"))
    _category_labels(fig, labels)
    fig.add_vline(x=0, line={"color": "#444", "width": 1})
    _pad_x(fig, bars)
    return fig


def modality_bar_figure(contributions: Mapping[str, float], *, output_space: str = "probability",
                        title: str = "Contribution of each modality") -> go.Figure:
    """Signed contribution of labs, PET and CT (exact Shapley values) to this prediction.

    Args:
        contributions: modality (``"lab"``/``"labs"``, ``"pet"``, ``"ct"`` or any name) → contribution
            in ``output_space`` units.
        output_space: ``"probability"`` or ``"logit"``.
    """
    if output_space not in OUTPUT_SPACES:
        raise ValueError(f"output_space must be one of {OUTPUT_SPACES}, not {output_space!r}")
    if not contributions:
        raise ValueError("contributions is empty")
    labels = [MODALITY_LABELS.get(k.lower(), k) for k in contributions]
    values = [float(v) for v in contributions.values()]
    unit = "log-odds" if output_space == "logit" else "probability"
    fig = new_figure(title=title, x_title=f"Contribution ({unit})", y_title="",
                     height=_bar_height(title, len(values), per_bar=44, minimum=260))
    colors = [RAISES_RISK if v > 0 else LOWERS_RISK for v in values]
    fig.add_trace(go.Bar(x=values, y=labels, orientation="h", name="Contribution", showlegend=False,
                         marker={"color": colors},
                         text=[f"{v:+.3f}" for v in values], textposition="outside", cliponaxis=False,
                         meta={"values": values, "labels": labels, "colors": colors},
                         hovertemplate="%{y}: %{x:+.4f} " + unit + "<extra></extra>"))
    _legend_keys(fig, labels=("raises the risk", "lowers the risk"))
    _category_labels(fig, labels)
    fig.add_vline(x=0, line={"color": "#444", "width": 1})
    _pad_x(fig, values)
    return fig


def modality_importance_figure(mean_abs: Mapping[str, float], *,
                               title: str = "Modality importance in the cohort",
                               output_space: str = "probability") -> go.Figure:
    """Cohort-level mean |contribution| per modality, largest on top (unsigned, one neutral colour)."""
    if not mean_abs:
        raise ValueError("mean_abs is empty")
    if any(float(v) < 0 for v in mean_abs.values()):
        raise ValueError("mean_abs holds mean absolute values; negative numbers are not allowed")
    items = sorted(mean_abs.items(), key=lambda kv: -float(kv[1]))
    labels = [MODALITY_LABELS.get(k.lower(), k) for k, _ in items]
    values = [float(v) for _, v in items]
    unit = "log-odds" if output_space == "logit" else "probability"
    fig = new_figure(title=title, x_title=f"Mean |contribution| ({unit})", y_title="",
                     height=_bar_height(title, len(values), per_bar=44, minimum=240))
    fig.add_trace(go.Bar(x=values, y=labels, orientation="h", name="Mean |contribution|",
                         marker={"color": NEUTRAL}, text=[f"{v:.3f}" for v in values], textposition="outside",
                         cliponaxis=False, meta={"values": values, "labels": labels},
                         hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    _category_labels(fig, labels)
    fig.update_xaxes(rangemode="tozero")
    fig.update_layout(showlegend=False)
    _pad_x(fig, values)
    return fig


#: Bar labels longer than this wrap onto a second line, so the plot keeps most of a ~600 px chart's width.
LABEL_CHARS = 30


def _per_bar(labels: Sequence[str]) -> int:
    """Pixels a bar needs so that its wrapped label (up to 3 lines at :data:`LABEL_CHARS`) does not run into the
    next bar's: 26 px for one line, 15 px more for each further line."""
    lines = max((line_count(wrap_text(label, LABEL_CHARS)) for label in labels), default=1)
    return 26 + 15 * (lines - 1)


def _bar_height(title: str, n_bars: int, *, per_bar: int, minimum: int) -> int:
    """Figure height (px): the title's lines, the legend row, the x-axis title, and ``per_bar`` px per bar."""
    return max(minimum, 24 + LINE_PX * (line_count(wrap_text(title)) + 1) + LEGEND_ROW_PX + 80 + per_bar * n_bars)


def _category_labels(fig: go.Figure, labels: Sequence[str]) -> None:
    """Every bar labelled (no label skipped when the bars are dense), long labels wrapped, first bar on top;
    ``automargin`` sizes the left margin to the longest label."""
    fig.update_yaxes(autorange="reversed", automargin=True, tickmode="array", tickvals=list(labels),
                     ticktext=[wrap_text(label, LABEL_CHARS) for label in labels])


def _legend_keys(fig: go.Figure, *, labels: tuple[str, str]) -> None:
    """Two legend-only entries that explain the bar colours, in one row between the title and the plot."""
    for label, key_color in zip(labels, (RAISES_RISK, LOWERS_RISK), strict=True):
        fig.add_trace(go.Bar(x=[None], y=[None], orientation="h", name=label, marker={"color": key_color},
                             hoverinfo="skip", showlegend=True))
    legend_on_top(fig)
    fig.update_layout(barmode="overlay", margin={"t": fig.layout.margin.t + LEGEND_ROW_PX})


def _pad_x(fig: go.Figure, values: Sequence[float]) -> None:
    """Room for the outside text labels."""
    low, high = min(0.0, *values), max(0.0, *values)
    span = max(high - low, 1e-6)
    # a third of the span on each side that has bars: "+0.069" beside the longest bar of a 300 px plot
    fig.update_xaxes(range=[low - 0.35 * span if low < 0 else -0.02 * span, high + 0.35 * span if high > 0 else
                            0.02 * span])
