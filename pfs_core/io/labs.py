"""The one parser of lab and clinical values: a case typed in a form, a cohort table, and a lab system's
export (a JSON object or a CSV row: :func:`read_lab_import`, for the Case Explorer's import and ``--labs``).

Each value is checked against :mod:`pfs_core.schema` (names, model units, plausible
ranges, categorical levels); an empty cell or a usual missing marker (NA, NaN,
null...) is missing. Reasons name the field and the fix but never quote a
patient's value, so a report can be shared or logged.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pfs_core import schema
from pfs_core.errors import InputError
from pfs_core.io.jsontext import JsonProblem, decode_json
from pfs_core.limits import limits, refuse

#: Cell texts read as "missing" (compared lower-case, after stripping blanks).
MISSING_TEXTS = frozenset({"", "na", "n/a", "nan", "null", "none", "#n/a"})


def is_missing(value: Any) -> bool:
    """True for None, NaN, an empty cell or a usual 'missing' marker (NA, NaN, null...)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in MISSING_TEXTS


def as_number(value: Any) -> float | None:
    """The value (a number or its text) as a finite float, or None when it is not one (booleans are not)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of hundreds of digits
        return None
    return number if math.isfinite(number) else None


def parse_lab(name: str, value: Any) -> tuple[float | str | None, str | None]:
    """(value, reason) of one lab or clinical value, typed in a form or read from a cell.

    The value is None when missing or bad; the reason (None when the value is fine)
    names the rule and the fix but never quotes the value.
    """
    if is_missing(value):
        return None, None
    if name in schema.CATEGORICAL_BY_NAME:
        levels = schema.CATEGORICAL_BY_NAME[name].levels
        text = value.strip() if isinstance(value, str) else None
        if text not in levels:
            return None, f"not an allowed value; use one of {', '.join(levels)} or leave it empty"
        return text, None
    feature = schema.NUMERIC_BY_NAME[name]
    number = as_number(value)
    low, high = feature.plausible
    alt = "".join(f"; from {c.unit} multiply by {c.factor:g}" for c in feature.alt_units)
    outside = (f"outside the plausible range {low:g}-{high:g} {feature.unit}; check the value and "
               f"its unit (expected {feature.unit}{alt})")
    if number is None:
        too_large = isinstance(value, int) and not isinstance(value, bool)  # beyond float: far outside any range
        return None, outside if too_large else f"not a number; give it in {feature.unit} or leave it empty"
    if not low <= number <= high:
        return None, outside
    return number, None


def _shown(name: Any) -> str:
    """A field name as quoted in messages, shortened: a name is not a patient's value, but may be long."""
    text = repr(str(name))
    return text if len(text) <= 42 else text[:40] + "...'"


