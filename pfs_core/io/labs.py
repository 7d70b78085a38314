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
    except (TypeError, ValueError):
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
        text = str(value).strip()
        if text not in levels:
            return None, f"not an allowed value; use one of {', '.join(levels)} or leave it empty"
        return text, None
    feature = schema.NUMERIC_BY_NAME[name]
    number = as_number(value)
    if number is None:
        return None, f"not a number; give it in {feature.unit} or leave it empty"
    low, high = feature.plausible
    if not low <= number <= high:
        alt = "".join(f"; from {c.unit} multiply by {c.factor:g}" for c in feature.alt_units)
        return None, (f"outside the plausible range {low:g}-{high:g} {feature.unit}; check the value and "
                      f"its unit (expected {feature.unit}{alt})")
    return number, None


def validate_labs(labs: Mapping[str, Any]) -> dict[str, float | str | None]:
    """Check one patient's names, types and plausible ranges; every schema lab column (None = missing).

    Unknown names or a bad value raise :class:`InputError` naming the field and the fix.
    """
    unknown = sorted(set(labs) - set(schema.LAB_COLUMNS))
    if unknown:
        raise InputError(f"labs: unknown field(s) {', '.join(map(repr, unknown))}; "
                         f"use the names {', '.join(schema.LAB_COLUMNS)}")
    clean: dict[str, float | str | None] = {}
    for name in schema.LAB_COLUMNS:
        clean[name], reason = parse_lab(name, labs.get(name))
        if reason:
            raise InputError(f"labs: {name} = {labs.get(name)!r} is {reason}")
    return clean
