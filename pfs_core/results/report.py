"""Tumour-board report: one self-contained HTML file (inputs, risk, figures, model identity, disclaimer).

The HTML embeds plotly.js once and every figure inline, so it opens offline and
can be mailed or archived as a single file. Nothing is written to disk here; the
caller decides where the bytes go.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pfs_core import DISCLAIMER, __version__, schema

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from pfs_core.explain import Explanation


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;color:#222}
.disclaimer{background:#fff3cd;border:1px solid #e0c36a;padding:.8em 1em;border-radius:6px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
.risk{font-size:1.6em;font-weight:600}.muted{color:#666;font-size:.9em}
"""


def _row(cells: Sequence[Any], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"


def _labs_table(labs: Mapping[str, Any], imputed: Sequence[str]) -> str:
    rows = [_row(["field", "value", "unit", "note"], "th")]
    for name in schema.LAB_COLUMNS:
        value = labs.get(name)
        unit = schema.NUMERIC_BY_NAME[name].unit if name in schema.NUMERIC_BY_NAME else ""
        note = "missing: imputed (training median)" if name in imputed else ""
        rows.append(_row([name, "—" if value is None else value, unit, note]))
    return "<table>" + "".join(rows) + "</table>"


def case_report_html(
    explanation: Explanation,
    *,
    labs: Mapping[str, Any],
    inputs: Mapping[str, str],
    figures: Sequence[tuple[str, go.Figure]],
    created: datetime | None = None,
) -> str:
    """The report as an HTML string.

    ``inputs``: description of the image inputs (e.g. file names and SUV note);
    ``figures``: (title, plotly figure) pairs in display order.
    """
    p = explanation.prediction
    created = created or datetime.now(UTC)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>PFS risk report (research use)</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<p class='disclaimer'><b>{html.escape(DISCLAIMER)}</b></p>",
        "<h1>Progression-free survival before PRRT: case report</h1>",
        f"<p class='risk'>P(PFS ≤ 12 months) = {p.probability:.0%} "
        f"(ensemble range {p.interval[0]:.0%}–{p.interval[1]:.0%}); risk group: {html.escape(p.risk_group)}</p>",
        f"<p>Percentile in the training cohort: {p.percentile_in_training:.0f}. "
        f"Inputs used: {html.escape(', '.join(p.inputs_used))}; missing: "
        f"{html.escape(', '.join(p.missing_modalities) or 'none')}.</p>",
        "<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in p.warnings) + "</ul>",
        "<h2>Inputs</h2><table>" + "".join(_row([k, v]) for k, v in inputs.items()) + "</table>",
        _labs_table(labs, p.imputed_fields),
    ]
    for i, (title, figure) in enumerate(figures):
        plotly_js: bool | str = "inline" if i == 0 else False
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(figure.to_html(full_html=False, include_plotlyjs=plotly_js))
    parts += [
        "<h2>Model</h2><table>",
        _row(["model", p.model_name]), _row(["version", p.model_version]), _row(["bundle sha256", p.bundle_sha256]),
        _row(["trained on simulated data", p.trained_on_simulated_data]), _row(["device", p.device]),
        _row(["uncertainty interval", p.interval_method]),
        _row(["timings (s)", ", ".join(f"{k} {v:.2f}" for k, v in explanation.timings_s.items())]),
        _row(["software", f"pfs_core {__version__}"]), _row(["created (UTC)", created.isoformat(timespec="seconds")]),
        "</table>",
        f"<p class='disclaimer'>{html.escape(DISCLAIMER)}</p></body></html>",
    ]
    return "\n".join(parts)
