"""The calibrated interval of pfs_core.uncertainty: conformal quantile, widening outside the training data,
the fold-spread fallback, and a bundle trained beside a ground truth carrying its calibration."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pfs_core.errors import BundleError
from pfs_core.uncertainty import (
    A_OUTSIDE,
    FALLBACK_METHOD,
    calibrate,
    calibrate_oof,
    conformal_quantile,
    difficulty,
    expit,
    input_ranges,
    interval,
    logit,
    read_calibration,
)

sys.path.insert(0, str(Path(__file__).parent / "models"))


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(predicted, true, inputs): true logit = predicted logit + N(0, 1) noise; two inputs, uniform on [0, 1]."""
    rng = np.random.default_rng(seed)
    pred = expit(rng.normal(0, 1.5, n))
    true = expit(logit(pred) + rng.normal(0, 1, n))
    inputs = pd.DataFrame({"x": rng.uniform(0, 1, n), "y": rng.uniform(0, 1, n)})
    return pred, true, inputs


def test_conformal_quantile_uses_the_finite_sample_rank():
    assert conformal_quantile(np.arange(1, 10), 0.9) == 9  # ceil(10 * 0.9) = 9th of 9
    assert conformal_quantile(np.arange(1, 20), 0.9) == 18  # ceil(20 * 0.9) = 18th of 19
    assert conformal_quantile([3.0, 1.0, 2.0, math.nan], 0.5) == 2.0  # NaN ignored, order irrelevant
    assert math.isinf(conformal_quantile(np.arange(1, 6), 0.9))  # 5 rows cannot give 90 %


def test_calibrated_interval_covers_about_90_percent_of_fresh_cases():
    pred, true, inputs = synthetic(1000, 0)
    entry = calibrate(pred, true, inputs, folds=np.arange(1000) % 3, against="synthetic truth")
    assert entry["level"] == 0.9 and entry["n_calibration"] == 1000
    assert entry["q"] == pytest.approx(1.645, abs=0.12)  # 90 % of |N(0, 1)|
    calibration = read_calibration({"uncertainty": entry})
    new_pred, new_true, new_inputs = synthetic(2000, 1)
    covered = []
    for p, t, (_, row) in zip(new_pred, new_true, new_inputs.iterrows(), strict=True):
        span = interval(float(p), calibration, values=row.to_dict(), fold_probabilities=[p, p, p])
        assert span.low <= p <= span.high and span.level == 0.9
        covered.append(span.low <= t <= span.high)
    assert np.mean(covered) == pytest.approx(0.9, abs=0.03)


def test_interval_widens_outside_the_training_range_and_with_missing_inputs():
    pred, true, inputs = synthetic(300, 2)
    calibration = read_calibration({"uncertainty": calibrate(pred, true, inputs, against="synthetic truth")})
    assert calibration is not None
    inside = interval(0.5, calibration, values={"x": 0.5, "y": 0.5}, fold_probabilities=[0.5])
    outside = interval(0.5, calibration, values={"x": 3.0, "y": 0.5}, fold_probabilities=[0.5],
                       labels={"x": "Ki-67"})
    missing = interval(0.5, calibration, values={"x": None, "y": 0.5}, fold_probabilities=[0.5])
    assert inside.high - inside.low < missing.high - missing.low < outside.high - outside.low
    assert inside.difficulty is not None and inside.difficulty.scale == 1.0
    assert outside.difficulty is not None and outside.difficulty.outside == ["x"]
    assert outside.difficulty.scale == pytest.approx(1 + A_OUTSIDE * 2.0 / (0.99 - 0.01), rel=0.05)  # 2 spans beyond
    assert "9 of 10" in inside.sentence and "wider" not in inside.sentence
    assert "1 input lies outside the training range (Ki-67)" in outside.sentence
    assert "1 input is missing" in missing.sentence


def test_difficulty_counts_overshoot_in_training_spans():
    ranges = input_ranges(pd.DataFrame({"a": np.linspace(0, 10, 101)}))
    assert difficulty({"a": 5.0}, ranges).scale == 1.0
    below = difficulty({"a": -ranges["a"]["p99"] + ranges["a"]["p01"]}, ranges)  # one span below the min
    assert below.overshoot == pytest.approx(1.0, rel=0.01) and below.outside == ["a"]
    assert difficulty({"a": None, "b": 1.0}, ranges).scale == pytest.approx(1.5)  # half the inputs missing


