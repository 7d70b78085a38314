"""Coverage of a bundle's interval on a simulated evaluation cohort (issue 25, "Honest uncertainty").

    python benchmarks/interval_coverage.py --model models/lab_pet_ct_pretrained \\
        --cohort data/sim400_eval9004/cohort.csv [--out results/interval_coverage.json] [--cache-dir cache]

Scores the cohort with the bundle (:func:`pfs_core.inference.score_cohort`, the path of ``pfs_core score``) and
compares each patient's interval with the simulator's true probability of PFS <= 12 months
(``p_short_pfs_true`` in ``ground_truth.csv`` beside the cohort). Writes, under the key ``<model> on <cohort>``
of ``--out`` (other keys kept): coverage with a Wilson 95 % interval, mean and median width, and the same
split by patients whose inputs lie inside the training range vs outside it (``interval_outside``), and with vs
without missing inputs. Use evaluation cohorts only to report, never to choose the method.

    python benchmarks/interval_coverage.py --model models/lab_rf --cohort data/sim400_dev101/cohort.csv --stress

``--stress`` (a lab-only bundle and a *development* cohort: it chose the weight ``a`` of
:mod:`pfs_core.uncertainty`): for 60 patients with Ki-67, albumin and gamma-GT given, sets one of them beyond
the training range (albumin 1.8 g/dL, gamma-GT 2500 U/L, Ki-67 95 %), recomputes the simulator's true risk
(its lab part is linear in log Ki-67, albumin and log gamma-GT, :mod:`pfs_core.synth.survival`; the scale of
that part is fitted on the cohort's ground truth, exact to 1e-6) and records the coverage of the predicted
intervals, under the key ``stress: <model> on <cohort>``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pfs_core.inference import predict_case, score_cohort
from pfs_core.models.bundle import load_bundle
from pfs_core.synth.survival import LAB_COEF, SITE_EFFECT
from pfs_core.training.references import read_ground_truth
from pfs_core.uncertainty import read_calibration

#: (lab, value beyond the shipped bundles' training range) of the stress test.
STRESS = (("albumin", 1.8), ("gamma_gt", 2500.0), ("ki67", 95.0))


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion k / n ((nan, nan) when n = 0; scipy)."""
    if n == 0:
        return (math.nan, math.nan)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def summary(covered: np.ndarray, width: np.ndarray) -> dict[str, Any]:
    """Coverage (Wilson 95 %) and width of a group of patients."""
    n, k = int(covered.size), int(covered.sum())
    low, high = wilson(k, n)
    return {"n": n, "covered": k, "coverage": round(k / n, 4) if n else None,
            "coverage_wilson95": [round(low, 4), round(high, 4)] if n else None,
            "mean_width": round(float(width.mean()), 4) if n else None,
            "median_width": round(float(np.median(width)), 4) if n else None}


def coverage(model: Path, cohort: Path, *, cache_dir: Path | None) -> dict[str, Any]:
    """The coverage record of ``model``'s interval on ``cohort``."""
    bundle = load_bundle(model)
    truth = read_ground_truth(cohort)
    if truth is None:
        raise SystemExit(f"error: {cohort.parent}/ground_truth.csv not found: coverage needs a simulated cohort")
    scores = score_cohort(bundle, cohort, cache_dir=cache_dir).scores
    true_p = truth.drop_duplicates("patient_id").set_index("patient_id")["p_short_pfs_true"]
    table = scores.assign(p_true=true_p.reindex(scores["patient_id"].astype(str)).to_numpy(float))
    table = table[np.isfinite(table["p_true"])]
    low, high, p = (table[c].to_numpy(float) for c in ("interval_low", "interval_high", "p_true"))
    covered, width = (p >= low) & (p <= high), high - low
    outside = table["interval_outside"].fillna("").astype(str).str.len().to_numpy() > 0
    missing = (table["imputed_fields"].fillna("").astype(str).str.len().to_numpy() > 0) \
        | (table["missing_modalities"].fillna("").astype(str).str.len().to_numpy() > 0)
    level = pd.to_numeric(table["interval_level"], errors="coerce").to_numpy(float)
    calibrated = np.isfinite(level)
    calibration = read_calibration(bundle.manifest)
    return {
        "model": bundle.name, "model_version": bundle.version, "bundle_digest": bundle.digest, "cohort": str(cohort),
        "interval_method": calibration["description"] if calibration else "spread of the fold models",
        "level": calibration["level"] if calibration else None,
        "q_logit": calibration["q"] if calibration else None,
        "all": summary(covered, width),
        "inside_training_range": summary(covered[~outside], width[~outside]),
        "outside_training_range": summary(covered[outside], width[outside]),
        "no_missing_input": summary(covered[~missing], width[~missing]),
        "missing_input": summary(covered[missing], width[missing]),
        "calibrated_rows": summary(covered[calibrated], width[calibrated]),
        "not_calibrated_rows (e.g. organ-network lesions)": summary(covered[~calibrated], width[~calibrated]),
        "true_below_interval": int((p < low).sum()), "true_above_interval": int((p > high).sum()),
        "command": "python benchmarks/interval_coverage.py " + shlex.join(sys.argv[1:]),
    }


