"""The lab and clinical values form: units, reference ranges, unit choices, missing values allowed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import streamlit as st

from pfs_core import schema

MISSING = "(not available)"


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
    value = box[0].number_input(
        label, value=None if default is None else float(default), min_value=0.0, format="%.2f",
        key=f"{key_prefix}{feature.name}", placeholder="missing: imputed", help=help_text,
    )
    unit = box[1].selectbox("unit", units, key=f"{key_prefix}{feature.name}_unit") if len(units) > 1 else units[0]
    return value, unit


def labs_form(defaults: Mapping[str, Any], *, key_prefix: str = "lab_", show_post_baseline: bool = False
              ) -> dict[str, float | str | None]:
    """Render the fields (inside an st.form) and return the values in the model units of :mod:`pfs_core.schema`."""
    values: dict[str, float | str | None] = {}
    numeric = [f for f in schema.NUMERIC_FEATURES
               if show_post_baseline or f.name not in schema.POST_BASELINE_COLUMNS]
    columns = st.columns(3)
    for i, feature in enumerate(numeric):
        with columns[i % 3]:
            value, unit = _numeric_input(feature, _default(defaults, feature.name), key_prefix=key_prefix)
        values[feature.name] = None if value is None else schema.to_model_unit(feature.name, float(value), unit)
    for i, feature in enumerate(schema.CATEGORICAL_FEATURES):
        options = [MISSING, *feature.levels]
        default = _default(defaults, feature.name)
        with columns[i % 3]:
            choice = st.selectbox(feature.label, options, index=options.index(default) if default in options else 0,
                                  key=f"{key_prefix}{feature.name}")
        values[feature.name] = None if choice == MISSING else choice
    return values