def lab_problems(labs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field name, reason) of every unknown field and every bad value, in schema order after the unknown.

    Reasons never quote a value; an empty list means :func:`validate_labs` accepts ``labs``.
    """
    known = set(schema.LAB_COLUMNS)
    problems = [(str(name), f"unknown field; use the names {', '.join(schema.LAB_COLUMNS)}")
                for name in sorted((n for n in labs if n not in known), key=str)]
    for name in schema.LAB_COLUMNS:
        _value, reason = parse_lab(name, labs.get(name))
        if reason:
            problems.append((name, reason))
    return problems


def validate_labs(labs: Mapping[str, Any]) -> dict[str, float | str | None]:
    """Check one patient's names, types and plausible ranges; every schema lab column (None = missing).

    Unknown names and bad values raise one :class:`InputError` that lists every problem (field and fix,
    never the value); :func:`lab_problems` gives the same list as pairs.
    """
    problems = lab_problems(labs)
    if problems:
        known = set(schema.LAB_COLUMNS)
        unknown = [name for name, _reason in problems if name not in known]
        parts = [f"{name} is {reason}" for name, reason in problems if name in known]
        if unknown:
            parts.insert(0, f"unknown field(s) {', '.join(map(_shown, unknown))}; use the names "
                            f"{', '.join(schema.LAB_COLUMNS)}")
        raise InputError(f"labs: {len(problems)} problem(s): " + "; ".join(parts))
    return {name: parse_lab(name, labs.get(name))[0] for name in schema.LAB_COLUMNS}


# --- Import of a lab system's export: a JSON object or a CSV row ----------------------------------------

#: Cohort-table columns that are not labs: skipped without a note (an export of the cohort table holds them).
COHORT_ONLY_COLUMNS = frozenset(c for c in (*schema.COHORT_COLUMNS, *schema.OPTIONAL_COLUMNS)
                                if c not in schema.LAB_COLUMNS)
#: Unit spellings read as the same unit (after :func:`_unit_key`): international units are units.
_UNIT_ALIASES = {"iu/l": "u/l", "x10^9/l": "10^9/l", "10e9/l": "10^9/l", "x10e9/l": "10^9/l"}
#: Usual words for the levels of a categorical field (compared like field names).
_LEVEL_WORDS = {"female": "F", "male": "M", "w": "F"}


@dataclass(frozen=True)
class LabImport:
    """What a lab file gives: each field it names, its value and the unit it was given in.

    ``values``: model units of :mod:`pfs_core.schema` (None: the file names the field but leaves it empty);
    ``entered``: the numeric values as written in the file with their unit (what a form shows);
    ``ignored``: columns that are no lab field (cohort-table columns such as patient_id are left out);
    ``rows``: the rows of a file of several patients (their patient_id, else "row N"), to choose from;
    ``row``: the row read (None for a JSON object or a one-row CSV, or while a choice is needed).
    """

    values: dict[str, float | str | None]
    entered: dict[str, tuple[float, str]] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()
    rows: tuple[str, ...] = ()
    row: str | None = None

    @property
    def needs_choice(self) -> bool:
        """True for a file of several rows read without naming one: nothing is read until one is chosen."""
        return len(self.rows) > 1 and self.row is None


def _name_key(text: str) -> str:
    """A field name or label compared without case, blanks and punctuation ("Gamma-GT" = "gamma_gt")."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _unit_key(text: str) -> str:
    """A unit compared without case and blanks, µ/μ/u alike ("µmol/L" = "umol/l")."""
    key = "".join(text.split()).casefold().replace("µ", "u").replace("μ", "u")
    return _UNIT_ALIASES.get(key, key)


#: Field names and on-screen labels (compared by :func:`_name_key`) → field name.
_NAMES: dict[str, str] = {_name_key(text): name for name, label in (
    *((f.name, f.label) for f in schema.NUMERIC_FEATURES), *((f.name, f.label) for f in schema.CATEGORICAL_FEATURES))
    for text in (name, label)}


def units_of(name: str) -> tuple[str, ...]:
    """The units a numeric field may be given in, its model unit first."""
    feature = schema.NUMERIC_BY_NAME[name]
    return (feature.unit, *(c.unit for c in feature.alt_units))


def lab_column(header: str) -> tuple[str, str | None] | None:
    """(field name, unit or None) of a column header, or None for a column that is no lab field.

    A header is a field name (``albumin``) or its on-screen label (``Albumin``), any case, optionally
    followed by a unit in brackets (``Albumin (g/L)``, ``albumin [g/L]``). InputError for a lab field
    with a unit it cannot be given in.
    """
    text = " ".join(str(header).split())
    name = _NAMES.get(_name_key(text))
    if name is not None:
        return name, None
    if text.endswith((")", "]")):
        opening = text.rfind("(" if text.endswith(")") else "[")
        if opening > 0:
            name = _NAMES.get(_name_key(text[:opening]))
            given = text[opening + 1:-1].strip()
            if name is not None:
                return name, _unit_of(name, given, header=text)
    return None


def _unit_of(name: str, given: str, *, header: str) -> str:
    """The schema spelling of unit ``given`` for field ``name``; InputError naming the header otherwise."""
    label = schema.NUMERIC_BY_NAME[name].label if name in schema.NUMERIC_BY_NAME else None
    if label is None:
        raise InputError(f"column {_shown(header)}: {schema.CATEGORICAL_BY_NAME[name].label} has no unit; "
                         f"name the column {name} or {schema.CATEGORICAL_BY_NAME[name].label}")
    for unit in units_of(name):
        if _unit_key(unit) == _unit_key(given):
            return unit
    raise InputError(f"column {_shown(header)}: {label} cannot be given in {_shown(given)}; give it in "
                     f"{' or '.join(units_of(name))} (name the column e.g. '{label} ({units_of(name)[-1]})')")


