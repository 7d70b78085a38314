"""A shipped bundle on a held-out simulated cohort: AUROC with a bootstrap interval, C-index, Brier.

    python benchmarks/bundle_evaluation.py --model models/lab_pet_ct_pretrained \
        --cohort data/sim400_eval9004 [--record]

Scores every patient of the cohort folder (``synth`` output; an evaluation seed of docs/evaluation.md,
never used for training or tuning) with :func:`pfs_core.inference.predict_cohort`, the lesion
measurements included. AUROC, Brier on the patients with a binary label, Harrell's C-index on all;
95 % interval of the AUROC from 2,000 patient-bootstrap resamples (seed 0). ``--record`` writes the
result into the bundle's manifest and model card (:func:`pfs_core.models.bundle.record_evaluation`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

from pfs_core.inference import predict_cohort
from pfs_core.metrics import c_index, short_pfs_label
from pfs_core.models.bundle import load_bundle, record_evaluation


def evaluate(model: Path, cohort: Path, *, cache_dir: Path | None) -> dict[str, object]:
    bundle = load_bundle(model)
    scores = predict_cohort(bundle, cohort / "cohort.csv", cache_dir=cache_dir).set_index("patient_id")
    table = pd.read_csv(cohort / "cohort.csv", dtype={"patient_id": str}).set_index("patient_id")
    p = scores.loc[table.index, "probability"].to_numpy(float)
    time, event = table["pfs_months"].to_numpy(float), table["progressed"].to_numpy(float)
    label = short_pfs_label(time, event)
    known = ~np.isnan(label)
    y, q = label[known], p[known]
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(2000):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() != y[i].max():
            boot.append(roc_auc_score(y[i], q[i]))
    summary = json.loads((cohort / "summary.json").read_text()) if (cohort / "summary.json").is_file() else {}
    return {"cohort": f"synth --n {summary.get('n')} --seed {summary.get('seed')}" if summary else str(cohort),
            "n": int(len(p)), "n_labelled": int(known.sum()), "auroc": round(float(roc_auc_score(y, q)), 4),
            "auroc_ci95": [round(float(np.percentile(boot, 2.5)), 4), round(float(np.percentile(boot, 97.5)), 4)],
            "c_index": round(float(c_index(time, event, p)), 4), "brier": round(float(brier_score_loss(y, q)), 4),
            "bayes_auroc": summary.get("bayes_auroc"), "model_version": bundle.version,
            "command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cohort", type=Path, required=True, help="synth output folder")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    parser.add_argument("--record", action="store_true", help="write the result into the bundle")
    args = parser.parse_args()
    result = evaluate(args.model, args.cohort, cache_dir=args.cache_dir)
    print(json.dumps(result, indent=2))
    if args.record:
        record_evaluation(args.model, result)


if __name__ == "__main__":
    main()