def _raw_lab_part(labs: pd.DataFrame) -> pd.Series:
    """Unscaled lab part of the simulator's true risk (:func:`pfs_core.synth.survival.raw_parts`)."""
    return (LAB_COEF["log_ki67"] * np.log(labs["ki67"]) + LAB_COEF["albumin"] * labs["albumin"]
            + LAB_COEF["log_gamma_gt"] * np.log(labs["gamma_gt"]) + labs["primary_site"].map(SITE_EFFECT).fillna(0.0))


def stress(model: Path, cohort: Path, *, n: int = 60, seed: int = 0) -> dict[str, Any]:
    """Coverage of ``model``'s interval when one lab is set beyond the training range (see the module text)."""
    bundle = load_bundle(model)
    truth = read_ground_truth(cohort)
    if truth is None:
        raise SystemExit(f"error: {cohort.parent}/ground_truth.csv not found")
    table = pd.read_csv(cohort, dtype={"patient_id": str}).set_index("patient_id")
    table = table[table[["ki67", "albumin", "gamma_gt"]].notna().all(axis=1)]
    true = truth.drop_duplicates("patient_id").set_index("patient_id").loc[table.index]
    raw = _raw_lab_part(table)
    slope = float(np.polyfit(raw.to_numpy(float), true["risk_lab"].to_numpy(float), 1)[0])
    ids = np.random.default_rng(seed).choice(table.index.to_numpy(), size=min(n, len(table)), replace=False)
    names = [f["name"] for f in bundle.manifest.get("features", [])]
    out: dict[str, Any] = {"model": bundle.name, "bundle_digest": bundle.digest, "cohort": str(cohort),
                           "n": len(ids), "lab_part_scale": round(slope, 6), "cases": {}}
    for name, value in (*STRESS, (None, None)):
        covered, width = [], []
        for pid in ids:
            labs = {k: (None if pd.isna(table.at[pid, k]) else table.at[pid, k]) for k in names if k in table}
            eta = float(true.at[pid, "risk_score_true"])
            if name is not None:
                changed = table.loc[[pid]].assign(**{name: value})
                eta += slope * float(_raw_lab_part(changed).iloc[0] - raw.at[pid])
                labs[name] = value
            p_true = float(-np.expm1(-np.exp(eta)))
            low, high = predict_case(bundle, pet=None, ct=None, labs=labs, device="cpu").interval
            covered.append(low <= p_true <= high)
            width.append(high - low)
        out["cases"][f"{name} = {value:g}" if name else "unchanged"] = \
            summary(np.array(covered), np.array(width))
    out["command"] = "python benchmarks/interval_coverage.py " + shlex.join(sys.argv[1:])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="bundle folder")
    parser.add_argument("--cohort", type=Path, required=True, help="simulated cohort.csv with ground_truth.csv")
    parser.add_argument("--out", type=Path, default=Path("results/interval_coverage.json"))
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    parser.add_argument("--stress", action="store_true", help="the extrapolation stress test (lab-only bundles)")
    args = parser.parse_args(argv)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.stress:
        record = stress(args.model, args.cohort)
        results[f"stress: {record['model']} on {args.cohort}"] = record
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        print(json.dumps(record["cases"], indent=1))
        return 0
    record = coverage(args.model, args.cohort, cache_dir=args.cache_dir)
    results[f"{record['model']} on {args.cohort}"] = record
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: record[k] for k in ("model", "cohort", "all", "inside_training_range",
                                              "outside_training_range")}, indent=1))
    return 0


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    raise SystemExit(main())
