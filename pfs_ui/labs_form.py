"""The lab and clinical values form: units, reference ranges, unit choices, missing values allowed.

Every field is checked as it is typed, with the one lab parser (:func:`pfs_core.io.labs.lab_problems`), and
all problems come back together, each named by its on-screen label and unit and never quoting the value.

The fields can be filled from a lab system's export (:func:`lab_import`: a JSON object or a CSV row, read by
:func:`pfs_core.io.labs.read_lab_import`, in memory only) and stay editable. Each field's value lives in the
session state under ``<key_prefix><field name>`` (and ``..._unit`` for its unit choice); a case's defaults
are put there only when the key is not there yet, so an import or a restored value (:mod:`pfs_ui.case_inputs`)
is what the field shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from pfs_core import schema
from pfs_core.errors import InputError
from pfs_core.io.labs import LabImport, lab_problems, read_lab_import
from pfs_core.limits import describe, limits

MISSING = "(not available)"
#: The import uploader's key, and the (file id, row) of the import already put into the fields.
IMPORT_KEY = "lab_import"
APPLIED_KEY = "lab_import_applied"


@dataclass
class LabEntry:
    """What the form holds now: values in the model units of :mod:`pfs_core.schema` (None = missing, or bad)
    and one line per field that cannot be used (label, unit, reason and fix)."""

    values: dict[str, float | str | None]
    problems: list[str] = field(default_factory=list)

    def signature(self) -> tuple[Any, ...]:
        """The entered values and problems, to tell whether a result was computed from them."""
        return tuple(sorted(self.values.items())) + tuple(self.problems)


def _default(defaults: Mapping[str, Any], name: str) -> Any:
    value = defaults.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _numeric_input(feature: schema.NumericFeature, default: Any, *, key_prefix: str) -> tuple[float | None, str]:
    """One numeric field with its unit choice; returns (value, unit as entered)."""
    units = [feature.unit, *(c.unit for c in feature.alt_units)]
    ref = f"reference {feature.reference[0]:g}–{feature.reference[1]:g} {feature.unit}" if feature.reference else ""
    help_text = f"{ref}{'; ' if ref else ''}leave empty if not measured (the model imputes the training median)"
    box = st.columns([3, 2]) if len(units) > 1 else [st.container()]
    label = feature.label if len(units) > 1 else f"{feature.label} ({feature.unit})"
    # No min_value: a bound makes the browser turn the field red and keep the old value without a word;
    # every value reaches the check below instead, which says what is wrong.
    key = f"{key_prefix}{feature.name}"
    if key not in st.session_state:  # the case's default, unless an import or a restored value is there
        st.session_state[key] = None if default is None else float(default)
    value = box[0].number_input(label, value=None, format="%.2f", key=key, placeholder="missing: imputed",
                                help=help_text)
    if len(units) > 1 and st.session_state.get(f"{key}_unit") not in units:
        st.session_state[f"{key}_unit"] = units[0]
    unit = box[1].selectbox("unit", units, key=f"{key}_unit") if len(units) > 1 else units[0]
    return value, unit


def problem_text(feature: schema.NumericFeature, value: float, unit: str, reason: str) -> str:
    """``reason`` (of :func:`pfs_core.io.labs.lab_problems`, in model units) in the form's words: the
    on-screen label, the unit chosen beside the field, the range in that unit; never the value."""
    factor = 1.0 if unit == feature.unit else next(c.factor for c in feature.alt_units if c.unit == unit)
    low, high = (bound / factor for bound in feature.plausible)
    if value < 0:
        return f"{feature.label} ({unit}): negative; give the measured value (0 or more) or leave it empty"
    if reason.startswith("outside"):
        return (f"{feature.label} ({unit}): outside the plausible range {low:.3g}–{high:.3g} {unit}; check the "
                "value and the unit chosen beside it, or leave it empty")
    return f"{feature.label} ({unit}): {reason}"


def labs_form(defaults: Mapping[str, Any], *, key_prefix: str = "lab_", show_post_baseline: bool = False
              ) -> LabEntry:
    """Render the fields; return the values in model units and every problem at once."""
    numeric = [f for f in schema.NUMERIC_FEATURES
               if show_post_baseline or f.name not in schema.POST_BASELINE_COLUMNS]
    entered: dict[str, tuple[float, str]] = {}
    columns = st.columns(3)
    for i, feature in enumerate(numeric):
        with columns[i % 3]:
            value, unit = _numeric_input(feature, _default(defaults, feature.name), key_prefix=key_prefix)
        if value is not None:
            entered[feature.name] = (float(value), unit)
    values: dict[str, float | str | None] = {f.name: None for f in numeric}
    values.update({name: schema.to_model_unit(name, value, unit) for name, (value, unit) in entered.items()})
    for i, category in enumerate(schema.CATEGORICAL_FEATURES):
        options = [MISSING, *category.levels]
        default = _default(defaults, category.name)
        key = f"{key_prefix}{category.name}"
        if st.session_state.get(key) not in options:
            st.session_state[key] = default if default in options else MISSING
        with columns[i % 3]:
            choice = st.selectbox(category.label, options, key=key)
        values[category.name] = None if choice == MISSING else choice
    problems = []
    for name, reason in lab_problems(values):  # one check of all fields: every problem at once
        values[name] = None
        problems.append(problem_text(schema.NUMERIC_BY_NAME[name], *entered[name], reason))
    return LabEntry(values=values, problems=problems)


def show_lab_problems(entry: LabEntry) -> None:
    """One error box listing every field to fix (nothing when all are fine)."""
    if entry.problems:
        lines = "\n".join(f"- {p}" for p in entry.problems)
        st.error(f"{len(entry.problems)} lab value{'s' if len(entry.problems) > 1 else ''} to fix before "
                 f"Predict:\n{lines}", icon=":material/error:")


def lab_import(*, key_prefix: str, show_post_baseline: bool = False, uploader_key: str = IMPORT_KEY) -> None:
    """"Import labs (JSON or CSV row)": an uploader whose file fills the lab fields of ``key_prefix`` once.

    Draw it above :func:`labs_form`. A file of several patients asks for the row first. The fields the file
    names are set (an empty cell empties the field), the others are left as they are, and all stay editable;
    a bad file is one error box naming the column and the fix. Read in memory, never written or logged.
    """
    upload = st.file_uploader(
        "Import labs (JSON or CSV row)", key=uploader_key,
        help="An export of the lab system: a JSON object {field: value}, or a CSV with a header of field names "
             "or the labels below (a unit in brackets where a field has unit choices, e.g. 'Albumin (g/L)') and "
             "one row, or several rows with a patient_id column. It fills the fields below; other columns are "
             f"ignored. At most {describe('max_labs_bytes')}.")
    if upload is None:
        st.session_state.pop(APPLIED_KEY, None)
        return
    found = _read_import(upload, row_key=f"{uploader_key}_row")
    if found is None:
        return
    stamp = (getattr(upload, "file_id", None) or upload.name, found.row)
    if st.session_state.get(APPLIED_KEY) != stamp:
        _fill(found, key_prefix=key_prefix)
        st.session_state[APPLIED_KEY] = stamp
    st.caption(import_note(found, name=str(upload.name), show_post_baseline=show_post_baseline))


def _read_import(upload: Any, *, row_key: str) -> LabImport | None:
    """The import of ``upload`` (after the row choice where the file has several), or None (error shown)."""
    if getattr(upload, "size", 0) > limits().max_labs_bytes:
        st.error(f"{upload.name}: larger than a lab export can be (at most {describe('max_labs_bytes')}); "
                 "export only this patient's row", icon=":material/error:")
        return None
    data = upload.getvalue()
    try:
        found = read_lab_import(data, str(upload.name))
        if found.needs_choice:
            row = st.selectbox(f"{upload.name} holds {len(found.rows)} patients: which one?", found.rows,
                               index=None, placeholder="choose the patient", key=row_key)
            if row is None:
                return None
            found = read_lab_import(data, str(upload.name), patient_id=row)
    except InputError as exc:
        st.error(str(exc), icon=":material/error:")
        return None
    return found


def _fill(found: LabImport, *, key_prefix: str) -> None:
    """Put the imported values into the fields' session state (before the fields are drawn)."""
    for name, value in found.values.items():
        key = f"{key_prefix}{name}"
        if name in schema.CATEGORICAL_BY_NAME:
            st.session_state[key] = MISSING if value is None else value
            continue
        number, unit = found.entered.get(name, (None, schema.NUMERIC_BY_NAME[name].unit))
        st.session_state[key] = number
        if schema.NUMERIC_BY_NAME[name].alt_units:
            st.session_state[f"{key}_unit"] = unit


