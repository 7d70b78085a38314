"""Tumour-board report of one case: HTML and PDF built from one list of sections (:func:`report_sections`).

What it holds: case id, date, model name, version and bundle hash; the probability with its interval
(and the prediction's interval sentence) and, when the caller gives it, the outlook at 6, 12 and 24 months;
what was missing or imputed, said once; the remaining warnings; the clinician's note; key images (the
coronal PET maximum-intensity projection with the lesion outlines, axial PET-on-CT slices through the lesions
with the largest share of the risk); the lesion table and per-patient measurements with labels and units;
the explanation charts as static images; the inputs; the model's identity and the disclaimer (and that the
model was trained on simulated data where its manifest says so).

:func:`case_report` returns both formats: a self-contained HTML (images as base64 PNG, no script, no
plotly.js) and an A4 PDF (ReportLab). Images come from :mod:`pfs_core.viz.static` (matplotlib). Nothing is
written to disk here; the caller decides where the bytes go.

"""

from __future__ import annotations

import base64
import functools
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm, mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, TableStyle
from reportlab.platypus import Image as PdfImage
from reportlab.platypus import Table as PdfTable

from pfs_core import DISCLAIMER, __version__, schema
from pfs_core.preprocessing.resample import resample_onto
from pfs_core.viz.explain import feature_label
from pfs_core.viz.images import STATUS_COLORS
from pfs_core.viz.static import bar_png, lesion_slice_png, mip_png

if TYPE_CHECKING:

    from pfs_core.explain import Explanation
    from pfs_core.explain.lesions import LesionContributions
    from pfs_core.inference import Prediction
    from pfs_core.io import Volume
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


#: Lesions with an axial image in the report: the largest |share of the risk| (or, without shares, volume) first.
TOP_LESION_IMAGES = 4
#: The outlook's horizons when the caller gives none of its own (months).
OUTLOOK_MONTHS = (6, 12, 24)
_MODALITY_NAMES = {"lab": "Labs", "labs": "Labs", "pet": "PET", "ct": "CT"}
_IMPUTED_WARNING = "missing lab value(s) imputed"
_MODALITY_WARNINGS = ("missing: the model predicts without it", "not used: the lesion measurements need both")


# ----------------------------------------------------------------------------- the shared content


