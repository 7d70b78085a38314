"""results.validation: external validation of scores against outcomes, with patient-bootstrap intervals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from pfs_core.errors import InputError
from pfs_core.metrics import c_index
from pfs_core.results.validation import attach_outcomes, external_validation, has_outcomes


def _cohort(n: int = 120, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities and outcomes: short PFS drawn with the probability; a few censored early."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, n)
    short = rng.random(n) < p
    time = np.where(short, rng.uniform(1, 12, n), rng.uniform(12.5, 48, n))
    event = np.ones(n)
    event[:8] = 0
    time[:4] = 6.0  # censored before 12 months: no label
    return p, time, event


def test_known_auroc_of_a_tiny_cohort():
    """Four labelled patients: 3 of the 4 short/long pairs ranked right → AUROC 0.75; the censored one is out."""
    p = np.array([0.9, 0.4, 0.6, 0.2, 0.5])
    time = np.array([6.0, 8.0, 20.0, 30.0, 5.0])
    event = np.array([1, 1, 1, 0, 0])  # last: censored at 5 months, no label
    result = external_validation(p, time, event, n_boot=200, seed=0)
    assert result.value("auroc")[0] == pytest.approx(0.75)
    assert result.counts == {"n_scored": 5, "n_with_outcome": 5, "n_labelled": 4, "n_short_pfs": 2,
                             "n_long_pfs": 2, "n_censored_before_12_months": 1, "n_events": 3}
    assert result.value("c_index")[0] == pytest.approx(c_index(time, event, p))
    assert any("only 4 labelled" in note for note in result.notes)


def test_point_values_are_the_libraries_and_intervals_cover_them():
    p, time, event = _cohort()
    result = external_validation(p, time, event, model="m", n_boot=300, seed=4)
    label = ~((time <= 12) & (event == 0))
    y = (time[label] <= 12).astype(int)
    assert result.value("auroc")[0] == pytest.approx(roc_auc_score(y, p[label]))
    assert result.value("brier")[0] == pytest.approx(brier_score_loss(y, p[label]))
    for key in ("auroc", "c_index", "calibration_intercept", "calibration_slope", "brier"):
        value, low, high = result.value(key)
        assert low <= value <= high, key
    # the scores were drawn with the true probability: well calibrated (slope ~1, intercept ~0)
    assert result.value("calibration_slope")[1] < 1.0 < result.value("calibration_slope")[2]
    assert result.value("calibration_intercept")[1] < 0.0 < result.value("calibration_intercept")[2]
    assert list(result.decision["threshold"]) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert (result.decision["low"] <= result.decision["net_benefit"]).all()


def test_seeded_and_strict_json():
    p, time, event = _cohort(40)
    a = external_validation(p, time, event, n_boot=100, seed=7)
    b = external_validation(p, time, event, n_boot=100, seed=7)
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    doc = json.loads(a.to_json())
    assert doc["bootstrap"] == {"n_boot": 100, "seed": 7, "interval": "95 % percentile", "unit": "patient"}
    assert {m["key"] for m in doc["metrics"]} == {"auroc", "c_index", "calibration_intercept", "calibration_slope",
                                                  "brier"}


def test_one_outcome_class_and_no_outcome():
    p = np.array([0.2, 0.3, 0.8])
    result = external_validation(p, np.array([20.0, 30.0, 40.0]), np.array([1, 0, 1]), n_boot=50)
    assert np.isnan(result.value("auroc")[0]) and result.decision.empty
    assert any("one outcome only" in note for note in result.notes)
    json.loads(result.to_json())  # NaN written as null
    with pytest.raises(InputError, match="pfs_months"):
        external_validation(p, np.full(3, np.nan), np.full(3, np.nan))


def test_outcomes_attached_by_spreadsheet_row():
    scores = pd.DataFrame({"row": [3, 2], "patient_id": ["B", "A"], "probability": [0.4, 0.6]})
    good = pd.DataFrame({"patient_id": ["A", "B"], "pfs_months": [5.0, np.nan], "progressed": [1.0, np.nan]},
                        index=pd.Index([2, 3], name="row"))
    table = attach_outcomes(scores, good)
    assert table["pfs_months"].tolist()[1] == 5.0 and np.isnan(table["pfs_months"].tolist()[0])
    assert has_outcomes(table) and not has_outcomes(scores)
