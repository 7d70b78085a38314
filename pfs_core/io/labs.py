"""The one parser of lab and clinical values, for a case typed in a form and for a cohort table.

Each value is checked against :mod:`pfs_core.schema` (names, model units, plausible
ranges, categorical levels); an empty cell or a usual missing marker (NA, NaN,
null...) is missing. Reasons name the field and the fix but never quote a
patient's value, so a report can be shared or logged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pfs_core import schema
from pfs_core.errors import InputError

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
