"""Lab and clinical feature preparation (a scikit-learn transformer fitted on training folds only).

Numeric labs: skewed ones are log-transformed (``log1p``), then
``SimpleImputer(strategy="median", add_indicator=True)`` (a 0/1 missing flag for
every lab that had missing values in the training fold), then ``StandardScaler``.
Categorical values (sex, primary site) are one-hot encoded with the fixed levels of
:mod:`pfs_core.schema`; a missing or unknown level gives all zeros.

``prrt_cycles`` (:data:`pfs_core.schema.POST_BASELINE_COLUMNS`) is known only after
therapy and is excluded unless ``include_post_baseline=True``.

The fitted transformer exports its parameters as plain arrays
(:class:`TabularParams`, JSON-able) so a model bundle needs no pickle; the
exported transform reproduces the fitted one exactly. :func:`feature_ranges` gives
the training range of each lab, stored in the bundle manifest and checked at inference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pfs_core import schema

#: Right-skewed labs that enter the model as log1p(value).
LOG_COLUMNS: tuple[str, ...] = (
    "chromogranin_a", "gamma_gt", "alkaline_phosphatase", "ast", "alt", "bilirubin", "ki67",
)


def numeric_columns(*, include_post_baseline: bool = False) -> tuple[str, ...]:
    """Numeric lab/clinical columns used as model input (schema order)."""
    return tuple(
        f.name for f in schema.NUMERIC_FEATURES
        if include_post_baseline or f.name not in schema.POST_BASELINE_COLUMNS
    )


def categorical_columns() -> tuple[str, ...]:
    """Categorical columns used as model input (schema order)."""
    return tuple(f.name for f in schema.CATEGORICAL_FEATURES)


def _numeric_block(frame: pd.DataFrame, columns: Sequence[str], log_columns: Sequence[str]) -> np.ndarray:
    """(N, len(columns)) float64 with NaN for missing; log1p applied to ``log_columns``."""
    block = np.empty((len(frame), len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        values = pd.to_numeric(frame[name], errors="coerce") if name in frame else pd.Series(np.nan, index=frame.index)
        col = values.to_numpy(dtype=np.float64, na_value=np.nan)
        if name in log_columns:
            col = np.log1p(np.clip(col, 0.0, None))
        block[:, j] = col
    return block


def _categorical_block(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """(N, len(columns)) object array of strings; missing becomes "missing" (an unknown level)."""
    out = np.empty((len(frame), len(columns)), dtype=object)
    for j, name in enumerate(columns):
        col = frame[name] if name in frame else pd.Series([None] * len(frame), index=frame.index)
        out[:, j] = [str(v) if isinstance(v, str) and v else "missing" for v in col]
    return out


class LabTransformer(TransformerMixin, BaseEstimator):
    """Log / median-impute with indicators / standardise numeric labs; one-hot categoricals.

    ``fit(X)`` takes a DataFrame with the lab columns of :mod:`pfs_core.schema`
    (training rows only); ``transform(X)`` returns (N, F) float32.
    """

    def __init__(self, include_post_baseline: bool = False, log_columns: Sequence[str] = LOG_COLUMNS) -> None:
        self.include_post_baseline = include_post_baseline
        self.log_columns = log_columns

    def fit(self, X: pd.DataFrame, y: Any = None) -> LabTransformer:
        self.numeric_columns_ = numeric_columns(include_post_baseline=self.include_post_baseline)
        self.categorical_columns_ = categorical_columns()
        numeric = _numeric_block(X, self.numeric_columns_, self.log_columns)
        self.imputer_ = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
        imputed = self.imputer_.fit_transform(numeric)
        self.scaler_ = StandardScaler().fit(imputed)
        levels = [list(schema.CATEGORICAL_BY_NAME[c].levels) for c in self.categorical_columns_]
        self.encoder_ = OneHotEncoder(categories=levels, handle_unknown="ignore", sparse_output=False)
        self.encoder_.fit(_categorical_block(X, self.categorical_columns_))
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        numeric = _numeric_block(X, self.numeric_columns_, self.log_columns)
        scaled = self.scaler_.transform(self.imputer_.transform(numeric))
        onehot = self.encoder_.transform(_categorical_block(X, self.categorical_columns_))
        return np.hstack([scaled, onehot]).astype(np.float32)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.to_params().feature_names, dtype=object)

    def to_params(self) -> TabularParams:
        """Export the fitted parameters as plain arrays (see :class:`TabularParams`)."""
        indicator = self.imputer_.indicator_
        indicator_idx = tuple(int(i) for i in indicator.features_) if indicator is not None else ()
        return TabularParams(
            numeric_columns=tuple(self.numeric_columns_),
            log_columns=tuple(c for c in self.numeric_columns_ if c in self.log_columns),
            medians=tuple(float(v) for v in self.imputer_.statistics_),
            indicator_columns=tuple(self.numeric_columns_[i] for i in indicator_idx),
            mean=tuple(float(v) for v in self.scaler_.mean_),
            scale=tuple(float(v) for v in self.scaler_.scale_),
            categorical={c: tuple(schema.CATEGORICAL_BY_NAME[c].levels) for c in self.categorical_columns_},
            include_post_baseline=bool(self.include_post_baseline),
        )


@dataclass(frozen=True)
class TabularParams:
    """Fitted lab transform as plain values (stored as JSON in a bundle).

    ``medians`` are in the transformed (log1p for ``log_columns``) scale;
    ``mean``/``scale`` cover the numeric columns followed by the missing
    indicators of ``indicator_columns``.
    """

    numeric_columns: tuple[str, ...]
    log_columns: tuple[str, ...]
    medians: tuple[float, ...]
    indicator_columns: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    categorical: Mapping[str, tuple[str, ...]]
    include_post_baseline: bool

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the F output columns."""
        names = [f"log1p_{c}" if c in self.log_columns else c for c in self.numeric_columns]
        names += [f"missing_{c}" for c in self.indicator_columns]
        names += [f"{c}={level}" for c, levels in self.categorical.items() for level in levels]
        return tuple(names)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """(N, F) float32, identical to :meth:`LabTransformer.transform` of the fitted transformer."""
        numeric = _numeric_block(frame, self.numeric_columns, self.log_columns)
        missing = np.isnan(numeric)
        imputed = np.where(missing, np.asarray(self.medians)[None, :], numeric)
        flags = [missing[:, self.numeric_columns.index(c)].astype(np.float64) for c in self.indicator_columns]
        stacked = np.hstack([imputed, np.stack(flags, axis=1)]) if flags else imputed
        scaled = (stacked - np.asarray(self.mean)) / np.asarray(self.scale)
        cats = _categorical_block(frame, tuple(self.categorical))
        onehot = [
            (cats[:, j][:, None] == np.asarray(levels, dtype=object)[None, :]).astype(np.float64)
            for j, levels in enumerate(self.categorical.values())
        ]
        return np.hstack([scaled, *onehot]).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric_columns": list(self.numeric_columns), "log_columns": list(self.log_columns),
            "medians": list(self.medians), "indicator_columns": list(self.indicator_columns),
            "mean": list(self.mean), "scale": list(self.scale),
            "categorical": {k: list(v) for k, v in self.categorical.items()},
            "include_post_baseline": self.include_post_baseline,
            "feature_names": list(self.feature_names),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TabularParams:
        return cls(
            numeric_columns=tuple(data["numeric_columns"]), log_columns=tuple(data["log_columns"]),
            medians=tuple(float(v) for v in data["medians"]),
            indicator_columns=tuple(data["indicator_columns"]),
            mean=tuple(float(v) for v in data["mean"]), scale=tuple(float(v) for v in data["scale"]),
            categorical={k: tuple(v) for k, v in data["categorical"].items()},
            include_post_baseline=bool(data["include_post_baseline"]),
        )


def fit_lab_transform(frame: pd.DataFrame, *, include_post_baseline: bool = False) -> TabularParams:
    """Fit :class:`LabTransformer` on ``frame`` (training rows only) and export its parameters."""
    return LabTransformer(include_post_baseline=include_post_baseline).fit(frame).to_params()


def feature_ranges(frame: pd.DataFrame, *, include_post_baseline: bool = False) -> dict[str, dict[str, Any]]:
    """Per numeric lab, in its model unit: unit, n, n_missing, min, max, p01, p99 (training cohort)."""
    ranges: dict[str, dict[str, Any]] = {}
    for name in numeric_columns(include_post_baseline=include_post_baseline):
        values = pd.to_numeric(frame[name], errors="coerce").dropna().to_numpy(dtype=float)
        info: dict[str, Any] = {"unit": schema.NUMERIC_BY_NAME[name].unit, "n": int(values.size),
                                "n_missing": int(len(frame) - values.size)}
        if values.size:
            info.update(min=float(values.min()), max=float(values.max()),
                        p01=float(np.percentile(values, 1)), p99=float(np.percentile(values, 99)))
        ranges[name] = info
    return ranges
