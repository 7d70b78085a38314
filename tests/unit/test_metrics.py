"""pfs_core.metrics: the rank AUROC is scikit-learn's; the paired bootstrap is a plain loop's, vectorised."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pfs_core.metrics import paired_auroc_bootstrap, rank_auroc


def _two_models(n: int = 90, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a good model and a weak one; rounded to two decimals so that ties occur."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(float)
    good = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 2)
    weak = np.round(np.clip(0.05 * y + 0.95 * rng.random(n), 0, 1), 2)
    return y, good, weak


def test_rank_auroc_equals_sklearn_with_ties_row_by_row():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (50, 40))
    scores = rng.integers(0, 6, (50, 40)).astype(float)  # many ties
    batched = rank_auroc(y, scores)
    assert batched.shape == (50,)
    for row in range(50):
        assert batched[row] == pytest.approx(roc_auc_score(y[row], scores[row]), abs=1e-12)
    assert float(rank_auroc(y[0], scores[0])) == pytest.approx(roc_auc_score(y[0], scores[0]), abs=1e-12)
    assert np.isnan(rank_auroc(np.ones(5), np.arange(5.0)))  # one class: no AUROC


def test_paired_bootstrap_equals_a_loop_over_the_same_draws():
    y, good, weak = _two_models()
    result = paired_auroc_bootstrap(y, good, weak, n_boot=300, seed=11)
    draws = np.random.default_rng(11).integers(0, len(y), size=(300, len(y)))
    deltas = np.array([roc_auc_score(y[i], good[i]) - roc_auc_score(y[i], weak[i]) for i in draws])
    assert result["delta"] == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, weak), abs=1e-12)
    assert result["low"] == pytest.approx(np.percentile(deltas, 2.5), abs=1e-12)
    assert result["high"] == pytest.approx(np.percentile(deltas, 97.5), abs=1e-12)
    assert result["p_le_0"] == pytest.approx(np.mean(deltas <= 0), abs=1e-12)


def test_interval_contains_the_delta_and_reverses_with_the_order():
    y, good, weak = _two_models()
    forward = paired_auroc_bootstrap(y, good, weak, n_boot=2000, seed=1)
    assert forward["low"] < forward["delta"] < forward["high"]
    assert forward["delta"] > 0.15 and forward["p_le_0"] < 0.05  # a clearly better model
    backward = paired_auroc_bootstrap(y, weak, good, n_boot=2000, seed=1)
    assert backward["delta"] == pytest.approx(-forward["delta"], abs=1e-12)
    assert backward["low"] == pytest.approx(-forward["high"], abs=1e-12)
    assert backward["p_le_0"] > 0.95


def test_identical_predictions_give_zero_and_a_zero_width_interval():
    y, good, _ = _two_models()
    result = paired_auroc_bootstrap(y, good, good.copy(), n_boot=500, seed=2)
    assert result == {"delta": 0.0, "low": 0.0, "high": 0.0, "p_le_0": 1.0}


def test_unlabelled_patients_are_left_out():
    y, good, weak = _two_models()
    with_nan = np.concatenate([y, [np.nan, np.nan]])
    padded = [np.concatenate([p, [0.99, 0.01]]) for p in (good, weak)]
    assert paired_auroc_bootstrap(with_nan, *padded, n_boot=200, seed=4) == \
        paired_auroc_bootstrap(y, good, weak, n_boot=200, seed=4)
    one_class = paired_auroc_bootstrap(np.ones(6), good[:6], weak[:6], n_boot=50, seed=0)
    assert all(np.isnan(v) for v in one_class.values())


def test_calibration_fit_equals_an_unpenalised_logistic_regression_row_by_row():
    from sklearn.linear_model import LogisticRegression

    from pfs_core.metrics import calibration_fit, logit

    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.95, (3, 150))
    y = (rng.random((3, 150)) < p**1.4).astype(int)
    fit = calibration_fit(y, p)
    for row in range(3):
        model = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(logit(p[row])[:, None], y[row])
        assert fit["slope"][row] == pytest.approx(model.coef_[0, 0], abs=1e-5)
        assert fit["slope_fit_intercept"][row] == pytest.approx(model.intercept_[0], abs=1e-5)
    separated = calibration_fit(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert np.isnan(separated["slope"])  # perfect separation: no finite slope
    assert np.isnan(calibration_fit(np.ones(4), np.full(4, 0.5))["intercept"])  # one class
