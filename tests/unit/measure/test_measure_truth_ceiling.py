"""benchmarks/measure_truth.py: which SSTR-negative lesions a measurement is asked to find, and the ceiling of
the Spearman with the true SSTR-negative volume when only those are measured (hand-made truth tables)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
import measure_truth  # noqa: E402

PATIENTS = pd.Index(["A", "B", "C", "D", "E"], name="patient_id")


def _lesions() -> pd.DataFrame:
    rows = [  # patient, site, volume mL, SSTR-negative, CT-visible
        ("A", "liver", 20.0, 1, 1),  # 33.7 mm
        ("A", "liver", 50.0, 0, 1),  # SSTR-positive: never counted
        ("B", "lymph_node", 5.0, 1, 1),  # 21.2 mm, outside the liver
        ("C", "liver", 0.5, 1, 1),  # 9.8 mm: below the 15 mm size
        ("D", "bone", 3.0, 1, 0),  # 17.9 mm but CT-occult
    ]
    return pd.DataFrame(rows, columns=["patient_id", "site", "volume_ml", "sstr_negative", "ct_visible"])


def _truth() -> pd.DataFrame:
    return pd.DataFrame({"sstr_negative_volume_ml": [20.0, 5.0, 0.5, 3.0, 0.0]}, index=PATIENTS)


def test_subsets_pick_the_negative_lesions_by_site_size_and_ct_visibility():
    lesions = _lesions()
    volumes = {name: measure_truth.volume_per_patient(lesions, mask, PATIENTS).tolist()
               for name, mask in measure_truth.negative_subsets(lesions).items()}
    assert volumes == {"liver": [20.0, 0.0, 0.5, 0.0, 0.0], "liver_15mm": [20.0, 0.0, 0.0, 0.0, 0.0],
                       "liver_ct_visible_15mm": [20.0, 0.0, 0.0, 0.0, 0.0],
                       "ct_visible_15mm_any_site": [20.0, 5.0, 0.0, 0.0, 0.0]}
    assert measure_truth.diameter_mm(pd.Series([20.0])).iloc[0] == pytest.approx(33.68, abs=0.01)


def test_ceiling_is_below_one_when_some_negative_disease_cannot_be_found():
    result = measure_truth.sstr_negative_ceilings(_lesions(), _truth())
    assert result["patients_with_sstr_negative_disease"] == 4
    ceilings = result["ceiling_spearman"]
    # liver_15mm finds only A: ranks A first, ties the other four
    assert ceilings["liver_15mm"][0] == pytest.approx(0.707, abs=1e-3)
    assert all(point < 1.0 for point, _, _ in ceilings.values())
    everything = measure_truth.volume_per_patient(_lesions(), _lesions()["sstr_negative"] == 1, PATIENTS)
    assert measure_truth.spearman_interval(everything, _truth()["sstr_negative_volume_ml"])[0] == 1.0


def test_interval_leaves_out_resamples_without_a_spearman():
    x = pd.Series([0.0] * 18 + [1.0, 2.0])  # most resamples of so few non-zero values are constant
    point, low, high = measure_truth.spearman_interval(x, x * 3.0)
    assert point == 1.0 and np.isfinite([low, high]).all() and low <= high <= 1.0


def test_paired_difference_is_zero_for_the_same_run_and_positive_for_a_better_one():
    rng = np.random.default_rng(1)
    truth = pd.Series(rng.gamma(1.0, 5.0, 60))
    noisy = truth + pd.Series(rng.normal(0.0, 5.0, 60))
    assert measure_truth.paired_difference(noisy, noisy, truth) == [0.0, 0.0, 0.0]
    point, low, high = measure_truth.paired_difference(truth * 2.0, noisy, truth)
    assert 0.0 < low <= point <= high and point == pytest.approx(1.0 - spearmanr(noisy, truth)[0], abs=1e-3)
