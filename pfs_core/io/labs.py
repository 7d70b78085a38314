"""TODO-DOC

[from pfs_core.inference] Inference with a model bundle: the one entry the pages, ``predict``, ``score`` and ``explain`` call.

``predict_case`` scores one patient from PET/CT :class:`~pfs_core.io.Volume`
objects (either may be None) and a mapping of lab values in the model units of
:mod:`pfs_core.schema`; ``predict_cohort`` scores every row of a cohort table.

The probability is the mean over the bundle's fold models; the interval is the
min–max of the fold models' probabilities (with 3 folds, the full spread of the
ensemble; it is a rough uncertainty, not a calibrated confidence interval). The
risk group is "high" when the probability is at or above the training cohort's
median OOF probability (stored in the bundle), else "low".

[from pfs_core.io.cohort] Row-by-row check of a cohort table before it is benchmarked, trained on or scored.

:func:`validate_cohort` reads ``cohort.csv`` as text and reports *every* bad row
(:class:`RowProblem`: row number, patient id, column, reason) instead of stopping
at the first one; the rows without a problem go on (:attr:`CohortReport.good`).
Only a file that cannot be used at all (unreadable, no rows, required columns
missing) raises :class:`pfs_core.errors.InputError`.

Row numbers are **spreadsheet row numbers**: the header is row 1, the first
patient is row 2 (what a spreadsheet program shows, and the line number in a text
editor when no cell spans lines). Reasons name the column and the rule but never
quote a patient's lab or outcome value, so a report can be shared or logged; image
problems carry the :class:`~pfs_core.errors.InputError` message of the image
loader (it names the file).

:func:`write_good_cohort` writes the good rows as a cohort table with absolute
image paths (what ``benchmark``/``train``/``score`` read); :func:`score_cohort`
validates, scores the good rows with a bundle and returns both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pfs_core import schema
from pfs_core.errors import InputError


def _numeric(name: str, value: Any) -> float | None:
    feature = schema.NUMERIC_BY_NAME[name]
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise InputError(f"labs: {name} must be a number in {feature.unit}, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"labs: {name} = {value!r} is not a number; give it in {feature.unit}") from None
    if math.isnan(number):
        return None
    low, high = feature.plausible
    if not low <= number <= high:
        alt = "".join(f"; from {c.unit} multiply by {c.factor:g}" for c in feature.alt_units)
        raise InputError(f"labs: {name} = {number:g} {feature.unit} is outside the plausible range "
                         f"{low:g}-{high:g} {feature.unit}; check the value and its unit (expected {feature.unit}{alt})")
    return number


def _categorical(name: str, value: Any) -> str | None:
    levels = schema.CATEGORICAL_BY_NAME[name].levels
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    if str(value) not in levels:
        raise InputError(f"labs: {name} = {value!r} is not allowed; use one of {', '.join(levels)} or leave it empty")
    return str(value)


def validate_labs(labs: Mapping[str, Any]) -> dict[str, float | str | None]:
    """Check names, types and plausible ranges; returns every schema lab column (None = missing).

    Unknown names or implausible values raise :class:`InputError` naming the field and the fix.
    """
    unknown = sorted(set(labs) - set(schema.LAB_COLUMNS))
    if unknown:
        raise InputError(f"labs: unknown field(s) {', '.join(map(repr, unknown))}; "
                         f"use the names {', '.join(schema.LAB_COLUMNS)}")
    clean: dict[str, float | str | None] = {}
    for name in schema.LAB_COLUMNS:
        value = labs.get(name)
        clean[name] = _numeric(name, value) if name in schema.NUMERIC_BY_NAME else _categorical(name, value)
    return clean


#: Cell texts read as "missing" (compared lower-case, after stripping blanks).
MISSING_TEXTS = frozenset({"", "na", "n/a", "nan", "null", "none", "#n/a"})


def is_missing(text: str | None) -> bool:
    """True for an empty cell or a usual 'missing' marker (NA, NaN, null...)."""
    return text is None or text.strip().lower() in MISSING_TEXTS


def _number(text: str) -> float | None:
    """The cell as a finite float, or None when it is not one."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def check_lab(name: str, text: str) -> tuple[Any, str | None]:
    """(parsed value or NaN, reason or None) of one lab/clinical cell; the reason never quotes the value."""
    if is_missing(text):
        return float("nan"), None
    if name in schema.CATEGORICAL_BY_NAME:
        levels = schema.CATEGORICAL_BY_NAME[name].levels
        value = text.strip()
        if value not in levels:
            return float("nan"), f"not an allowed value; use one of {', '.join(levels)} or leave it empty"
        return value, None
    feature = schema.NUMERIC_BY_NAME[name]
    number = _number(text)
    if number is None:
        return float("nan"), f"not a number; give it in {feature.unit} or leave it empty"
    low, high = feature.plausible
    if not low <= number <= high:
        alt = "".join(f"; from {c.unit} multiply by {c.factor:g}" for c in feature.alt_units)
        return float("nan"), (f"outside the plausible range {low:g}-{high:g} {feature.unit}; check the value and "
                              f"its unit (expected {feature.unit}{alt})")
    return number, None
