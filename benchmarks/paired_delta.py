"""Paired ΔAUROC of one model against others, from a benchmark's out-of-fold predictions.

    python benchmarks/paired_delta.py --results results/sim116 --cohort data/sim116_eval/cohort.csv \
        --model lab_pet_ct --against lab_rf,pet_cnn,ct_cnn

The probabilities are averaged over the repeats per patient, as in the benchmark's own paired table, and
compared with :func:`pfs_core.metrics.paired_auroc_bootstrap` (2,000 patient-bootstrap resamples, seed
1000000 + the benchmark's seed, as the benchmark does). ``results.md`` has the comparison against the
references and the best single modality only; this gives it against any model of the same run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from pfs_core.io.cohort import read_cohort
from pfs_core.metrics import paired_auroc_bootstrap, short_pfs_label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="benchmark output folder")
    parser.add_argument("--cohort", type=Path, required=True, help="the cohort.csv it ran on")
    parser.add_argument("--model", required=True)
    parser.add_argument("--against", required=True, help="comma-separated model names")
    args = parser.parse_args()
    seed = json.loads((args.results / "results.json").read_text()).get("settings", {}).get("seed", 0)
    oof = pd.read_csv(args.results / "oof_predictions.csv", dtype={"patient_id": str})
    probs = oof.groupby(["model", "patient_id"])["probability"].mean().unstack("model")
    frame = read_cohort(args.cohort).set_index("patient_id").loc[probs.index]
    label = short_pfs_label(frame["pfs_months"].to_numpy(float), frame["progressed"].to_numpy(float))
    for other in args.against.split(","):
        d = paired_auroc_bootstrap(label, probs[args.model].to_numpy(), probs[other].to_numpy(),
                                   seed=1_000_000 + int(seed))
        print(f"{args.model} - {other}: {d['delta']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")


if __name__ == "__main__":
    main()