def read_lab_import(data: bytes, name: str, *, patient_id: str | None = None) -> LabImport:
    """The lab fields of an export of the lab system: a JSON object or a CSV of one row (or several, with a
    ``patient_id`` column and ``patient_id`` naming the row), in at most ``PFS_CORE_MAX_LABS_KB``.

    JSON: ``{"albumin": 3.9, ...}`` or ``{"labs": {...}}``; a value may be ``{"value": 39, "unit": "g/L"}``.
    CSV: a header of field names or on-screen labels, any case, a unit in brackets where the field has unit
    choices (``Albumin (g/L)``), then one row; comma, semicolon or tab separated (with ';' or tab, decimal
    commas are read). Cohort-table columns (patient_id, pet, ct, pfs_months...) are skipped, other unknown
    columns are listed in ``ignored``. Values are converted to the model units and checked like
    :func:`validate_labs`; one InputError names the file, each bad column (and row) and the fix, never the value.
    """
    if len(data) > limits().max_labs_bytes:
        raise refuse(name, "the lab file is larger than allowed", "max_labs_bytes")
    cells: list[tuple[str, Any]] | None
    rows: tuple[str, ...] = ()
    row: str | None = None
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if name.lower().endswith(".json") or (head in (b"{", b"[") and not name.lower().endswith((".csv", ".tsv"))):
        cells, decimal_comma = _json_cells(data, name), False
    else:
        table, decimal_comma = _csv_table(data, name)
        cells, rows, row = _csv_row(table, name, patient_id)
        if cells is None:
            return LabImport(values={}, rows=rows)
    return _import_cells(cells, name, rows=rows, row=row, decimal_comma=decimal_comma)


def _json_cells(data: bytes, name: str) -> list[tuple[str, Any]]:
    """The {column: value} object of a lab JSON (or its "labs" member); InputError naming the file otherwise."""
    fix = 'give an object like {"chromogranin_a": 250, "sex": "F"}'
    try:
        obj = decode_json(data)
    except JsonProblem as exc:
        reason = str(exc)
    else:
        if isinstance(obj, dict) and isinstance(obj.get("labs"), dict):
            obj = obj["labs"]
        if isinstance(obj, dict):
            return [(str(key), value) for key, value in obj.items()]
        reason = "not an object of field names and values"
    raise InputError(f"{name}: cannot read the lab JSON ({reason}); {fix}")


