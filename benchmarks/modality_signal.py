"""Plant the risk signal in one modality only and check which modality the explanations credit.

    python benchmarks/modality_signal.py --n 200 --out results/modality_signal.json
    python benchmarks/modality_signal.py --explain-only BUNDLE --planted ct --work DIR --out FILE

For each of labs, PET and CT: simulate a *decoupled* cohort (``--labs-independent``: the
labs carry no information about the imaging burden) with ``--signal <m>=1`` and the
other two weights 0 on an explanation-check seed (docs/evaluation.md), train a
``lab_pet_ct`` bundle on it (3 folds), and compute the mean |Shapley contribution| of
each modality (exact Shapley values of :func:`pfs_core.explain.shapley.modality_shapley`)
over a second decoupled cohort of the same signal on another explanation-check seed,
which shares no patient with the training cohort. The planted modality should get the
largest mean |contribution|. PET and CT see the same lesions and cannot be decoupled
from each other; the true PET and CT parts use different quantities (docs/simulator.md).
Writes and prints a JSON summary with the bundles' CV AUROC. ``--explain-only`` explains a bundle trained
elsewhere (for example on a larger cohort of the same seed and signal) on ``<work>/<planted>_explain``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SIGNALS = {"labs": "labs=1,pet=0,ct=0", "pet": "labs=0,pet=1,ct=0", "ct": "labs=0,pet=0,ct=1"}


def _run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pfs_core", *args], check=True, stdout=subprocess.DEVNULL)


def mean_abs_contributions(bundle_path: Path, cohort_csv: Path, *, max_cases: int) -> dict[str, float]:
    from pfs_core.explain.shapley import modality_shapley
    from pfs_core.inference import load_cohort_for_bundle
    from pfs_core.models.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    # with its lesion measurements (organs from the cohort's organs column), cached like the training's
    data = load_cohort_for_bundle(bundle, cohort_csv, cache_dir=Path("cache"))
    rows = [modality_shapley(bundle, data.subset([i])).contributions for i in range(min(max_cases, len(data)))]
    return {k: round(float(v), 5) for k, v in pd.DataFrame(rows).abs().mean().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--seed", type=int, default=7001, help="training cohorts' seed")
    parser.add_argument("--explain-seed", type=int, default=7002, help="held-out cohorts' seed")
    parser.add_argument("--explain-n", type=int, default=60)
    parser.add_argument("--work", type=Path, default=Path("data/modality_signal"))
    parser.add_argument("--max-cases", type=int, default=60)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--explain-only", type=Path, metavar="BUNDLE", help="explain this bundle only")
    parser.add_argument("--planted", choices=tuple(SIGNALS), help="with --explain-only: the cohort's planted modality")
    args = parser.parse_args()
    if args.explain_only:
        _write(explain_only(args.explain_only, args.work / f"{args.planted}_explain", args.planted,
                            max_cases=args.max_cases), args.out)
        return
    started = time.perf_counter()
    summary: dict = {"n": args.n, "seed": args.seed, "explain_n": args.explain_n, "explain_seed": args.explain_seed,
                     "labs_independent": True, "model": "lab_pet_ct", "planted": {}}
    for modality, signal in SIGNALS.items():
        cohort = args.work / modality
        held_out = args.work / f"{modality}_explain"
        _run("synth", "--n", str(args.n), "--seed", str(args.seed), "--signal", signal, "--labs-independent",
             "--out", str(cohort), "--force")
        _run("synth", "--n", str(args.explain_n), "--seed", str(args.explain_seed), "--signal", signal,
             "--labs-independent", "--out", str(held_out), "--force")
        bundle = args.work / f"bundle_{modality}"
        _run("train", "--cohort", str(cohort / "cohort.csv"), "--model", "lab_pet_ct", "--out", str(bundle),
             "--force", "--no-progress")
        result = explain_only(bundle, held_out, modality, max_cases=args.max_cases)
        summary["measurement"] = result["measurement"]
        summary["planted"][modality] = {"signal": signal, **{k: result[k] for k in (
            "mean_abs_contribution", "largest", "correct", "bundle_cv_auroc")}}
    summary["command"] = "python benchmarks/modality_signal.py " + " ".join(sys.argv[1:])
    summary["all_correct"] = bool(np.all([v["correct"] for v in summary["planted"].values()]))
    summary["wall_time_s"] = round(time.perf_counter() - started, 1)
    _write(summary, args.out)


def explain_only(bundle: Path, held_out: Path, planted: str, *, max_cases: int) -> dict:
    """Mean |Shapley| per modality of ``bundle`` over ``held_out``, and whether ``planted`` comes first."""
    contributions = mean_abs_contributions(bundle, held_out / "cohort.csv", max_cases=max_cases)
    largest = {"lab": "labs", "pet": "pet", "ct": "ct"}[max(contributions, key=lambda k: contributions[k])]
    manifest = json.loads((bundle / "manifest.json").read_text())
    return {"command": "python benchmarks/modality_signal.py " + " ".join(sys.argv[1:]), "bundle": str(bundle),
            "training_cohort": manifest.get("training_cohort", {}).get("n"), "explained": str(held_out),
            "measurement": manifest.get("measurement", {}).get("measurement"), "planted": planted,
            "mean_abs_contribution": contributions, "largest": largest, "correct": largest == planted,
            "bundle_cv_auroc": manifest.get("cv_metrics", {}).get("auroc")}


def _write(summary: dict, out: Path | None) -> None:
    text = json.dumps(summary, indent=1)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
