"""Coverage of a bundle's interval on a simulated evaluation cohort (issue 25, "Honest uncertainty").

    python benchmarks/interval_coverage.py --model models/lab_pet_ct_pretrained \\
        --cohort data/sim400_eval9004/cohort.csv [--out results/interval_coverage.json] [--cache-dir cache]

Scores the cohort with the bundle (:func:`pfs_core.inference.score_cohort`, the path of ``pfs_core score``) and
compares each patient's interval with the simulator's true probability of PFS <= 12 months
(``p_short_pfs_true`` in ``ground_truth.csv`` beside the cohort). Writes, under the key ``<model> on <cohort>``
of ``--out`` (other keys kept): coverage with a Wilson 95 % interval, mean and median width, and the same
split by patients whose inputs lie inside the training range vs outside it (``interval_outside``), and with vs
without missing inputs. Use evaluation cohorts only to report, never to choose the method.
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

from pfs_core.inference import score_cohort
from pfs_core.models.bundle import load_bundle
from pfs_core.training.references import read_ground_truth
from pfs_core.uncertainty import read_calibration


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion k / n ((nan, nan) when n = 0)."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


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
        "true_below_interval": int((p < low).sum()), "true_above_interval": int((p > high).sum()),
        "command": "python benchmarks/interval_coverage.py " + shlex.join(sys.argv[1:]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="bundle folder")
    parser.add_argument("--cohort", type=Path, required=True, help="simulated cohort.csv with ground_truth.csv")
    parser.add_argument("--out", type=Path, default=Path("results/interval_coverage.json"))
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = parser.parse_args(argv)
    record = coverage(args.model, args.cohort, cache_dir=args.cache_dir)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[f"{record['model']} on {args.cohort}"] = record
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: record[k] for k in ("model", "cohort", "all", "inside_training_range",
                                              "outside_training_range")}, indent=1))
    return 0


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    raise SystemExit(main())
