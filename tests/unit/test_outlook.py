"""pfs_core.outlook: a Cox model on the classifier's score turns one probability into a PFS curve."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from pfs_core import outlook as ol
from pfs_core.errors import BundleError

TRUE_LOG_HR = 0.8  # per unit of logit(probability)


def synthetic_oof(n: int = 800, seed: int = 5) -> pd.DataFrame:
    """Exponential PFS (baseline median 14 months) with hazard ratio exp(0.8) per unit logit, uniform censoring."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.2, n)
    rate = math.log(2) / 14.0 * np.exp(TRUE_LOG_HR * x)
    time = rng.exponential(1.0 / rate)
    censor = rng.uniform(6.0, 60.0, n)
    return pd.DataFrame({"patient_id": [f"P{i:04d}" for i in range(n)], "fold": np.arange(n) % 3,
                         "oof_probability": 1.0 / (1.0 + np.exp(-x)), "pfs_months": np.round(np.minimum(time, censor), 2),
                         "progressed": (time <= censor).astype(int)})


@pytest.fixture(scope="module")
def oof() -> pd.DataFrame:
    return synthetic_oof()


@pytest.fixture(scope="module")
def model(oof: pd.DataFrame) -> ol.OutlookModel:
    return ol.fit_outlook_model(oof, n_boot=100, seed=3)


def test_the_planted_hazard_ratio_is_recovered(model: ol.OutlookModel) -> None:
    assert model.coef == pytest.approx(TRUE_LOG_HR, abs=3 * model.coef_se)
    assert model.boot_coef.shape == (100,)
    assert np.std(model.boot_coef) == pytest.approx(model.coef_se, rel=0.35)  # bootstrap ≈ model-based SE
    assert model.times[0] == 0.0 and model.times[-1] == pytest.approx(36.0)


def test_the_curve_is_lifelines_prediction(oof: pd.DataFrame, model: ol.OutlookModel) -> None:
    x = ol.logit(oof["oof_probability"].to_numpy())
    fitter = CoxPHFitter().fit(pd.DataFrame({"x": x, "t": oof["pfs_months"], "e": oof["progressed"]}), "t", "e")
    for p in (0.1, 0.5, 0.85):
        expected = fitter.predict_survival_function(pd.DataFrame({"x": [float(ol.logit(np.array(p)))]}),
                                                    times=[6.0, 12.0, 24.0]).to_numpy().ravel()
        got = ol.outlook_from_model(model, p)
        # lifelines interpolates the Breslow step function linearly between event times; the outlook keeps steps
        np.testing.assert_allclose([1 - got.at[m] for m in (6, 12, 24)], expected, atol=1e-3)


def test_monotone_in_probability_and_in_time(model: ol.OutlookModel) -> None:
    outlooks = [ol.outlook_from_model(model, p) for p in (0.05, 0.3, 0.6, 0.95)]
    for o in outlooks:
        assert o.survival[0] == pytest.approx(1.0)
        assert np.all(np.diff(o.survival) <= 1e-12)  # PFS never rises
        assert o.at[6] < o.at[12] < o.at[24]
        assert o.lower is not None and o.upper is not None
        assert np.all(o.lower <= o.survival + 1e-12) and np.all(o.survival <= o.upper + 1e-12)
        for m, (low, high) in o.at_interval.items():
            assert low <= o.at[m] <= high
    for m in (6, 12, 24):
        figures = [o.at[m] for o in outlooks]
        assert figures == sorted(figures) and figures[0] < figures[-1]


def test_sentence_method_and_json(model: ol.OutlookModel) -> None:
    o = ol.outlook_from_model(model, 0.4)
    twelve = round(100 * o.at[12])
    assert o.sentence.startswith(f"Of 100 patients like this one, about {twelve} are expected to have progressed "
                                 "or died by 12 months")
    assert f"{round(100 * o.at[6])} by 6 months" in o.sentence and "by 24 months" in o.sentence
    assert "Cox" in o.method and "800 training patients" in o.method and "bootstrap" in o.method
    assert "two models" in o.note
    d = o.to_dict()
    assert set(d["probability_progressed_by_months"]) == {"6", "12", "24"}
    assert d["probability_progressed_by_months"]["12"] == pytest.approx(o.at[12], abs=1e-4)
    assert ol.outlook_from_model(model, 0.4, band=False).lower is None


def test_months_past_the_follow_up_are_nan() -> None:
    short = synthetic_oof(n=300, seed=2)
    short["pfs_months"] = short["pfs_months"].clip(upper=20.0)
    o = ol.outlook_from_model(ol.fit_outlook_model(short, n_boot=0), 0.5)
    assert o.times[-1] <= 20.0 and math.isnan(o.at[24]) and o.lower is None
    assert "24" not in o.sentence and o.to_dict()["probability_progressed_by_months"]["24"] is None


def test_the_model_is_fitted_once_per_bundle(monkeypatch: pytest.MonkeyPatch, oof: pd.DataFrame) -> None:
    calls = []
    real = ol.fit_outlook_model
    monkeypatch.setattr(ol, "fit_outlook_model", lambda frame, **kw: calls.append(1) or real(frame, **kw))
    bundle = SimpleNamespace(sha256="ab" * 32, training_oof=oof, path=Path("x"))
    first = ol.patient_outlook(bundle, 0.3)  # type: ignore[arg-type]
    second = ol.patient_outlook(bundle, 0.7)  # type: ignore[arg-type]
    assert len(calls) == 1 and first.at[12] < second.at[12]
    other = SimpleNamespace(sha256="cd" * 32, training_oof=oof, path=Path("y"))
    ol.patient_outlook(other, 0.3)  # type: ignore[arg-type]
    assert len(calls) == 2
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ol.patient_outlook(bundle, 1.5)  # type: ignore[arg-type]


def test_too_few_events_is_a_bundle_error(oof: pd.DataFrame) -> None:
    few = oof.head(40).assign(progressed=0)
    with pytest.raises(BundleError, match="events"):
        ol.fit_outlook_model(few)
    with pytest.raises(BundleError, match="pfs_months"):
        ol.fit_outlook_model(oof.drop(columns="pfs_months"))
