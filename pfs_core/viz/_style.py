"""Shared look of every figure: colour-blind-safe palette (Okabe & Ito), layout, number formats.

Figures reference no external resource: no web fonts, no images by URL, no
MathJax (titles avoid ``$...$``), so they render offline.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

# Okabe & Ito (2008) colour-blind-safe palette; yellow last (weak on white).
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000",
                            "#F0E442")
DASHES: tuple[str, ...] = ("solid", "dash", "dot", "dashdot")
RAISES_RISK = "#D55E00"  # vermillion: pushes towards PFS <= 12 months
LOWERS_RISK = "#0072B2"  # blue: pushes towards PFS > 12 months
NEUTRAL = "#7F7F7F"
REFERENCE = "#555555"  # chance / perfect-calibration / treat-none lines
FONT = "Arial, Helvetica, sans-serif"
OUTCOME = "PFS ≤ 12 months"


def color(index: int) -> str:
    """The ``index``-th palette colour (cycles)."""
    return PALETTE[index % len(PALETTE)]


def dash(index: int) -> str:
    """Line dash that separates series once the palette has cycled."""
    return DASHES[(index // len(PALETTE)) % len(DASHES)]


def rgba(hex_color: str, alpha: float) -> str:
    """``'#RRGGBB'`` → ``'rgba(r, g, b, alpha)'``."""
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha:g})"


def new_figure(*, title: str, x_title: str, y_title: str, height: int = 460) -> go.Figure:
    """Empty figure with the house layout (white template, system fonts, legend on the right)."""
    fig = go.Figure()
    fig.update_layout(
        template="plotly_white", title={"text": title, "x": 0.0, "xanchor": "left"}, height=height,
        font={"family": FONT, "size": 13}, margin={"l": 70, "r": 20, "t": 60, "b": 60},
        legend={"bgcolor": "rgba(255, 255, 255, 0.8)"},
    )
    fig.update_xaxes(title_text=x_title, showline=True, linecolor="#444", mirror=True, zeroline=False)
    fig.update_yaxes(title_text=y_title, showline=True, linecolor="#444", mirror=True, zeroline=False)
    return fig


def format_p(p: float) -> str:
    """A p-value for a title: ``'p = 0.032'``, ``'p < 0.001'``, ``'p = n/a'``."""
    if p is None or not math.isfinite(p):
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.995 else "p = 1.00"


def format_value(value: float | int | str | None) -> str:
    """A measured value for a label: 3-4 significant digits, thousands separated, ``'missing'`` for None/NaN."""
    if value is None:
        return "missing"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    number = float(value)
    if not math.isfinite(number):
        return "missing"
    magnitude = abs(number)
    if magnitude >= 1000:
        return f"{number:,.0f}"
    if magnitude >= 100 or number == int(number):
        return f"{number:.0f}"
    if magnitude >= 10:
        return f"{number:.1f}".rstrip("0").rstrip(".")
    return f"{number:.3g}"
