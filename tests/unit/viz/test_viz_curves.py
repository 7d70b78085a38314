"""pfs_core.viz.curves: the numbers in the figures are scikit-learn's and lifelines'."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, roc_auc_score

from pfs_core.errors import InputError
from pfs_core.viz import curves as vc


@pytest.fixture
def two_models() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    good = np.clip(0.35 * y + 0.65 * rng.random(120), 0, 1)
    return {"Fusion": (y, good), "Lab RF": (y, rng.random(120))}


def legend_number(name: str, key: str) -> float:
    return float(re.search(rf"{key} (\d\.\d{{3}})", name).group(1))


def model_traces(fig, models) -> list:
    return [t for t in fig.data if t.meta and t.meta.get("model") in models]


def test_roc_legend_holds_sklearns_auroc(two_models) -> None:
    fig = vc.roc_figure(two_models)
    traces = model_traces(fig, two_models)
    assert [t.meta["model"] for t in traces] == ["Fusion", "Lab RF"]
    for trace in traces:
        y, p = two_models[trace.meta["model"]]
        assert trace.meta["auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert legend_number(trace.name, "AUROC") == pytest.approx(roc_auc_score(y, p), abs=5e-4)
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert any("Chance" in t.name for t in fig.data)
    assert traces[0].line.color != traces[1].line.color


def test_pr_legend_holds_average_precision_and_prevalence(two_models) -> None:
    fig = vc.pr_figure(two_models)
    for trace in model_traces(fig, two_models):
        y, p = two_models[trace.meta["model"]]
        assert legend_number(trace.name, "AUPRC") == pytest.approx(average_precision_score(y, p), abs=5e-4)
    prevalence = [t for t in fig.data if t.meta and "prevalence" in t.meta]
    assert len(prevalence) == 1
    y = two_models["Fusion"][0]
    assert prevalence[0].y[0] == pytest.approx(y.mean())


def test_calibration_points_are_sklearns_quantile_bins(two_models) -> None:
    fig = vc.calibration_figure(two_models, n_bins=4)
    y, p = two_models["Fusion"]
    observed, predicted = calibration_curve(y, p, n_bins=4, strategy="quantile")
    trace = model_traces(fig, ["Fusion"])[0]
    np.testing.assert_allclose(trace.x, predicted)
    np.testing.assert_allclose(trace.y, observed)
    assert any(t.name == "Perfect calibration" for t in fig.data)


def test_net_benefit_by_hand() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.8, 0.3, 0.1])
    # pt 0.5: treat the first two (1 TP, 1 FP) → 1/4 - 1/4·1; pt 0.25: three (2 TP, 1 FP) → 2/4 - 1/4·(1/3)
    np.testing.assert_allclose(vc.net_benefit(y, p, np.array([0.0, 0.25, 0.5])), [0.5, 0.5 - 1 / 12, 0.0])


def test_decision_curve_treat_all_at_zero_is_the_prevalence(two_models) -> None:
    fig = vc.decision_curve_figure(two_models, thresholds=np.linspace(0.0, 0.8, 81))
    y = two_models["Fusion"][0]
    treat_all = next(t for t in fig.data if t.name == "Treat all")
    treat_none = next(t for t in fig.data if t.name == "Treat none")
    assert treat_all.x[0] == 0.0 and treat_all.y[0] == pytest.approx(y.mean())
    assert treat_all.x[50] == pytest.approx(0.5) and treat_all.y[50] == pytest.approx(2 * y.mean() - 1)
    assert np.all(np.asarray(treat_none.y) == 0)
    fusion = model_traces(fig, ["Fusion"])[0]
    assert fusion.y[0] == pytest.approx(y.mean())  # at pt = 0 everybody is treated
    with pytest.raises(ValueError, match="thresholds"):
        vc.decision_curve_figure(two_models, thresholds=np.array([0.5, 1.0]))


def test_labels_of_one_class_or_wrong_length_are_input_errors() -> None:
    with pytest.raises(InputError, match="both outcomes"):
        vc.roc_figure({"m": (np.ones(10), np.random.default_rng(0).random(10))})
    with pytest.raises(InputError, match="y_score has 9"):
        vc.pr_figure({"m": (np.r_[np.ones(5), np.zeros(5)], np.zeros(9))})


def test_unlabelled_rows_are_left_out(two_models) -> None:
    y, p = two_models["Fusion"]
    with_nan = np.r_[y.astype(float), np.nan, np.nan]
    fig = vc.roc_figure({"Fusion": (with_nan, np.r_[p, 0.99, 0.01])})
    assert model_traces(fig, ["Fusion"])[0].meta["auroc"] == pytest.approx(roc_auc_score(y, p))


def survival_data(*, planted: bool, seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = np.repeat(["high risk", "low risk"], 60)
    scale = np.where(group == "high risk", 6.0 if planted else 18.0, 30.0 if planted else 18.0)
    time = rng.exponential(scale)
    censor = rng.uniform(0, 60, 120)
    return np.minimum(time, censor), (time <= censor).astype(int), group


@pytest.mark.parametrize("planted", [True, False])
def test_km_logrank_p_is_lifelines(planted: bool) -> None:
    from lifelines.statistics import logrank_test

    time, event, group = survival_data(planted=planted)
    fig, p = vc.km_figure(time, event, group, highlight="high risk")
    a = group == "high risk"
    expected = logrank_test(time[a], time[~a], event[a], event[~a]).p_value
    assert p == pytest.approx(expected, rel=1e-9)
    assert (p < 0.001) if planted else (p > 0.05)
    curves = [t for t in fig.data if t.meta and "group" in t.meta]
    assert [t.meta["group"] for t in curves] == ["high risk", "low risk"]
    assert curves[0].line.width > curves[1].line.width
    assert any(s.x0 == 12 and s.x1 == 12 for s in fig.layout.shapes)
    assert "log-rank" in fig.layout.title.text
    bands = [t for t in fig.data if t.fill == "tonexty"]
    assert len(bands) == 2
    upper = next(t for t in fig.data if t.name == "high risk 95% CI upper")
    assert np.all(np.asarray(upper.y) >= np.asarray(curves[0].y) - 1e-12)
    assert np.all(np.asarray(curves[0].y) >= np.asarray(bands[0].y) - 1e-12)


def test_km_with_three_groups_uses_the_multivariate_test() -> None:
    from lifelines.statistics import multivariate_logrank_test

    time, event, _ = survival_data(planted=True)
    group = np.array(["a", "b", "c"] * 40)
    _, p = vc.km_figure(time, event, group)
    assert p == pytest.approx(multivariate_logrank_test(time, group, event).p_value, rel=1e-9)
    fig, _ = vc.km_figure(time, event, group, highlight="d")  # an empty group (the patient's) is no error
    assert not any(t.meta["highlight"] for t in fig.data if t.meta and "group" in t.meta)
    with pytest.raises(InputError, match="event"):
        vc.km_figure(time, event + 1, group)


def test_risk_distribution_marks_the_patient_and_his_percentile() -> None:
    cohort = np.linspace(0.0, 0.99, 100)
    fig = vc.risk_distribution_figure(cohort, 0.505, threshold=0.4)
    assert vc.cohort_percentile(cohort, 0.505) == pytest.approx(51.0)  # 0.00 … 0.50 lie below
    assert "51%" in fig.layout.title.text
    assert fig.layout.meta["percentile"] == pytest.approx(51.0)
    lines = sorted(s.x0 for s in fig.layout.shapes)
    assert lines == pytest.approx([0.4, 0.505])
    assert fig.data[0].type == "histogram" and len(fig.data[0].x) == 100


def test_paired_delta_figure_draws_each_interval_as_error_bars() -> None:
    paired = {"fusion": {"ref_labs": {"delta": 0.10, "low": 0.02, "high": 0.21, "p_le_0": 0.01},
                         "lab_rf": {"delta": 0.04, "low": -0.03, "high": 0.09, "p_le_0": 0.2}},
              "lab_rf": {"ref_labs": {"delta": -0.05, "low": -0.12, "high": 0.03, "p_le_0": 0.9}},
              "pet_cnn": {"ref_labs": {"delta": 0.01, "low": None, "high": None, "p_le_0": None}}}
    fig = vc.paired_delta_figure(paired)
    traces = {t.meta["comparator"]: t for t in fig.data}
    assert list(traces) == ["ref_labs", "lab_rf"]
    labs = traces["ref_labs"]
    assert list(labs.y) == ["fusion", "lab_rf"]  # pet_cnn has no interval: left out
    assert list(labs.x) == [0.10, -0.05]
    assert np.allclose(labs.error_x.array, [0.11, 0.08]) and np.allclose(labs.error_x.arrayminus, [0.08, 0.07])
    assert list(traces["lab_rf"].y) == ["fusion"] and np.allclose(traces["lab_rf"].error_x.arrayminus, [0.07])
    assert any(shape.x0 == 0 and shape.x1 == 0 for shape in fig.layout.shapes)  # the line at no difference
