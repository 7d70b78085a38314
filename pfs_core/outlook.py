"""The patient's own outlook: a progression-free-survival curve beside the classifier's probability.

The classifier answers one question (PFS <= 12 months, yes or no). This module turns its score into a
PFS curve over 0–36 months with a Cox proportional-hazards model fitted on the bundle's training
out-of-fold predictions (``bundle.training_oof``: patient_id, fold, oof_probability, pfs_months,
progressed), with one covariate, ``logit(oof_probability)``: the classifier's score already summarises
the labs and the lesion measurements, and the out-of-fold scores are what the classifier gives patients
it was not trained on. The Cox model is fitted with lifelines (``CoxPHFitter``, Efron ties, Breslow
baseline hazard) when a bundle is first asked for an outlook and kept per bundle sha256; a seeded patient
bootstrap (200 resamples by default, weighted Breslow fits in numpy, so a few milliseconds) gives a
pointwise 95 % band. The band is the uncertainty of this survival model given the score, not of the
classifier.

The 12-month figure of the curve and the classifier's probability come from two models (the classifier
was trained on "PFS <= 12 months", leaving out patients censored earlier; the Cox model on the whole
follow-up): they differ a little. ``benchmarks/outlook_check.py`` measures how much, and how well the
6/12/24-month figures agree with Kaplan–Meier on an evaluation cohort (docs/outlook.md).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter

from pfs_core.errors import BundleError
from pfs_core.metrics import logit
from pfs_core.models.bundle import Bundle
from pfs_core.schema import SHORT_PFS_MONTHS

__all__ = ["Outlook", "OutlookModel", "fit_outlook_model", "outlook_model", "patient_outlook", "DEFAULT_MONTHS",
           "HORIZON_MONTHS"]

#: The months the outlook reports by default.
DEFAULT_MONTHS: tuple[int, ...] = (6, 12, 24)
#: The curve's grid: 0–36 months in steps of a week-ish (0.25 months).
HORIZON_MONTHS = 36.0
GRID_STEP_MONTHS = 0.25
#: logit() clips probabilities to [EPS, 1 − EPS].
EPS = 1e-4
N_BOOT = 200
SEED = 20251
MIN_EVENTS = 10


@dataclass(frozen=True)
class OutlookModel:
    """A fitted outlook model: hazard = h0(t) · exp(coef · (logit(p) − mean_logit)).

    Attributes:
        coef: log hazard ratio per unit of logit(probability).
        coef_se: its standard error (lifelines).
        mean_logit: centring of the covariate.
        times: ``(T,)`` months, 0 … horizon.
        baseline_cumhaz: ``(T,)`` Breslow cumulative baseline hazard at ``mean_logit`` on ``times``.
        boot_coef: ``(B,)`` bootstrap coefficients (empty when no band).
        boot_cumhaz: ``(B, T)`` bootstrap baseline cumulative hazards on ``times``.
        n: patients used; events: of them progressed or died.
        concordance: Harrell's C of the fit on its own training data.
        max_follow_up: longest follow-up time in the training data (months).
        gap_12: mean over the training patients of (this model's 12-month figure − the classifier's
            out-of-fold probability); NaN when the grid stops before 12 months.
    """

    coef: float
    coef_se: float
    mean_logit: float
    times: np.ndarray
    baseline_cumhaz: np.ndarray
    boot_coef: np.ndarray
    boot_cumhaz: np.ndarray
    n: int
    events: int
    concordance: float
    max_follow_up: float
    gap_12: float = float("nan")

    def survival(self, probability: float | np.ndarray) -> np.ndarray:
        """PFS probability on :attr:`times` for a classifier probability (``()`` → ``(T,)``, ``(N,)`` → ``(N, T)``)."""
        x = logit(probability, eps=EPS) - self.mean_logit
        risk = np.exp(self.coef * x)
        return np.exp(-np.multiply.outer(risk, self.baseline_cumhaz))

    def boot_survival(self, probability: float) -> np.ndarray:
        """``(B, T)`` bootstrap PFS curves of one classifier probability."""
        x = float(logit(probability, eps=EPS)) - self.mean_logit
        return np.exp(-self.boot_cumhaz * np.exp(self.boot_coef * x)[:, None])


@dataclass(frozen=True)
class Outlook:
    """One patient's predicted PFS curve (:func:`patient_outlook`).

    Attributes:
        probability: the classifier's probability of PFS <= 12 months this outlook was made from.
        times: ``(T,)`` months, 0 … 36 (less when the training follow-up is shorter).
        survival: ``(T,)`` predicted PFS probability (not progressed and alive) at ``times``.
        lower, upper: ``(T,)`` pointwise 95 % bootstrap band of ``survival``, or None.
        at: month → predicted probability of progression or death by that month (1 − survival);
            NaN past the training follow-up.
        at_interval: month → 95 % bootstrap interval of ``at[month]`` (absent without a band).
        method: one plain sentence naming the model and the data.
        sentence: the figures in plain words ("Of 100 patients like this one, ...").
        note: why the 12-month figure and the classifier's probability can differ.
        hazard_ratio: per unit of logit(probability).
    """

    probability: float
    times: np.ndarray
    survival: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None
    at: dict[int, float]
    at_interval: dict[int, tuple[float, float]] = field(default_factory=dict)
    method: str = ""
    sentence: str = ""
    note: str = ""
    hazard_ratio: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``predict``'s ``pfs_outlook``: method, figures by month (keys are strings)."""
        return {"method": self.method,
                "probability_progressed_by_months": {str(m): _rounded(v) for m, v in self.at.items()},
                "interval_95_by_months": {str(m): [_rounded(lo), _rounded(hi)]
                                          for m, (lo, hi) in self.at_interval.items()},
                "sentence": self.sentence, "note": self.note}


