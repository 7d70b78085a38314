"""L2 logistic regression with one penalty weight per modality, chosen by inner cross-validation.

With ~20 prepared lab inputs beside 4 PET and 2 CT read-outs, one L2 penalty for all
columns lets the many lab columns fit noise at 80-120 training patients: on the
116-patient simulated cohort a logistic model of labs + PET + CT read-outs reached
0.644 AUROC, below the PET read-outs alone (0.726). This is the integrative
("IPF") ridge of multi-omics prediction: each modality's standardised block is
scaled by ``weight / sqrt(n_columns)`` before one L2 penalty, so every modality has
the same prior variance whatever its width, and the relative weights (and C) are
chosen by stratified inner cross-validation on log loss (scikit-learn
``GridSearchCV``). The fitted model is folded back into one coefficient per raw input
column, so callers see a plain linear model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

#: Relative block weights tried (the largest block weight is always 1) and the C values tried.
DEFAULT_WEIGHTS: tuple[float, ...] = (0.25, 0.5, 1.0)
DEFAULT_CS: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)


class BlockScale(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """Multiply each block of columns by ``weight / sqrt(block width)``."""

    def __init__(self, sizes: tuple[int, ...] = (), weights: tuple[float, ...] = ()) -> None:
        self.sizes = sizes
        self.weights = weights

    def fit(self, x: np.ndarray, y: Any = None) -> BlockScale:
        return self

    def factors(self) -> np.ndarray:
        """(n_columns,) the factor of each column."""
        weights = self.weights or (1.0,) * len(self.sizes)
        return np.concatenate([np.full(n, w / np.sqrt(n)) for n, w in zip(self.sizes, weights, strict=True)])

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x) * self.factors()


@dataclass(frozen=True)
class BlockLogistic:
    """A fitted block-penalised logistic model on raw columns: logit = ``intercept`` + x @ ``coef``."""

    coef: np.ndarray
    intercept: float
    weights: tuple[float, ...]
    c: float

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + np.asarray(x) @ self.coef

    def to_sklearn(self) -> LogisticRegression:
        """The same model as a fitted scikit-learn ``LogisticRegression`` on the raw columns.

        Its attributes are plain arrays, so skops stores and loads it without any
        custom type; it is for prediction only (refitting it would drop the block penalty).
        """
        model = LogisticRegression(C=self.c, class_weight="balanced", max_iter=5000)
        model.coef_ = np.asarray(self.coef, dtype=np.float64)[None, :]
        model.intercept_ = np.array([self.intercept], dtype=np.float64)
        model.classes_ = np.array([0, 1])
        model.n_features_in_ = int(model.coef_.shape[1])
        model.n_iter_ = np.array([0], dtype=np.int32)
        return model


def weight_grid(n_blocks: int, weights: tuple[float, ...] = DEFAULT_WEIGHTS) -> list[tuple[float, ...]]:
    """Every combination of relative block weights whose largest is the largest in ``weights``."""
    top = max(weights)
    return [w for w in itertools.product(weights, repeat=n_blocks) if max(w) == top]


def fit_block_logistic(x: np.ndarray, y: np.ndarray, sizes: tuple[int, ...], *, seed: int,
                       weights: tuple[float, ...] = DEFAULT_WEIGHTS, cs: tuple[float, ...] = DEFAULT_CS,
                       folds: int = 5) -> BlockLogistic:
    """Choose block weights and C by stratified ``folds``-fold log loss, refit on all rows with balanced classes.

    ``x`` (N, sum(sizes)): the blocks side by side; ``y`` (N,) 0/1. The selection fits
    unweighted models, so that the log loss compares calibrated probabilities; the final
    fit weights the classes like the networks' pos-weighted loss.
    """
    y = np.asarray(y).astype(int)
    pipeline = Pipeline([("scale", StandardScaler()), ("block", BlockScale(sizes)),
                         ("logistic", LogisticRegression(max_iter=5000))])
    folds = max(2, min(folds, int(np.bincount(y, minlength=2).min())))
    search = GridSearchCV(pipeline, {"block__weights": weight_grid(len(sizes), weights), "logistic__C": list(cs)},
                          scoring="neg_log_loss", cv=StratifiedKFold(folds, shuffle=True, random_state=seed % 2**31),
                          n_jobs=1, refit=False)
    search.fit(x, y)
    best = search.best_params_
    pipeline.set_params(**best, logistic__class_weight="balanced").fit(x, y)
    scaler, block, logistic = (pipeline.named_steps[k] for k in ("scale", "block", "logistic"))
    coef = logistic.coef_[0] * block.factors() / scaler.scale_
    return BlockLogistic(coef=coef, intercept=float(logistic.intercept_[0] - coef @ scaler.mean_),
                         weights=tuple(best["block__weights"]), c=float(best["logistic__C"]))
