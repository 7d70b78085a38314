"""How well the patient outlook (pfs_core.outlook) agrees with what happened: 6/12/24-month calibration in risk
quintiles against Kaplan–Meier, Harrell's C, and how far its 12-month figure lies from the classifier's
probability.

For each bundle and cohort: score the cohort with the bundle (``pfs_core.inference.score_cohort``; lesion
measurements come from the cache), turn each probability into the outlook's predicted probability of
progression or death by 6, 12 and 24 months, split the patients into quintiles of the probability, and compare
the mean predicted figure of each quintile with the Kaplan–Meier estimate (lifelines, 95 % interval) of that
quintile. The classifier's own probability is compared with Kaplan–Meier at 12 months the same way. Nothing is
tuned here: the outlook model is fixed by the bundle's training out-of-fold predictions.

    python benchmarks/outlook_check.py --model models/lab_pet_ct --model models/lab_rf \
        --cohort data/sim400_eval9004 --cohort data/sim400_dev101 --out results/outlook_check.json

Writes the JSON (``runs``: one entry per bundle and cohort) and prints a short table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index

from pfs_core.inference import score_cohort
from pfs_core.models.bundle import load_bundle
from pfs_core.outlook import DEFAULT_MONTHS, OutlookModel, outlook_model
from pfs_core.results.validation import external_validation

N_GROUPS = 5


def predicted_by(model: OutlookModel, probability: np.ndarray, months: tuple[int, ...]) -> dict[int, np.ndarray]:
    """month → ``(N,)`` predicted probability of progression or death by then."""
    survival = model.survival(probability)  # (N, T)
    return {m: 1.0 - survival[:, int(np.argmin(np.abs(model.times - m)))] for m in months}


def km_at(time: np.ndarray, event: np.ndarray, month: float) -> tuple[float, float, float]:
    """Kaplan–Meier probability of progression or death by ``month`` and its 95 % interval."""
    fitter = KaplanMeierFitter().fit(time, event)
    survival = float(fitter.survival_function_at_times(month).iloc[0])
    band = fitter.confidence_interval_survival_function_
    row = band[band.index <= month].iloc[-1] if (band.index <= month).any() else band.iloc[0]
    return 1.0 - survival, 1.0 - float(row.iloc[1]), 1.0 - float(row.iloc[0])


def calibration(groups: np.ndarray, predicted: np.ndarray, time: np.ndarray, event: np.ndarray,
                month: float) -> dict[str, Any]:
    """Per quintile: n, mean predicted, Kaplan–Meier observed (95 % CI); mean |observed − predicted|."""
    rows: list[dict[str, Any]] = []
    for q in range(N_GROUPS):
        sel = groups == q
        observed, low, high = km_at(time[sel], event[sel], month)
        rows.append({"quintile": q + 1, "n": int(sel.sum()), "predicted": round(float(predicted[sel].mean()), 4),
                     "observed_km": round(observed, 4), "observed_ci95": [round(low, 4), round(high, 4)]})
    overall, _, _ = km_at(time, event, month)
    errors = [abs(float(r["observed_km"]) - float(r["predicted"])) for r in rows]
    inside = [r["observed_ci95"][0] <= r["predicted"] <= r["observed_ci95"][1] for r in rows]
    return {"quintiles": rows, "mean_abs_error": round(float(np.mean(errors)), 4),
            "max_abs_error": round(float(np.max(errors)), 4), "predicted_inside_km_ci95": int(sum(inside)),
            "overall_predicted": round(float(predicted.mean()), 4), "overall_observed_km": round(overall, 4)}


def difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    d = a - b
    return {"mean": round(float(d.mean()), 4), "mean_abs": round(float(np.abs(d).mean()), 4),
            "p05": round(float(np.quantile(d, 0.05)), 4), "p95": round(float(np.quantile(d, 0.95)), 4),
            "max_abs": round(float(np.abs(d).max()), 4)}


def check(model_dir: Path, cohort_dir: Path, *, cache_dir: Path | None) -> dict[str, Any]:
    bundle = load_bundle(model_dir)
    start = time.perf_counter()
    model = outlook_model(bundle)
    fit_s = time.perf_counter() - start
    scores = score_cohort(bundle, cohort_dir / "cohort.csv", device="cpu", cache_dir=cache_dir).scores
    table = pd.read_csv(cohort_dir / "cohort.csv", dtype={"patient_id": str}).set_index("patient_id")
    merged = scores.set_index(scores["patient_id"].astype(str)).join(table[["pfs_months", "progressed"]])
    merged = merged.dropna(subset=["probability", "pfs_months", "progressed"])
    p = merged["probability"].to_numpy(float)
    t = merged["pfs_months"].to_numpy(float)
    e = merged["progressed"].to_numpy(float).astype(int)
    groups = pd.qcut(pd.Series(p).rank(method="first"), N_GROUPS, labels=False).to_numpy()
    predicted = predicted_by(model, p, DEFAULT_MONTHS)
    oof = bundle.training_oof
    oof_p = oof["oof_probability"].to_numpy(float)
    return {
        "model": str(model_dir), "model_version": bundle.version, "cohort": str(cohort_dir),
        "n": int(len(p)), "events": int(e.sum()),
        "outlook_model": {"hazard_ratio_per_logit": round(float(np.exp(model.coef)), 4),
                          "coef_se": round(model.coef_se, 4), "training_n": model.n, "training_events": model.events,
                          "training_concordance": round(model.concordance, 4), "bootstrap_resamples":
                              int(model.boot_coef.size), "fit_seconds": round(fit_s, 2)},
        # concordance_index expects predicted survival times (higher = longer): minus the risk
        "harrell_c": round(float(concordance_index(t, -p, e)), 4),
        "harrell_c_95": [round(float(v), 4) for v in external_validation(p, t, e).value("c_index")[1:]],
        "calibration": {str(m): calibration(groups, predicted[m], t, e, m) for m in DEFAULT_MONTHS},
        "classifier_calibration_12": calibration(groups, p, t, e, 12),
        "outlook12_minus_classifier": {
            "this_cohort": difference(predicted[12], p),
            "training_oof": difference(predicted_by(model, oof_p, (12,))[12], oof_p)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, action="append", help="bundle folder (repeatable)")
    parser.add_argument("--cohort", type=Path, action="append", help="cohort folder with cohort.csv (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("results/outlook_check.json"))
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = parser.parse_args(argv)
    models = args.model or [Path("models/lab_pet_ct")]
    cohorts = args.cohort or [Path("data/sim400_eval9004")]
    runs = []
    for model_dir in models:
        for cohort_dir in cohorts:
            run = check(model_dir, cohort_dir, cache_dir=args.cache_dir)
            runs.append(run)
            cal = run["calibration"]
            print(f"{model_dir.name} on {cohort_dir.name}: n={run['n']} C={run['harrell_c']:.3f} "
                  f"[{run['harrell_c_95'][0]:.3f}, {run['harrell_c_95'][1]:.3f}] "
                  + " ".join(f"{m}mo MAE {cal[m]['mean_abs_error']:.3f} ({cal[m]['predicted_inside_km_ci95']}/5 in CI)"
                             for m in cal)
                  + f"; classifier@12 MAE {run['classifier_calibration_12']['mean_abs_error']:.3f}"
                  + f"; outlook12 - classifier mean {run['outlook12_minus_classifier']['this_cohort']['mean']:+.3f}")
    doc = {"command": "python " + " ".join(["benchmarks/outlook_check.py", *sys.argv[1:]]) if argv is None else "",
           "months": list(DEFAULT_MONTHS), "groups": f"{N_GROUPS} quintiles of the classifier's probability",
           "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