# ----------------------------------------------------------------------------- fitting


def fit_outlook_model(oof: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = SEED,
                      horizon: float = HORIZON_MONTHS) -> OutlookModel:
    """Fit the Cox model of ``pfs_months``/``progressed`` on ``logit(oof_probability)`` plus its bootstrap.

    Args:
        oof: training out-of-fold predictions (columns oof_probability, pfs_months, progressed); rows with a
            missing value are left out.
        n_boot: bootstrap resamples of the patients for the band (0: no band).
        seed: of the bootstrap.
        horizon: last month of the curve's grid.
    """
    missing = [c for c in ("oof_probability", "pfs_months", "progressed") if c not in oof]
    if missing:
        raise BundleError(f"training_oof: column(s) {', '.join(missing)} missing; retrain the bundle")
    frame = oof[["oof_probability", "pfs_months", "progressed"]].apply(pd.to_numeric, errors="coerce").dropna()
    x = logit(frame["oof_probability"].to_numpy(float), eps=EPS)
    t = frame["pfs_months"].to_numpy(float)
    e = frame["progressed"].to_numpy(float).astype(int)
    if int(e.sum()) < MIN_EVENTS or np.ptp(x) == 0:
        raise BundleError(f"training_oof: {int(e.sum())} progression events and {np.unique(x).size} distinct "
                          f"probabilities; the outlook needs at least {MIN_EVENTS} events and varying "
                          "probabilities; retrain the bundle on a larger cohort")
    fitter = CoxPHFitter().fit(pd.DataFrame({"x": x, "t": t, "e": e}), duration_col="t", event_col="e")
    mean = float(x.mean())  # lifelines centres the covariate by its mean: the baseline hazard is at x = mean
    coef = float(fitter.params_["x"])
    max_follow_up = float(t.max())
    times = np.round(np.arange(0.0, min(horizon, max_follow_up) + 1e-9, GRID_STEP_MONTHS), 6)
    base = fitter.baseline_cumulative_hazard_.iloc[:, 0]
    cumhaz = _step_at(base.index.to_numpy(float), base.to_numpy(float), times)
    boot_coef, boot_cumhaz = _bootstrap(x - mean, t, e, times, n_boot=n_boot, seed=seed, start=coef)
    i12 = _grid_index(times, SHORT_PFS_MONTHS)
    gap = float("nan") if i12 is None else float(np.mean(
        1.0 - np.exp(-cumhaz[i12] * np.exp(coef * (x - mean))) - frame["oof_probability"].to_numpy(float)))
    return OutlookModel(coef=coef, coef_se=float(fitter.standard_errors_["x"]), mean_logit=mean, times=times,
                        baseline_cumhaz=cumhaz, boot_coef=boot_coef, boot_cumhaz=boot_cumhaz, n=int(len(t)),
                        events=int(e.sum()), concordance=float(fitter.concordance_index_),
                        max_follow_up=max_follow_up, gap_12=gap)


