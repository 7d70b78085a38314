"""The lab and clinical values form: units, reference ranges, unit choices, missing values allowed.

Every field is checked as it is typed, with the one lab parser (:func:`pfs_core.io.labs.lab_problems`), and
all problems come back together, each named by its on-screen label and unit and never quoting the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from pfs_core import schema
from pfs_core.io.labs import lab_problems

MISSING = "(not available)"


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
    value = box[0].number_input(
        label, value=None if default is None else float(default), format="%.2f",
        key=f"{key_prefix}{feature.name}", placeholder="missing: imputed", help=help_text,
    )
    unit = box[1].selectbox("unit", units, key=f"{key_prefix}{feature.name}_unit") if len(units) > 1 else units[0]
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
        with columns[i % 3]:
            choice = st.selectbox(category.label, options, index=options.index(default) if default in options else 0,
                                  key=f"{key_prefix}{category.name}")
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
