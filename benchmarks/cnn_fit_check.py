"""Does a network fit its training patients, and does what it learns track the true risk?

    python benchmarks/cnn_fit_check.py --cohort data/sim116_petonly --model pet_cnn --epochs 40 \
        [--train-config '{"dropout": 0.1}']

One random 2:1 split (seed 0) of a simulated cohort; trains ``--model`` on the larger part
with the shipped grid (:data:`pfs_core.config.MODEL_PREPROCESS`) and :class:`TrainConfig`
plus the overrides, then prints, for the training and the held-out part, the AUROC against
the observed label and the Spearman correlation of the predicted probability with the
simulator's true risk parts (``risk_pet``, ``risk_ct``, ``risk_lab``). Underfitting shows as a
low training AUROC, a signal the network cannot find as a low correlation on both parts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from pfs_core.config import MODEL_PREPROCESS, TrainConfig
from pfs_core.dataset import load_cohort_data
from pfs_core.models.registry import get_spec
from pfs_core.training.fit import fit_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True, help="folder written by `pfs_core synth`")
    parser.add_argument("--model", default="pet_cnn")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--train-config", default="{}", help="JSON overrides of TrainConfig fields")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_cohort_data(args.cohort / "cohort.csv", preprocess=MODEL_PREPROCESS, need_images=True,
                            cache_dir=Path("cache"))
    truth = pd.read_csv(args.cohort / "ground_truth.csv").set_index("patient_id").loc[data.patient_ids]
    order = np.random.default_rng(0).permutation(len(data))
    cut = int(round(2 * len(data) / 3))
    parts = {"train": order[:cut], "held-out": order[cut:]}
    overrides = json.loads(args.train_config)
    config = dataclasses.replace(TrainConfig(), epochs=args.epochs, **overrides)
    model = fit_model(get_spec(args.model), data.subset(parts["train"]), config=config, seed=1,
                      device=torch.device("cpu"))
    for name, rows in parts.items():
        prob = model.predict_proba(data.subset(rows))
        label = data.label[rows]
        known = ~np.isnan(label)
        rho = {part: spearmanr(prob, truth[part].to_numpy()[rows])[0] for part in ("risk_pet", "risk_ct", "risk_lab")
               if truth[part].std() > 0}  # a part without planted signal is constant
        print(f"{name:9s} n={len(rows):3d} AUROC {roc_auc_score(label[known], prob[known]):.3f}  Spearman with "
              + "  ".join(f"{k} {v:+.3f}" for k, v in rho.items()))


if __name__ == "__main__":
    main()
