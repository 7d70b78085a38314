"""Tumour-board report: one self-contained HTML file (inputs, risk, lesion measurements, figures, model identity,
disclaimer).

The HTML embeds plotly.js once and every figure inline, so it opens offline and
can be mailed or archived as a single file. Nothing is written to disk here; the
caller decides where the bytes go.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from pfs_core import DISCLAIMER, __version__, schema

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from pfs_core.explain import Explanation
    from pfs_core.measure import Measurement

#: Display names, with units, of the lesion table's columns (``Measurement.lesions``), in display order.
LESION_COLUMN_LABELS: dict[str, str] = {
    "lesion_id": "lesion", "sstr_status": "SSTR status", "site": "site", "volume_ml": "volume (mL)",
    "suv_max": "SUVmax (g/mL)", "suv_mean": "SUVmean (g/mL)", "suv_peak": "SUVpeak (g/mL)",
    "tumour_to_liver": "tumour-to-liver (SUVmax / liver SUV)", "heterogeneity": "heterogeneity (SUV SD / mean)",
    "mean_hu": "mean CT (HU)", "centre_x_mm": "centre x (mm)", "centre_y_mm": "centre y (mm)",
    "centre_z_mm": "centre z (mm)",
    "contribution": "share of the risk (percentage points)",
}
#: Per-patient features (``Measurement.features``): label and unit ("%" shows a fraction as a percentage).
FEATURE_LABELS: dict[str, tuple[str, str]] = {
    "sstr_positive_volume_ml": ("SSTR-positive tumour volume", "mL"),
    "total_lesion_uptake": ("total lesion uptake (volume × SUVmean)", "SUV·mL"),
    "tumour_to_liver_mean": ("tumour-to-liver ratio, volume-weighted mean", "ratio"),
    "tumour_to_liver_max": ("tumour-to-liver ratio, highest lesion", "ratio"),
    "sstr_negative_count": ("SSTR-negative lesions", "count"),
    "sstr_negative_volume_ml": ("SSTR-negative tumour volume", "mL"),
    "liver_tumour_fraction": ("liver tumour fraction", "%"),
    "heterogeneity": ("uptake heterogeneity, volume-weighted (SUV SD / mean)", "ratio"),
    "liver_suv_reference": ("liver reference uptake", "SUVbw"),
    "liver_volume_ml": ("liver volume", "mL"),
}
#: The caveat shown with every lesion measurement.
DELINEATION_CAVEAT = ("Lesions and organs were delineated automatically (SSTR-positive lesions on the PET, "
                      "SSTR-negative liver lesions on the CT); check every outline on the images before using "
                      "a figure. Research use only; not a medical device.")


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


def lesion_display_table(lesions: pd.DataFrame) -> pd.DataFrame:
    """The lesion table for people: SSTR-positive first, then by decreasing SUVmax; columns labelled with units."""
    order = {"SSTR-positive": 0, "SSTR-negative": 1}
    table = lesions.assign(_status=lesions["sstr_status"].map(order).fillna(2))
    table = table.sort_values(["_status", "suv_max", "lesion_id"], ascending=[True, False, True], kind="stable")
    if "contribution" in table:  # probability → percentage points, as the risk is shown
        table["contribution"] = (100.0 * table["contribution"]).round(2)
    columns = [c for c in LESION_COLUMN_LABELS if c in table.columns]
    return table[columns].rename(columns=LESION_COLUMN_LABELS).reset_index(drop=True)


def feature_rows(features: Mapping[str, float]) -> list[tuple[str, str, str]]:
    """``(label, value, unit)`` of the per-patient features, the lesion counts per site last."""
    rows = []
    for name, (label, unit) in FEATURE_LABELS.items():
        if name not in features:
            continue
        value = features[name]
        if unit == "%":
            rows.append((label, f"{100.0 * value:.1f}", "%"))
        elif unit == "count":
            rows.append((label, f"{value:.0f}", ""))
        else:
            rows.append((label, f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}", unit))
    for name, value in features.items():
        if name.startswith("lesions_"):
            rows.append((f"lesions in {name.removeprefix('lesions_').replace('_', ' ')}", f"{value:.0f}", ""))
    return rows


def _measurement_section(measurement: Measurement, lesions: pd.DataFrame | None = None) -> str:
    """``lesions``: the lesion table with each lesion's share of the risk, when the model explained it."""
    table = lesion_display_table(measurement.lesions if lesions is None else lesions)
    body = "".join(_row(["—" if pd.isna(v) else v for v in row]) for row in table.itertuples(index=False))
    return "".join([
        "<h2>Lesion measurements (automatic delineation)</h2>",
        f"<p class='disclaimer'>{html.escape(DELINEATION_CAVEAT)}</p>",
        f"<p>Organ masks: {html.escape(measurement.organs.source)}.</p>",
        "<table>", _row(["feature", "value", "unit"], "th"),
        "".join(_row(r) for r in feature_rows(measurement.features)), "</table>",
        f"<h3>Lesions ({len(table)})</h3>" if len(table) else "<p>No lesion was found.</p>",
        ("<table>" + _row(table.columns, "th") + body + "</table>") if len(table) else "",
    ])


def case_report_html(
    explanation: Explanation,
    *,
    labs: Mapping[str, Any],
    inputs: Mapping[str, str],
    figures: Sequence[tuple[str, go.Figure]],
    measurement: Measurement | None = None,
    created: datetime | None = None,
) -> str:
    """The report as an HTML string.

    ``inputs``: description of the image inputs (e.g. file names and SUV note);
    ``figures``: (title, plotly figure) pairs in display order;
    ``measurement``: the lesion measurement of the case (features, lesion table, organ source), if any.
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
    if measurement is not None:
        contributions = explanation.lesions
        parts.append(_measurement_section(measurement, None if contributions is None else contributions.lesions))
        if contributions is not None:
            parts.append(f"<p class='muted'>Share of the risk: {html.escape(contributions.method)}; "
                         f"not attributable to a lesion: {100 * contributions.unattributed:+.2f} percentage "
                         "points.</p>")
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
