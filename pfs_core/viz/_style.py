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


#: Characters per title line for a chart about 600 px wide (half of a 1280 px page); longer titles wrap.
TITLE_CHARS = 58
#: Characters per line of an axis title before it wraps.
AXIS_TITLE_CHARS = 48
TITLE_SIZE = 16
LINE_PX = 22  # height of one title line (px)
LEGEND_ROW_PX = 30  # height of one row of a horizontal legend (px)


def wrap_text(text: str, width: int = TITLE_CHARS) -> str:
    """``text`` with ``<br>`` between words so that no line exceeds ``width`` characters.

    Existing ``<br>`` breaks are kept; a ``<sup>…</sup>`` line (a subtitle, drawn smaller) may be 1.4 times
    as long and each of its lines keeps the tags.
    """
    out: list[str] = []
    for line in text.split("<br>"):
        sup = line.startswith("<sup>") and line.endswith("</sup>")
        inner = line[5:-6] if sup else line
        pieces = _wrap_words(inner, int(width * 1.4) if sup else width)
        out.extend(f"<sup>{p}</sup>" for p in pieces) if sup else out.extend(pieces)
    return "<br>".join(out)


def _wrap_words(text: str, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, current]


def line_count(text: str) -> int:
    """Lines of a (wrapped) title: ``<br>`` count + 1."""
    return text.count("<br>") + 1


def legend_rows(names: list[str], *, width_px: int = 460, char_px: float = 6.2) -> int:
    """Rows a horizontal legend of ``names`` takes in ``width_px`` (≈ 6.2 px a character at 13 px, 40 px of
    symbol and gap per item). Like plotly: one row when all fit, else a grid whose columns are as wide as the
    widest item. An estimate, generous rather than tight."""
    items = [40.0 + char_px * len(name) for name in names]
    if not items or sum(items) <= width_px:
        return 1
    columns = max(1, int(width_px // max(items)))
    return -(-len(items) // columns)


def style_figure(fig: go.Figure, *, title: str, height: int, legend_rows_on_top: int = 0) -> str:
    """The house layout (white template, system fonts, wrapped title, margins that fit it) on ``fig``.

    ``legend_rows_on_top``: a horizontal legend of that many rows sits between the title and the plot
    (:func:`legend_on_top`); the top margin makes room for it. Returns the wrapped title.
    """
    wrapped = wrap_text(title)
    lines = line_count(wrapped)
    top = 24 + LINE_PX * lines + LEGEND_ROW_PX * legend_rows_on_top
    # plotly anchors a multi-line title's first line at y: each further line needs that much more padding
    pad_top = 10 + 20 * (lines - 1)
    fig.update_layout(
        template="plotly_white", height=height, font={"family": FONT, "size": 13},
        title={"text": wrapped, "x": 0.0, "xanchor": "left", "xref": "container", "y": 1.0, "yanchor": "top",
               "yref": "container", "pad": {"t": pad_top, "l": 10}, "font": {"size": TITLE_SIZE}},
        margin={"l": 70, "r": 20, "t": top, "b": 60, "autoexpand": True},
        legend={"bgcolor": "rgba(255, 255, 255, 0.8)"},
    )
    return wrapped


def legend_on_top(fig: go.Figure) -> None:
    """A horizontal legend just above the plot, aligned with its left edge (the plot keeps its full width; a
    legend referenced to the whole chart would widen the margins instead). The caller leaves room for it in the
    top margin (:func:`legend_rows`)."""
    fig.update_layout(legend={"orientation": "h", "x": 0.0, "xref": "paper", "xanchor": "left", "y": 1.0,
                              "yanchor": "bottom", "yref": "paper", "bgcolor": "rgba(255, 255, 255, 0)"})


def axis_title(text: str) -> str:
    """An axis title wrapped at :data:`AXIS_TITLE_CHARS`."""
    return wrap_text(text, AXIS_TITLE_CHARS)


def new_figure(*, title: str, x_title: str, y_title: str, height: int = 460) -> go.Figure:
    """Empty figure with the house layout (:func:`style_figure`; legend on the right unless moved).

    Axis titles wrap at :data:`AXIS_TITLE_CHARS` and every axis has ``automargin`` so that tick labels and
    titles are never cut off.
    """
    fig = go.Figure()
    style_figure(fig, title=title, height=height)
    style_axes(fig, x_title=x_title, y_title=y_title)
    return fig


def style_axes(fig: go.Figure, *, x_title: str | None, y_title: str | None, **selector: int) -> None:
    """Framed axes with automargin; titles wrapped (None: left as they are). ``selector``: ``row``/``col``."""
    common = {"showline": True, "linecolor": "#444", "mirror": True, "zeroline": False, "automargin": True}
    fig.update_xaxes(**common, **({"title_text": axis_title(x_title)} if x_title is not None else {}), **selector)
    fig.update_yaxes(**common, **({"title_text": axis_title(y_title)} if y_title is not None else {}), **selector)


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
