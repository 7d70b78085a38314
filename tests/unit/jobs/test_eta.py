"""jobs.eta: a time left that counts down, does not jump when a fast model follows a slow one, and says
"estimating" until a step is done; jobs.preflight: warnings for a cohort too small to benchmark."""

from __future__ import annotations

import numpy as np
import pytest

from pfs_core.jobs.eta import Eta, estimate, smooth
from pfs_core.jobs.preflight import small_cohort_warnings
from pfs_core.jobs.runs import Progress

MODELS = {"lab_rf": 2.0, "pet_cnn": 60.0, "ct_cnn": 40.0}  # seconds per fold fit


def _lines(n_done: int, *, total: int = 27) -> list[dict]:
    """Progress lines of a cross-validation: every model on one fold, then the next fold (as cv.py runs)."""
    names = list(MODELS)
    lines, now = [], 1000.0
    for done in range(n_done + 1):
        model = names[done % len(names)]
        lines.append({"stage": "cross-validation", "done": done, "total": total, "time": now, "model": model})
        now += MODELS[model]
    return lines


def test_nothing_before_the_first_step_and_after_the_last():
    assert estimate([], 1000.0) is None
    assert estimate(_lines(0), 1500.0) is None  # first step under way: "estimating"
    assert estimate(_lines(27)[:-1] + [{**_lines(27)[-1], "done": 27}], 5000.0) is None
    assert "estimating the time left" in Progress("cross-validation", 0, 27).text


def test_per_model_means_once_the_cycle_is_known():
    lines = _lines(6)  # two full folds done; the next step is lab_rf of fold 3
    eta = estimate(lines, lines[-1]["time"])
    assert isinstance(eta, Eta) and not eta.rough and not eta.slow_step
    left = 27 - 6  # 7 of each model
    assert eta.seconds == pytest.approx(left / 3 * sum(MODELS.values()))


def test_exact_runs_count_down_smoothly_without_jumps():
    """With true per-model durations the estimate equals the true time left at every second once the cycle
    is known: no freezing between lines, no jump at a line."""
    lines = _lines(26)
    end = lines[-1]["time"] + MODELS[lines[-1]["model"]]
    for n in range(3, 27):
        start, stop = lines[n]["time"], lines[n + 1]["time"] if n + 1 < len(lines) else end
        for now in np.arange(start, stop, 1.0):
            eta = estimate(lines[: n + 1], float(now))
            assert eta is not None and eta.seconds == pytest.approx(end - now), (n, now)


def test_rough_during_the_first_cycle_and_overrun_flagged():
    lines = _lines(2)  # lab_rf and pet_cnn done, ct_cnn under way: cycle not yet known
    eta = estimate(lines, lines[-1]["time"])
    assert eta is not None and eta.rough
    assert eta.seconds == pytest.approx(31.0 * 25)  # mean of 2 s and 60 s per remaining step
    late = estimate(_lines(4), _lines(4)[-1]["time"] + 500)  # pet_cnn step at 500 s instead of 60 s
    assert late is not None and late.slow_step and not late.rough
    assert "takes longer" in Progress("cv", 4, 27, remaining_s=late.seconds, slow_step=True).text


def test_smooth_is_a_countdown_pulled_towards_the_new_estimate():
    assert smooth(None, 100.0, 0.0) == 100.0
    assert smooth((100.0, 0.0), None, 1.0) is None
    # the estimate agrees with the countdown: the countdown
    assert smooth((100.0, 0.0), 90.0, 10.0) == pytest.approx(90.0)
    # a jump from 100 s to 300 s is followed gradually, more the longer since the last value
    small, large = smooth((100.0, 0.0), 300.0, 2.0), smooth((100.0, 0.0), 300.0, 30.0)
    assert 98.0 < small < 150.0 and small < large < 300.0
    # independent of how often it is asked: two 1 s steps ≈ one 2 s step (when the estimate holds still)
    twice = smooth((smooth((100.0, 0.0), 300.0, 1.0), 1.0), 300.0 - 1.0, 2.0)
    assert twice == pytest.approx(smooth((100.0, 0.0), 300.0 - 1.0, 2.0), rel=0.02)


def test_six_patients_warn_and_a_large_cohort_does_not():
    time = np.array([5.0, 8.0, 10.0, 20.0, 30.0, 11.0])
    event = np.array([1, 1, 1, 0, 1, 0])  # 3 short, 2 long, 1 censored early
    warnings = small_cohort_warnings(time, event, folds=3, repeats=3, n_models=8)
    text = " ".join(warnings)
    assert "only 5 patients have a short/long-PFS label" in text
    assert "0.7 per test fold" in text and "no AUROC" in text
    assert "only 4 progression(s)" in text and "72 model(s)" in text
    rng = np.random.default_rng(0)
    big_time = rng.uniform(1, 40, 200)
    assert small_cohort_warnings(big_time, np.ones(200), folds=3) == []