def _step_at(knots: np.ndarray, values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Right-continuous step function (value at the last knot <= t; 0 before the first) at ``times``."""
    idx = np.searchsorted(knots, times, side="right") - 1
    return np.where(idx >= 0, values[np.clip(idx, 0, None)], 0.0)


def _bootstrap(x: np.ndarray, t: np.ndarray, e: np.ndarray, times: np.ndarray, *, n_boot: int, seed: int,
               start: float) -> tuple[np.ndarray, np.ndarray]:
    """``n_boot`` patient-bootstrap Cox fits as multinomial case weights (Breslow ties), all at once.

    Returns ``(B,)`` coefficients and ``(B, T)`` baseline cumulative hazards on ``times`` (at x = 0).
    """
    if n_boot <= 0:
        return np.empty(0), np.empty((0, times.size))
    order = np.argsort(t, kind="stable")
    x, t, e = x[order], t[order], e[order].astype(float)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(t), np.full(len(t), 1.0 / len(t)), size=n_boot).astype(float)  # (B, N)
    first = np.searchsorted(t, t, side="left")  # risk set of t_i: every j with t_j >= t_i
    beta = np.full(n_boot, start)
    for _ in range(30):
        s0, s1, s2 = (_risk_sums(w * np.exp(beta[:, None] * x) * x ** k, first) for k in range(3))
        mean, second = _ratio(s1, s0), _ratio(s2, s0)  # empty risk sets (weight 0) carry no event
        grad = (w * e * (x - mean)).sum(axis=1)
        info = (w * e * (second - mean ** 2)).sum(axis=1)
        step = np.clip(grad / np.maximum(info, 1e-12), -1.0, 1.0)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-9:
            break
    s0 = _risk_sums(w * np.exp(beta[:, None] * x), first)
    jumps = np.cumsum(_ratio(w * e, s0), axis=1)  # (B, N): Breslow cumulative hazard just after each sorted time
    idx = np.searchsorted(t, times, side="right") - 1
    cumhaz = np.where(idx >= 0, jumps[:, np.clip(idx, 0, None)], 0.0)
    return beta, cumhaz


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0."""
    return np.divide(num, den, out=np.zeros(np.broadcast_shapes(num.shape, den.shape)), where=den > 0)


def _risk_sums(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """``(B, N)`` sums over each sorted time's risk set (reverse cumulative sum taken at the tie's first index)."""
    reverse = np.cumsum(values[:, ::-1], axis=1)[:, ::-1]
    return reverse[:, first]


# ----------------------------------------------------------------------------- cache per bundle

_CACHE: dict[tuple[str, int, int], OutlookModel] = {}
_LOCK = threading.Lock()


def outlook_model(bundle: Bundle, *, n_boot: int = N_BOOT, seed: int = SEED) -> OutlookModel:
    """The bundle's outlook model, fitted once per process and bundle sha256 (thread-safe)."""
    key = (bundle.sha256, n_boot, seed)
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = _CACHE[key] = fit_outlook_model(bundle.training_oof, n_boot=n_boot, seed=seed)
    return model


# ----------------------------------------------------------------------------- one patient


def patient_outlook(bundle: Bundle, probability: float, *, months: Sequence[int] = DEFAULT_MONTHS,
                    band: bool = True) -> Outlook:
    """The predicted PFS curve of a patient whose classifier probability (PFS <= 12 months) is ``probability``.

    Args:
        bundle: a loaded bundle (its ``training_oof`` is what the survival model is fitted on, once).
        probability: the classifier's probability, in [0, 1].
        months: the months of :attr:`Outlook.at` (each within the curve's grid, else NaN).
        band: add the pointwise 95 % bootstrap band.
    """
    if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
        raise ValueError(f"probability must lie in [0, 1], not {probability}")
    model = outlook_model(bundle)
    return outlook_from_model(model, probability, months=months, band=band)


def outlook_from_model(model: OutlookModel, probability: float, *, months: Sequence[int] = DEFAULT_MONTHS,
                       band: bool = True) -> Outlook:
    """:func:`patient_outlook` with a given :class:`OutlookModel` (no bundle needed)."""
    survival = model.survival(probability)
    lower = upper = None
    at_interval: dict[int, tuple[float, float]] = {}
    at: dict[int, float] = {}
    boot = model.boot_survival(probability) if band and model.boot_coef.size else None
    if boot is not None:
        lower, upper = np.quantile(boot, [0.025, 0.975], axis=0)
    for month in months:
        i = _grid_index(model.times, float(month))
        at[int(month)] = float("nan") if i is None else float(1.0 - survival[i])
        if i is not None and lower is not None and upper is not None:
            at_interval[int(month)] = (float(1.0 - upper[i]), float(1.0 - lower[i]))
    hr = math.exp(model.coef)
    return Outlook(probability=float(probability), times=model.times, survival=survival, lower=lower, upper=upper,
                   at=at, at_interval=at_interval, method=_method(model), sentence=_sentence(at),
                   note=_note(at, probability, model.gap_12), hazard_ratio=hr)


def _grid_index(times: np.ndarray, month: float) -> int | None:
    i = int(np.searchsorted(times, month - 1e-9))
    return i if i < times.size and abs(times[i] - month) < 1e-6 else None


def _method(model: OutlookModel) -> str:
    return (f"Cox proportional-hazards model of progression-free survival on the classifier's score "
            f"(logit of its probability; hazard ratio {math.exp(model.coef):.2f} per unit), fitted on the "
            f"out-of-fold predictions and outcomes of the {model.n} training patients ({model.events} progressed "
            f"or died), with a 95 % band from {model.boot_coef.size} bootstrap resamples of those patients.")


def _sentence(at: dict[int, float]) -> str:
    known = {m: v for m, v in at.items() if math.isfinite(v)}
    if not known:
        return "The training follow-up is too short for a figure at these months."
    first = int(SHORT_PFS_MONTHS) if int(SHORT_PFS_MONTHS) in known else next(iter(known))
    rest = [f"{round(100 * v)} by {m} months" for m, v in sorted(known.items()) if m != first]
    text = (f"Of 100 patients like this one, about {round(100 * known[first])} are expected to have progressed "
            f"or died by {first} months")
    if rest:
        text += "; about " + (", ".join(rest[:-1]) + " and " + rest[-1] if len(rest) > 1 else rest[0])
    return text + "."


def _note(at: dict[int, float], probability: float, gap: float) -> str:
    twelve = at.get(int(SHORT_PFS_MONTHS), float("nan"))
    if not math.isfinite(twelve):
        return ""
    text = (f"The 12-month figure of this curve ({twelve:.2f}) and the classifier's probability ({probability:.2f}) "
            "come from two models (the survival model is fitted to the training patients' whole follow-up, the "
            "classifier to whether PFS was at most 12 months), so they can differ")
    if math.isfinite(gap):
        text += (f"; over the training patients the curve's 12-month figure is on average {abs(gap):.2f} "
                 f"{'lower' if gap < 0 else 'higher'} than the classifier's probability")
    return text + " (docs/outlook.md)."


def _rounded(value: float) -> float | None:
    return round(float(value), 4) if math.isfinite(value) else None
