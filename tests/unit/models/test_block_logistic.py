import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pfs_core.models.block_logistic import BlockScale, fit_block_logistic, weight_grid


def _blocks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 2-column block that carries the outcome, then a 20-column block of noise (raw units)."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(n, 2)) * [3.0, 0.5] + [10.0, -2.0]
    noise = rng.normal(size=(n, 20)) * 5.0
    logit = 1.2 * (signal[:, 0] - 10.0) / 3.0 - 1.0 * (signal[:, 1] + 2.0) / 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return np.hstack([signal, noise]), y


def test_weight_grid_keeps_the_largest_weight_in_every_combination():
    grid = weight_grid(3, (0.25, 0.5, 1.0))
    assert len(grid) == 27 - 8 and all(max(w) == 1.0 for w in grid)
    assert weight_grid(1, (0.5, 1.0)) == [(1.0,)]


def test_block_scale_gives_each_block_the_same_total_variance():
    x = StandardScaler().fit_transform(np.random.default_rng(0).normal(size=(50, 6)))
    scaled = BlockScale((2, 4), (1.0, 1.0)).transform(x)
    assert scaled[:, :2].var(axis=0).sum() == pytest.approx(scaled[:, 2:].var(axis=0).sum())


def test_noise_block_is_penalised_more_and_raw_coefficients_reproduce_the_pipeline():
    x, y = _blocks(90, seed=1)
    fit = fit_block_logistic(x, y, (2, 20), seed=0)
    assert fit.weights[0] == 1.0 and fit.weights[1] < 1.0
    # the folded raw-column model equals the balanced logistic fit on the scaled blocks
    scaler = StandardScaler().fit(x)
    scaled = BlockScale((2, 20), fit.weights).transform(scaler.transform(x))
    reference = LogisticRegression(C=fit.c, class_weight="balanced", max_iter=5000).fit(scaled, y)
    np.testing.assert_allclose(fit.decision_function(x), reference.decision_function(scaled), atol=1e-8)
    again = fit_block_logistic(x, y, (2, 20), seed=0)
    assert again.weights == fit.weights and np.array_equal(again.coef, fit.coef)


def test_block_penalties_beat_one_penalty_on_held_out_patients_with_a_wide_noise_block():
    from sklearn.metrics import roc_auc_score

    x, y = _blocks(400, seed=2)
    train, test = slice(0, 90), slice(90, None)
    block = fit_block_logistic(x[train], y[train], (2, 20), seed=0)
    scaler = StandardScaler().fit(x[train])
    plain = LogisticRegression(C=0.3, class_weight="balanced", max_iter=5000).fit(scaler.transform(x[train]), y[train])
    assert roc_auc_score(y[test], block.decision_function(x[test])) > roc_auc_score(
        y[test], plain.decision_function(scaler.transform(x[test])))


def test_to_sklearn_predicts_the_same_and_round_trips_through_skops_with_default_types(tmp_path):
    import skops.io as sio

    x, y = _blocks(90, seed=3)
    fit = fit_block_logistic(x, y, (2, 20), seed=0)
    model = fit.to_sklearn()
    np.testing.assert_allclose(model.predict_proba(x)[:, 1], 1 / (1 + np.exp(-fit.decision_function(x))), atol=1e-12)
    sio.dump(model, tmp_path / "m.skops")
    assert sio.get_untrusted_types(file=tmp_path / "m.skops") == []
    loaded = sio.load(tmp_path / "m.skops", trusted=[])
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