def test_without_calibration_the_fold_spread_is_labelled_as_such():
    span = interval(0.6, None, values={}, fold_probabilities=[0.55, 0.6, 0.65])
    assert (span.low, span.high) == (0.55, 0.65)
    assert span.level is None and span.method == FALLBACK_METHOD
    assert "not a calibrated interval" in span.sentence


def test_calibrate_oof_needs_enough_true_risks():
    pred, true, inputs = synthetic(30, 3)
    ids = [f"P{i:02d}" for i in range(30)]
    oof = pd.DataFrame({"patient_id": ids, "fold": np.arange(30) % 3, "oof_probability": pred})
    truth = pd.DataFrame({"patient_id": ids, "p_short_pfs_true": true})
    assert calibrate_oof(oof, truth, inputs.set_axis(ids), against="t")["n_calibration"] == 30
    assert calibrate_oof(oof, None, inputs.set_axis(ids), against="t") is None
    assert calibrate_oof(oof, truth.iloc[:10], inputs.set_axis(ids), against="t") is None  # 10 < 20 rows


@pytest.mark.parametrize("entry", [{"q": "x", "level": 0.9, "ranges": {}, "inputs": []},
                                   {"q": 1.0, "level": 1.5, "ranges": {}, "inputs": []},
                                   {"q": 1.0, "level": 0.9, "ranges": {"a": {"min": 0}}, "inputs": ["a"]},
                                   {"level": 0.9}])
def test_a_malformed_calibration_is_a_bundle_error(entry):
    with pytest.raises(BundleError, match="uncertainty"):
        read_calibration({"uncertainty": entry})
    assert read_calibration({}) is None


def test_a_bundle_trained_beside_a_ground_truth_carries_its_calibration(tmp_path):
    from model_fixtures import FAST, PROVENANCE, make_cohort

    from pfs_core.inference import predict_case
    from pfs_core.models.bundle import load_bundle
    from pfs_core.models.registry import get_spec
    from pfs_core.training.bundle import train_bundle

    data = make_cohort(30, seed=1)
    folder = tmp_path / "cohort"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pd.DataFrame({"patient_id": [str(p) for p in data.patient_ids],
                  "p_short_pfs_true": rng.uniform(0.1, 0.9, len(data))}).to_csv(folder / "ground_truth.csv",
                                                                                 index=False)
    path = train_bundle(data, get_spec("lab_rf"), tmp_path / "bundle", folds=3, seed=0, config=FAST,
                        provenance={**PROVENANCE, "source": str(folder / "cohort.csv")})
    bundle = load_bundle(path)
    assert bundle.manifest["uncertainty"]["n_calibration"] == 30
    assert "calibrated" in (path / "MODEL_CARD.md").read_text()
    labs = {"chromogranin_a": 250.0, "gamma_gt": 40, "sex": "F", "primary_site": "pancreas"}
    usual = predict_case(bundle, pet=None, ct=None, labs=labs)
    assert usual.interval_level == 0.9 and "9 of 10" in usual.interval_sentence
    assert usual.interval[0] <= usual.probability <= usual.interval[1]
    far = predict_case(bundle, pet=None, ct=None, labs={**labs, "gamma_gt": 4000})
    assert "outside the training range (Gamma-GT)" in far.interval_sentence
    assert far.interval[1] - far.interval[0] > usual.interval[1] - usual.interval[0] or far.interval[1] > 0.999


def test_a_case_measured_unlike_the_calibration_cohort_loses_the_level():
    pred, true, inputs = synthetic(300, 4)
    calibration = read_calibration({"uncertainty": calibrate(pred, true, inputs, against="synthetic truth")})
    usual = interval(0.5, calibration, values={"x": 0.5, "y": 0.5}, fold_probabilities=[0.5])
    shifted = interval(0.5, calibration, values={"x": 0.5, "y": 0.5}, fold_probabilities=[0.5],
                       not_calibrated_for="its lesions were measured against the organ network's organs")
    assert (shifted.low, shifted.high) == (usual.low, usual.high)
    assert shifted.level is None and "not a calibrated interval" in shifted.method
    assert "organ network" in shifted.sentence and "not a calibrated one" in shifted.sentence