def field_label(name: str) -> str:
    """The on-screen label of lab field ``name`` (the name itself for one the schema does not know)."""
    return schema.label(name)


def import_note(found: LabImport, *, name: str, show_post_baseline: bool) -> str:
    """What an import did, in labels: the fields filled (and emptied), those it left as they were, and the
    columns it ignored."""
    unused = [n for n in found.values if n in schema.POST_BASELINE_COLUMNS and not show_post_baseline]
    filled = [field_label(n) for n, v in found.values.items() if v is not None and n not in unused]
    emptied = [field_label(n) for n, v in found.values.items() if v is None and n not in unused]
    shown = [n for n in schema.LAB_COLUMNS if show_post_baseline or n not in schema.POST_BASELINE_COLUMNS]
    kept = [field_label(n) for n in shown if n not in found.values]
    parts = [f"Imported from {name}{f' ({found.row})' if found.row else ''}: "
             f"{', '.join(filled) if filled else 'no value'}."]
    if emptied:
        parts.append(f"Empty in the file, so emptied: {', '.join(emptied)}.")
    if kept:
        parts.append(f"Not in the file, left as they were: {', '.join(kept)}.")
    if unused:
        parts.append(f"Not used by this model (known only after therapy): {', '.join(map(field_label, unused))}.")
    if found.ignored:
        parts.append(f"Ignored column(s), no lab field: {', '.join(found.ignored)}.")
    return " ".join(parts)