def _csv_table(data: bytes, name: str) -> tuple[list[list[str]], bool]:
    """The rows of a lab CSV (header first, blank lines dropped) and whether decimal commas are read."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # a lab system's export in Windows' encoding (µ = 0xB5)
    if "\x00" in text:
        raise InputError(f"{name}: not a text file (JSON or CSV); export the labs as CSV or JSON")
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max((",", ";", "\t"), key=first.count)
    try:
        table = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise InputError(f"{name}: cannot read the lab CSV ({exc}); export it again as CSV") from None
    if len(table) < 2:
        raise InputError(f"{name}: the lab CSV needs a header of field names and a row of values; "
                         f"e.g. 'chromogranin_a,albumin' and then '250,3.9'")
    return table, delimiter != ","


def _csv_row(table: list[list[str]], name: str, patient_id: str | None
             ) -> tuple[list[tuple[str, Any]] | None, tuple[str, ...], str | None]:
    """(cells of the chosen row, row names, chosen row name); cells None while a choice among rows is needed."""
    header = [cell.strip() for cell in table[0]]
    body = table[1:]
    for number, row in enumerate(body, start=2):
        if len(row) > len(header):
            raise InputError(f"{name}: line {number} has more cells than the header; check the separator and "
                             "quote cells that contain it")
    body = [row + [""] * (len(header) - len(row)) for row in body]  # trailing empty cells left out
    id_at = next((i for i, h in enumerate(header) if h.casefold() == schema.ID_COLUMN), None)
    ids = [row[id_at].strip() for row in body] if id_at is not None else []
    names = tuple(ids) if all(ids) and len(set(ids)) == len(body) else tuple(f"row {i}" for i in range(1, len(body) + 1))
    if len(body) == 1 and patient_id is None:
        return list(zip(header, body[0], strict=True)), (), None
    if patient_id is None:
        return None, names, None
    if patient_id not in names:
        raise InputError(f"{name}: no row of that {schema.ID_COLUMN}; choose one of the file's {len(names)} rows")
    return list(zip(header, body[names.index(patient_id)], strict=True)), names, patient_id


def _import_cells(cells: list[tuple[str, Any]], name: str, *, rows: tuple[str, ...], row: str | None,
                  decimal_comma: bool) -> LabImport:
    """Map each column to its field, convert to the model unit and check; one InputError for every problem."""
    where = f"{name}{f' ({row})' if row else ''}"
    columns: dict[str, tuple[str, str | None, Any]] = {}
    ignored: list[str] = []
    problems: list[str] = []
    for header, cell in cells:
        try:
            found = lab_column(header)
        except InputError as exc:
            problems.append(str(exc))
            continue
        if found is None:
            if header.strip().casefold() not in COHORT_ONLY_COLUMNS and header.strip():
                ignored.append(header.strip())
            continue
        field_name, unit = found
        if isinstance(cell, dict) and "value" in cell:  # {"value": 39, "unit": "g/L"}
            if unit is None and isinstance(cell.get("unit"), str) and field_name in schema.NUMERIC_BY_NAME:
                try:
                    unit = _unit_of(field_name, cell["unit"], header=f"{header} (unit {cell['unit']})")
                except InputError as exc:
                    problems.append(str(exc))
                    continue
            cell = cell["value"]
        if field_name in columns:
            problems.append(f"columns {_shown(columns[field_name][0])} and {_shown(header)} both give "
                            f"{schema.label(field_name)}; keep one")
            continue
        columns[field_name] = (header, unit, cell)
    values: dict[str, float | str | None] = {}
    entered: dict[str, tuple[float, str]] = {}
    for field_name, (header, unit, cell) in columns.items():
        value, reason = _import_value(field_name, unit, cell, decimal_comma=decimal_comma)
        if reason:
            problems.append(f"column {_shown(header)} ({schema.label(field_name)}): {reason}")
            continue
        values[field_name] = value[0] if value else None
        if value and value[1]:
            entered[field_name] = value[1]
    if problems:
        raise InputError(f"{where}: {len(problems)} problem(s): " + "; ".join(problems))
    order = {n: i for i, n in enumerate(schema.LAB_COLUMNS)}
    return LabImport(values=dict(sorted(values.items(), key=lambda kv: order[kv[0]])), entered=entered,
                     ignored=tuple(ignored), rows=rows, row=row)


def _import_value(name: str, unit: str | None, cell: Any, *, decimal_comma: bool
                  ) -> tuple[tuple[float | str, tuple[float, str] | None] | None, str | None]:
    """((model value, (value as given, unit) or None), None), (None, None) when empty, or (None, reason)."""
    if is_missing(cell):
        return None, None
    if name in schema.CATEGORICAL_BY_NAME:
        levels = schema.CATEGORICAL_BY_NAME[name].levels
        key = _name_key(cell) if isinstance(cell, str) else None
        match = next((level for level in levels if key == _name_key(level)), None)
        match = match or (_LEVEL_WORDS.get(key or "") if name == "sex" else None)
        if match is None:
            return None, f"not an allowed value; use one of {', '.join(levels)} or leave it empty"
        return (match, None), None
    feature = schema.NUMERIC_BY_NAME[name]
    unit = unit or feature.unit
    if decimal_comma and isinstance(cell, str) and cell.count(",") == 1 and "." not in cell:
        cell = cell.replace(",", ".")
    number = as_number(cell)
    if number is None:
        _value, reason = parse_lab(name, cell)  # "not a number" or, for a huge integer, "outside"
        return None, (reason or "not a number").replace(f"give it in {feature.unit}", f"give it in {unit}")
    value, reason = parse_lab(name, schema.to_model_unit(name, number, unit))
    if reason:
        factor = schema.to_model_unit(name, 1.0, unit)
        low, high = (bound / factor for bound in feature.plausible)
        hint = f" (name the unit in the header, e.g. '{feature.label} ({units_of(name)[-1]})')" if feature.alt_units else ""
        return None, f"outside the plausible range {low:.4g}-{high:.4g} {unit}; check the value and its unit{hint}"
    assert value is not None
    return (value, (number, unit)), None
