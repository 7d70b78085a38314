"""How well do the liver-referenced read-outs track the simulator's truth?

    python benchmarks/readout_signal.py --cohort data/sim400 [--out results/readout_signal.json]

Computes the PET and CT read-outs of :mod:`pfs_core.features.readouts` on the shipped model grid
(:data:`pfs_core.config.MODEL_PREPROCESS`) for every patient of a simulated cohort, and
prints their Spearman correlations with the true quantities of ``ground_truth.csv``
(tumour-to-liver ratio, liver tumour fraction, SSTR-negative volume, risk parts), next
to the ``classic`` model's whole-body PET features for comparison. No training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from scipy.stats import spearmanr

from pfs_core.config import MODEL_PREPROCESS
from pfs_core.dataset import load_cohort_data

TRUTH = ("tumour_to_liver_ratio", "liver_tumour_fraction", "sstr_negative_volume_ml", "risk_pet", "risk_ct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True, help="folder written by `pfs_core synth`")
    parser.add_argument("--out", type=Path, help="optional JSON file for the table")
    args = parser.parse_args()
    from pfs_core.features.readouts import measurements

    data = load_cohort_data(args.cohort / "cohort.csv", preprocess=MODEL_PREPROCESS, need_images=True,
                            cache_dir=Path("cache"))
    truth = pd.read_csv(args.cohort / "ground_truth.csv").set_index("patient_id").loc[data.patient_ids]
    voxel_ml = MODEL_PREPROCESS.voxel_ml
    rows = [measurements(data.pet[i], data.ct[i], suv_max=MODEL_PREPROCESS.pet_suv_max,  # type: ignore[index]
                         ct_window_hu=MODEL_PREPROCESS.ct_window_hu, voxel_ml=voxel_ml) for i in range(len(data))]
    features = pd.concat([pd.DataFrame(rows), data.pet_features()[["suv_max", "tlr_max", "tlr_mean"]]], axis=1)
    table = {name: {t: round(float(spearmanr(features[name], truth[t], nan_policy="omit")[0]), 3) for t in TRUTH}
             for name in features.columns}
    print(f"Spearman correlation with the truth, {len(data)} patients of {args.cohort}:")
    print(pd.DataFrame(table).T.to_string())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"cohort": str(args.cohort), "n": len(data), "spearman": table}, indent=2))


if __name__ == "__main__":
    main()