@dataclass(frozen=True)
class Text:
    """A paragraph; ``kind``: ``"p"``, ``"lead"`` (the result, large), ``"box"`` (framed: disclaimer, caveat),
    ``"muted"`` (small print) or ``"pre"`` (the clinician's note: line breaks kept)."""

    text: str
    kind: str = "p"


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """``header`` (or empty for a two-column key–value table) and rows of display strings."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    small: bool = False


@dataclass(frozen=True)
class Picture:
    """One PNG image with its caption; ``width_cm`` on the printed page."""

    png: bytes
    caption: str
    width_cm: float = 8.5


@dataclass(frozen=True)
class Pictures:
    """Images side by side (two per row when printed)."""

    items: tuple[Picture, ...]


Block = Text | Bullets | Table | Picture | Pictures


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class CaseReport:
    """The tumour-board report of one case in two formats built from the same :func:`report_sections`."""

    html: bytes  # UTF-8, self-contained (images as base64 PNG, no script)
    pdf: bytes


def case_report(explanation: Explanation, *, labs: Mapping[str, Any], inputs: Mapping[str, str], case_id: str,
                pet: Volume | None = None, ct: Volume | None = None, measurement: Measurement | None = None,
                outlook: Mapping[int, float] | None = None, note: str = "",
                created: datetime | None = None) -> CaseReport:
    """The report of one explained case as HTML and PDF (same sections, same words).

    Args:
        explanation: :func:`pfs_core.explain.explain_case`'s result.
        labs: the lab and clinical values as given (schema names; None or absent = not given).
        inputs: description of the inputs (e.g. image file names and SUV note), shown as given.
        case_id: the case's identifier as the tumour board knows it.
        pet, ct: the loaded volumes (:class:`pfs_core.io.Volume`, SUVbw and HU), or None: without them the
            report has no images.
        measurement: the lesion measurement (default: the explanation's own, when it has one).
        outlook: months → probability (0-1) of progression or death by then, or None.
        note: the clinician's free-text note (plain text; escaped).
        created: report time (default now, UTC).
    """
    sections = report_sections(explanation, labs=labs, inputs=inputs, case_id=case_id, pet=pet, ct=ct,
                               measurement=measurement, outlook=outlook, note=note, created=created)
    title = f"PFS risk report, case {case_id} (research use)"
    return CaseReport(html=render_html(sections, title=title).encode("utf-8"),
                      pdf=render_pdf(sections, title=title))


def report_sections(explanation: Explanation, *, labs: Mapping[str, Any], inputs: Mapping[str, str], case_id: str,
                    pet: Volume | None = None, ct: Volume | None = None, measurement: Measurement | None = None,
                    outlook: Mapping[int, float] | None = None, note: str = "",
                    created: datetime | None = None) -> list[Section]:
    """The report's content, format-free: the one source of :func:`render_html` and :func:`render_pdf`."""
    p = explanation.prediction
    created = created or datetime.now(UTC)
    measurement = measurement if measurement is not None else explanation.measurement
    contributions = explanation.lesions
    lesions = None if measurement is None else (
        contributions.lesions if contributions is not None else measurement.lesions)
    missing, warnings = missing_and_warnings(p)
    sections = [
        Section("Case", (_case_table(p, case_id=case_id, created=created),
                         Text(_training_sentence(p.trained_on_simulated_data) + " " + DISCLAIMER, "box"))),
        Section("Result", _result_blocks(p, outlook)),
        Section("Missing inputs", (Bullets(tuple(missing)),)),
        Section("Warnings", (Bullets(tuple(warnings)),) if warnings else (Text("None."),)),
        Section("Clinician's note", (Text(note.strip() or "No note.", "pre" if note.strip() else "muted"),)),
    ]
    images = _image_blocks(pet, ct, measurement, lesions)
    if images:
        sections.append(Section("Key images", images))
    if measurement is not None and lesions is not None:
        sections.append(Section("Lesion measurements (automatic delineation)",
                                _measurement_blocks(measurement, lesions, contributions)))
    sections.append(Section("Why: what moved the probability", _why_blocks(explanation)))
    sections.append(Section("Inputs", (Table((), tuple((str(k), str(v)) for k, v in inputs.items())),
                                       _labs_table_blocks(labs, p.imputed_fields))))
    sections.append(Section("Model and software", (_model_table(explanation, created),
                                                   Text(DISCLAIMER, "box"))))
    return sections


def missing_and_warnings(prediction: Prediction) -> tuple[list[str], list[str]]:
    """(what was missing or imputed, the other warnings): each said once.

    The missing part names the images not used (with the prediction's warning about them) and the imputed fields;
    the prediction's own warnings that repeat them are left out of the second list.
    """
    modality_warnings = [w for w in prediction.warnings if any(m in w for m in _MODALITY_WARNINGS)]
    others = [w for w in prediction.warnings
              if w not in modality_warnings and not w.startswith(_IMPUTED_WARNING)]
    missing = []
    if prediction.missing_modalities:
        images = ", ".join(m.upper() for m in prediction.missing_modalities)
        reason = "; ".join(modality_warnings) if modality_warnings else "the model predicts without them"
        missing.append(f"Images not used: {images} ({reason}).")
    if prediction.imputed_fields:
        missing.append("Not given, imputed with the training median (no attribution of their own): "
                       f"{', '.join(_plain(n) for n in prediction.imputed_fields)}.")
    if not missing:
        missing.append("Nothing: every input the model reads was given.")
    return missing, others


# ----------------------------------------------------------------------------- sections


def _case_table(p: Prediction, *, case_id: str, created: datetime) -> Table:
    return Table((), (
        ("case", case_id),
        ("date", created.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("model", f"{p.model_name}, version {p.model_version}"),
        ("model bundle (sha256)", p.bundle_sha256[:16] + "…" if len(p.bundle_sha256) > 16 else p.bundle_sha256),
        ("training data", _yes_no(p.trained_on_simulated_data, "simulated cohort (not patients)", "patient cohort",
                                  "not stated in the bundle")),
    ))


def _training_sentence(simulated: bool | None) -> str:
    if simulated:
        return "This model was trained on simulated data, not on patients: its numbers are not validated."
    if simulated is None:
        return "The model bundle does not say what data it was trained on."
    return "This model was trained on a patient cohort (its bundle says so)."


def _result_blocks(p: Prediction, outlook: Mapping[int, float] | None) -> tuple[Block, ...]:
    low, high = p.interval
    blocks: list[Block] = [
        Text(f"Probability of progression or death within 12 months: {_pct(p.probability)} "
             f"(interval {_pct(low)}–{_pct(high)})", "lead"),
    ]
    sentence = getattr(p, "interval_sentence", None)
    blocks.append(Text(str(sentence) if sentence else f"Interval: {p.interval_method}."))
    blocks.append(Text(f"Risk group: {p.risk_group} (threshold {_pct(p.risk_threshold)}). Higher than "
                       f"{p.percentile_in_training:.0f} % of the training cohort's predictions."))
    if outlook:
        rows = tuple((f"by {int(m)} months", _pct(float(v))) for m, v in sorted(outlook.items()))
        blocks += [Text("Outlook: probability of progression or death by each time.", "p"),
                   Table(("time", "probability of progression or death"), rows)]
    return tuple(blocks)


def _image_blocks(pet: Volume | None, ct: Volume | None, measurement: Measurement | None,
                  lesions: pd.DataFrame | None) -> tuple[Block, ...]:
    """The coronal PET MIP with the lesion outlines and the axial PET-on-CT slices through the top lesions."""
    blocks: list[Block] = []
    on_ct = measurement is not None and ct is not None and lesions is not None and len(lesions) > 0 \
        and np.shape(measurement.lesion_labels) == np.shape(ct.data)
    status = {} if not on_ct or lesions is None else {
        int(r.lesion_id): str(r.sstr_status) for r in lesions.itertuples() if r.sstr_status in STATUS_COLORS}
    pet_on_ct = None
    if pet is not None and ct is not None:
        pet_on_ct = resample_onto(pet, affine=ct.affine, shape=ct.data.shape)
    top = _top_lesions(lesions) if on_ct and lesions is not None else []
    if pet_on_ct is not None and ct is not None:
        labels = measurement.lesion_labels if on_ct and measurement is not None else None
        png = mip_png(pet_on_ct, ct.affine, labels, status, labelled=top or None)
        blocks.append(Picture(png, "PET maximum-intensity projection (coronal, seen from the front; the patient's "
                                   "right on the left), with the lesion outlines (orange: SSTR-positive, blue: "
                                   "SSTR-negative) and lesion numbers.", 12.0))
    elif pet is not None:
        blocks.append(Picture(mip_png(pet.data, pet.affine), "PET maximum-intensity projection (coronal); no CT, "
                                                             "so no lesion outlines.", 10.0))
    if top and ct is not None and measurement is not None and lesions is not None:
        rows = lesions.set_index("lesion_id")
        pictures = []
        for lesion_id in top:
            row = rows.loc[lesion_id]
            png = lesion_slice_png(ct.data, pet_on_ct, ct.affine, measurement.lesion_labels, lesion_id,
                                   lesion_status=status, title=_lesion_title(lesion_id, row))
            pictures.append(Picture(png, _lesion_title(lesion_id, row, share=True), 8.5))
        blocks.append(Text(f"Axial slices (seen from the feet; the patient's right on the left) through the "
                           f"{len(top)} lesion(s) with the largest "
                           f"{'share of the risk' if 'contribution' in lesions else 'volume'}, where each is "
                           "largest: CT in a soft-tissue window, PET (SUV 0–10) in colour on top.", "muted"))
        blocks.append(Pictures(tuple(pictures)))
    return tuple(blocks)


def _top_lesions(lesions: pd.DataFrame, n: int = TOP_LESION_IMAGES) -> list[int]:
    key = lesions["contribution"].abs() if "contribution" in lesions else lesions["volume_ml"]
    order = lesions.assign(_key=key.to_numpy()).sort_values(["_key", "lesion_id"], ascending=[False, True],
                                                            kind="stable")
    return [int(i) for i in order["lesion_id"].head(n)]


def _lesion_title(lesion_id: int, row: pd.Series, *, share: bool = False) -> str:
    text = (f"Lesion {lesion_id} ({row['sstr_status']}, {row['site']}): SUVmax {_num(row['suv_max'])} g/mL, "
            f"{_num(row['volume_ml'])} mL")
    if share and "contribution" in row and pd.notna(row["contribution"]):
        text += f"; share of the risk {100 * float(row['contribution']):+.2f} percentage points"
    return text


def _measurement_blocks(measurement: Measurement, lesions: pd.DataFrame,
                        contributions: LesionContributions | None) -> tuple[Block, ...]:
    blocks: list[Block] = [Text(DELINEATION_CAVEAT, "box"), Text(f"Organ masks: {measurement.organs.source}.")]
    blocks.append(Table(("per-patient measurement", "value", "unit"), tuple(feature_rows(measurement.features))))
    table = lesion_table_rows(lesions)
    if table[1]:
        blocks += [Text(f"Lesions ({len(table[1])}): SSTR-positive first, then by decreasing SUVmax.", "p"),
                   Table(table[0], table[1], small=True)]
    else:
        blocks.append(Text("No lesion was found."))
    if contributions is not None:
        blocks.append(Text(f"Share of the risk: {contributions.method}; not attributable to a lesion: "
                           f"{100 * contributions.unattributed:+.2f} percentage points.", "muted"))
    return tuple(blocks)


def lesion_table_rows(lesions: pd.DataFrame) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """(header, rows) of the report's lesion table: :func:`lesion_display_table`'s columns as text, the three
    centre coordinates in one column."""
    table = lesion_display_table(lesions)
    centre = [LESION_COLUMN_LABELS[f"centre_{a}_mm"] for a in "xyz"]
    columns = [c for c in table.columns if c not in centre]
    header = [*columns]
    has_centre = all(c in table.columns for c in centre)
    if has_centre:
        at = columns.index(LESION_COLUMN_LABELS["contribution"]) if LESION_COLUMN_LABELS["contribution"] in columns \
            else len(columns)
        header.insert(at, "centre x, y, z (mm)")
    rows = []
    for _, r in table.iterrows():
        cells = [_cell(r[c], signed=c == LESION_COLUMN_LABELS["contribution"]) for c in columns]
        if has_centre:
            cells.insert(at, ", ".join(_cell(r[c], digits=0) for c in centre))
        rows.append(tuple(cells))
    return tuple(header), tuple(rows)


def _why_blocks(explanation: Explanation) -> tuple[Block, ...]:
    """The explanation charts as static images: lab SHAP (measured labs), modalities, lesion measurements,
    each lesion's share. Values in percentage points of the probability."""
    blocks: list[Block] = []
    pp = "percentage points of the probability (+ raises the risk)"
    s = explanation.lab_shap
    if s is not None:
        shown = [i for i, imputed in enumerate(s.imputed) if not imputed]
        method = s.method.split(";")[0]  # its second part restates the imputation, said under "Missing inputs"
        if shown:
            blocks.append(Picture(bar_png([feature_label(s.names[i], s.values[i], s.units[i]) for i in shown],
                                          [100 * s.shap_values[i] for i in shown],
                                          "Laboratory and clinical values (measured ones)", pp),
                                  f"SHAP values of the measured values ({method}); the average prediction "
                                  f"{_pct(s.base_value)} plus these bars gives {_pct(s.output)}.", 15.0))
        else:
            blocks.append(Text("No lab value was given: nothing to attribute."))
    contributions = explanation.modalities.contributions
    blocks.append(Picture(bar_png([_MODALITY_NAMES.get(m, m) for m in contributions],
                                  [100 * v for v in contributions.values()], "Modalities", pp),
                          "Exact Shapley values over the modalities; an absent modality is replaced by the model's "
                          "'missing' input (images) or the training medians (labs).", 12.0))
    lc = explanation.lesions
    if lc is not None:
        f = lc.features
        labels = [f"{r.label} = {_num(r.measured)} {r.unit}".strip() for r in f.itertuples()]
        blocks.append(Picture(bar_png(labels, 100 * f["shap"].to_numpy(float), "Lesion measurements", pp),
                              "SHAP values of the lesion measurements the model reads.", 15.0))
        table = lc.lesions.reindex(lc.lesions["contribution"].abs().sort_values(ascending=False).index)
        names = [f"lesion {int(r.lesion_id)} ({getattr(r, 'sstr_status', '')}, {getattr(r, 'site', '')})"
                 for r in table.itertuples()]
        values = [100 * float(v) for v in table["contribution"]]
        blocks.append(Picture(bar_png([*names, "not a lesion"], [*values, 100 * lc.unattributed],
                                      "Each lesion's share of the risk", pp, max_bars=13),
                              "Each lesion's share of the lesion measurements' SHAP values; 'not a lesion' is the "
                              "part no lesion makes up (e.g. no SSTR-negative disease lowers the risk).", 15.0))
    return tuple(blocks)


def _labs_table_blocks(labs: Mapping[str, Any], imputed: Sequence[str]) -> Table:
    rows = []
    for name in schema.LAB_COLUMNS:
        value = labs.get(name)
        unit = schema.NUMERIC_BY_NAME[name].unit if name in schema.NUMERIC_BY_NAME else ""
        given = value is not None and not (isinstance(value, float) and np.isnan(value))
        rows.append((_plain(name), _cell(value) if given else "not given", unit if given else ""))
    return Table(("laboratory or clinical field", "value", "unit"), tuple(rows))


def _model_table(explanation: Explanation, created: datetime) -> Table:
    p = explanation.prediction
    return Table((), (
        ("model", p.model_name), ("version", p.model_version), ("bundle sha256", p.bundle_sha256),
        ("trained on simulated data", _yes_no(p.trained_on_simulated_data, "yes", "no", "not stated")),
        ("inputs used", ", ".join(p.inputs_used) or "none"),
        ("uncertainty interval", p.interval_method), ("device", p.device),
        ("timings (s)", ", ".join(f"{k} {v:.2f}" for k, v in explanation.timings_s.items())),
        ("software", f"pfs_core {__version__}"), ("created", created.astimezone(UTC).isoformat(timespec="seconds")),
    ))


# ----------------------------------------------------------------------------- formatting


def _yes_no(flag: bool | None, yes: str, no: str, unknown: str) -> str:
    return unknown if flag is None else yes if flag else no


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %"


def _num(value: Any) -> str:
    """3 significant digits, no exponent."""
    v = float(value)
    if not np.isfinite(v):
        return "—"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}" if abs(v) >= 0.001 or v == 0 else f"{v:.1e}"


def _cell(value: Any, *, signed: bool = False, digits: int | None = None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if digits is not None:
            return f"{float(value):.{digits}f}"
        return f"{float(value):+.2f}" if signed else _num(value)
    return str(value)


def _plain(name: str) -> str:
    """A field's label; an unknown name with spaces for its underscores."""
    return schema.label(name, name.replace("_", " "))


# ----------------------------------------------------------------------------- HTML


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;color:#222}
.box{background:#fff3cd;border:1px solid #e0c36a;padding:.8em 1em;border-radius:6px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top}table.small{font-size:.8em}.lead{font-size:1.5em;font-weight:600}.muted{color:#666;font-size:.9em}
.pre{white-space:pre-wrap;border-left:3px solid #999;padding-left:.8em}figure{margin:.5em 0}
.pictures{display:flex;flex-wrap:wrap;gap:1em}.pictures figure{flex:1 1 45%}img{max-width:100%;height:auto}
figcaption{color:#444;font-size:.85em}@media print{section{break-inside:avoid-page}}
"""


def render_html(sections: Sequence[Section], *, title: str) -> str:
    """Self-contained HTML of the report: inline style, images as base64 PNG, no script."""
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        parts += [_html_block(block) for block in section.blocks]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        return f"<p class='{block.kind}'>{html.escape(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        head = _row(block.header, "th") if block.header else ""
        rows = "".join(_row(r) if block.header else _key_row(r) for r in block.rows)
        return f"<table class='{'small' if block.small else 'plain'}'>{head}{rows}</table>"
    if isinstance(block, Picture):
        return _html_figure(block)
    return "<div class='pictures'>" + "".join(_html_figure(p) for p in block.items) + "</div>"


def _html_figure(picture: Picture) -> str:
    data = base64.b64encode(picture.png).decode("ascii")
    caption = html.escape(picture.caption)
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{caption}' "
            f"style='width:{picture.width_cm:g}cm'><figcaption>{caption}</figcaption></figure>")


def _row(cells: Sequence[Any], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"


def _key_row(cells: Sequence[Any]) -> str:
    """A key–value row: the first cell a row header."""
    first, *others = cells
    return f"<tr><th>{html.escape(str(first))}</th>" + "".join(
        f"<td>{html.escape(str(c))}</td>" for c in others) + "</tr>"


# ----------------------------------------------------------------------------- PDF


def render_pdf(sections: Sequence[Section], *, title: str) -> bytes:
    """A4 PDF of the report (ReportLab; DejaVu Sans embedded, so every character of the HTML prints)."""
    regular, bold = _pdf_fonts()
    base = getSampleStyleSheet()
    styles = {
        "h1": ParagraphStyle("h1", parent=base["Title"], fontName=bold, fontSize=15, leading=19, alignment=0),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontName=bold, fontSize=12, leading=15, spaceBefore=8),
        "p": ParagraphStyle("p", parent=base["BodyText"], fontName=regular, fontSize=9, leading=12),
        "lead": ParagraphStyle("lead", parent=base["BodyText"], fontName=bold, fontSize=13, leading=17),
        "muted": ParagraphStyle("muted", parent=base["BodyText"], fontName=regular, fontSize=8, leading=10,
                                textColor=colors.HexColor("#555555")),
        "pre": ParagraphStyle("pre", parent=base["BodyText"], fontName=regular, fontSize=9, leading=12,
                              leftIndent=6, borderPadding=(2, 2, 2, 6), borderColor=colors.HexColor("#999999"),
                              borderWidth=0.5),
        "box": ParagraphStyle("box", parent=base["BodyText"], fontName=regular, fontSize=9, leading=12,
                              backColor=colors.HexColor("#fff3cd"), borderColor=colors.HexColor("#e0c36a"),
                              borderWidth=0.5, borderPadding=4, spaceBefore=4, spaceAfter=6),
        "cell": ParagraphStyle("cell", fontName=regular, fontSize=8, leading=10),
        "head": ParagraphStyle("head", fontName=bold, fontSize=8, leading=10),
        "small": ParagraphStyle("small", fontName=regular, fontSize=6.5, leading=8),
        "smallhead": ParagraphStyle("smallhead", fontName=bold, fontSize=6.5, leading=8),
    }
    out = io.BytesIO()
    margin = 15 * mm
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=margin, rightMargin=margin, topMargin=margin,
                            bottomMargin=margin + 4 * mm, title=title, author=f"pfs_core {__version__}",
                            subject="Progression-free survival before PRRT: case report (research use)",
                            creator=f"pfs_core {__version__}", invariant=True)
    story: list[Flowable] = [Paragraph(_xml(title), styles["h1"])]
    for section in sections:
        flowables = [_pdf_block(block, styles, doc.width) for block in section.blocks]
        first = flowables[0] if flowables else []
        story.append(KeepTogether([Paragraph(_xml(section.title), styles["h2"]), *first]))  # no lone heading
        for rest in flowables[1:]:
            story += rest

    def footer(canvas: Any, _doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(regular, 7)
        canvas.setFillColor(colors.HexColor("#555555"))
        canvas.drawString(margin, 8 * mm, "Research use only; not a medical device. " + title)
        canvas.drawRightString(A4[0] - margin, 8 * mm, f"page {canvas.getPageNumber()}")
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()


def _pdf_block(block: Block, styles: dict[str, ParagraphStyle], width: float) -> list[Flowable]:
    if isinstance(block, Text):
        text = _xml(block.text).replace("\n", "<br/>")
        return [Paragraph(text, styles.get(block.kind, styles["p"])), Spacer(1, 3)]
    if isinstance(block, Bullets):
        return [Paragraph(_xml(item), styles["p"], bulletText="•") for item in block.items] + [Spacer(1, 3)]
    if isinstance(block, Table):
        return [_pdf_table(block, styles, width), Spacer(1, 6)]
    if isinstance(block, Picture):
        return [KeepTogether(_pdf_picture(block, styles, min(block.width_cm * cm, width)))]
    cell = (width - 4 * mm) / 2
    cells = [_pdf_picture(p, styles, cell) for p in block.items]
    grid = [cells[i:i + 2] + [[]] * (2 - len(cells[i:i + 2])) for i in range(0, len(cells), 2)]
    table = PdfTable(grid, colWidths=[cell + 2 * mm] * 2)
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0),
                               ("RIGHTPADDING", (0, 0), (-1, -1), 2 * mm)]))
    return [table]


def _pdf_table(block: Table, styles: dict[str, ParagraphStyle], width: float) -> PdfTable:
    cell, head = (styles["small"], styles["smallhead"]) if block.small else (styles["cell"], styles["head"])
    rows = [[Paragraph(_xml(c), head) for c in block.header]] if block.header else []
    rows += [[Paragraph(_xml(c), head if not block.header and j == 0 else cell) for j, c in enumerate(r)]
             for r in block.rows]
    if not rows:
        return PdfTable([[""]])
    n = max(len(r) for r in rows)
    widths = [45 * mm, width - 45 * mm] if not block.header and n == 2 else _column_widths(
        block, width, fonts=(cell.fontName, head.fontName), size=cell.fontSize)
    table = PdfTable(rows, colWidths=widths, repeatRows=1 if block.header else 0)
    style = [("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#BBBBBB")), ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3)]
    if block.header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#EEEEEE")))
    table.setStyle(TableStyle(style))
    return table


def _column_widths(block: Table, width: float, *, fonts: tuple[str, str], size: float) -> list[float]:
    """Each column at least as wide as its longest word (header bold), the rest of ``width`` shared in proportion
    to how much more its longest cell needs."""
    regular, bold = fonts
    pad = 7.0

    def widest(texts: list[str], font: str, *, words: bool) -> float:
        parts = [w for t in texts for w in (t.split() if words else [t])] or [""]
        return max(pdfmetrics.stringWidth(p, font, size) for p in parts)

    low, full = [], []
    for j, head in enumerate(block.header):
        cells = [r[j] for r in block.rows if j < len(r)]
        low.append(max(widest([head], bold, words=True), widest(cells, regular, words=True)) + pad)
        full.append(max(widest([head], bold, words=False), widest(cells, regular, words=False)) + pad)
    if sum(low) >= width:
        return [width * v / sum(low) for v in low]
    spare = [f - lo for f, lo in zip(full, low, strict=True)]
    extra = width - sum(low)
    if sum(spare) <= extra:
        return [f + (extra - sum(spare)) / len(full) for f in full]
    return [lo + extra * sp / sum(spare) for lo, sp in zip(low, spare, strict=True)]


def _pdf_picture(picture: Picture, styles: dict[str, ParagraphStyle], width: float) -> list[Flowable]:
    with Image.open(io.BytesIO(picture.png)) as image:
        w, h = image.size
    image_flowable = PdfImage(io.BytesIO(picture.png), width=width, height=width * h / w)
    image_flowable.hAlign = "LEFT"
    return [image_flowable, Paragraph(_xml(picture.caption), styles["muted"]), Spacer(1, 4)]


def _xml(text: str) -> str:
    """Plain text for ReportLab's paragraph mark-up (``&``, ``<``, ``>`` escaped)."""
    return html.escape(str(text), quote=False)


@functools.cache
def _pdf_fonts() -> tuple[str, str]:
    """(regular, bold) font names: DejaVu Sans from matplotlib's data (Unicode: ≤, –, ×, µ), registered once."""
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    names = ("PfsDejaVuSans", "PfsDejaVuSans-Bold")
    for name, file in zip(names, ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"), strict=True):
        if name not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(name, str(folder / file)))
    return names
