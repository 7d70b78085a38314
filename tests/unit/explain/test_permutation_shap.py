"""pfs_core's permutation SHAP gives shap.PermutationExplainer's values (same algorithm and permutations)."""

import numpy as np
import pytest

from pfs_core.explain.shapley import permutation_shap


def _model(rows: np.ndarray) -> np.ndarray:
    """A non-additive model that reads NaN as its own value (like the lab transform's missing flags)."""
    x = np.nan_to_num(rows, nan=-1.0)
    return 1.0 / (1.0 + np.exp(-(0.8 * x[:, 0] - 0.5 * x[:, 1] * x[:, 2] + 0.3 * np.sin(x[:, 3]) + 0.1 * x[:, 4])))


def _case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    background = rng.normal(size=(12, 6))
    background[:, 5] = 2.0  # the patient equals every background row here: SHAP value 0, not permuted
    background[rng.random(background.shape) < 0.1] = np.nan
    x = rng.normal(size=6)
    x[5] = 2.0
    x[1] = np.nan  # missing in the patient
    return x, background


@pytest.mark.parametrize("max_evals", [13, 100, 600])
def test_values_add_up_to_the_output(max_evals):
    x, background = _case(1)
    values, base = permutation_shap(_model, x, background, max_evals=max_evals, seed=0)
    assert values.shape == (6,) and values[5] == 0.0
    assert base == pytest.approx(_model(background).mean(), abs=1e-12)
    assert base + values.sum() == pytest.approx(_model(x[None])[0], abs=1e-12)


def test_too_few_evaluations_is_an_error():
    x, background = _case(2)
    with pytest.raises(ValueError, match="max_evals"):
        permutation_shap(_model, x, background, max_evals=5)


def test_a_patient_equal_to_the_background_gets_zeros():
    background = np.ones((3, 4))
    values, base = permutation_shap(lambda rows: rows.sum(axis=1), np.ones(4), background, max_evals=50)
    assert np.array_equal(values, np.zeros(4)) and base == 4.0


@pytest.mark.slow  # shap compiles its numba kernels on first use (~15 s of CPU)
@pytest.mark.parametrize(("seed", "max_evals"), [(0, 600), (3, 100), (7, 13)])
def test_same_values_as_shap_permutation_explainer(seed, max_evals):
    shap = pytest.importorskip("shap")
    x, background = _case(seed)
    masker = shap.maskers.Independent(background, max_samples=len(background))
    reference = shap.PermutationExplainer(_model, masker, seed=seed)(x[None], max_evals=max_evals, silent=True)
    values, base = permutation_shap(_model, x, background, max_evals=max_evals, seed=seed)
    np.testing.assert_allclose(values, reference.values[0], rtol=0, atol=1e-12)
    assert base == pytest.approx(float(np.ravel(reference.base_values)[0]), abs=1e-12)
