"""How often can the planted-lab truth check pass at a given training size? (issue 23, truth checks)

    python -m pfs_core synth --n 5000 --seed 7003 --signal labs=1,pet=0,ct=0 --labs-independent --no-images \
        --out /tmp/labs7003
    python benchmarks/planted_lab_power.py --cohort /tmp/labs7003/cohort.csv --sizes 200,400,1000,2000 \
        --draws 200 --out results/planted_lab_power.json

The check (``benchmarks/explain_truth.py``) asks that every planted lab (:data:`PLANTED_LABS`: Ki-67,
albumin, gamma-GT, primary site) ranks above every lab that carries no signal (:data:`NO_SIGNAL_LABS`) by
mean |SHAP|. Its model is trained on 200 patients. Here a correctly specified model, an L2 logistic regression
on the models' lab transform (``ref_labs`` of the benchmark, C = ``TrainConfig.logistic_c``), is fitted on
``--draws`` random subsets of each size from one large tables-only cohort with independent labs; each lab's
exact linear SHAP value (sum over its columns of coefficient × (value − training mean)) is averaged in
absolute value over the patients not drawn (up to 1,000), and the share of draws in which the check passes
is reported with a Wilson 95 % interval. It says whether a failure at 200 patients is the explanation's fault
or the training size's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pfs_core.config import TrainConfig
from pfs_core.features.tabular import fit_lab_transform
from pfs_core.io.cohort import read_cohort
from pfs_core.metrics import short_pfs_label
from pfs_core.schema import LAB_COLUMNS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explain_truth import NO_SIGNAL_LABS, PLANTED_LABS  # noqa: E402
from lesion_explain_truth import wilson  # noqa: E402


def lab_of(feature: str) -> str:
    """The lab a column of the lab transform comes from (``log1p_X``, ``missing_X``, ``X=level`` → X)."""
    return feature.split("=")[0].removeprefix("log1p_").removeprefix("missing_")


def mean_abs_shap(frame: pd.DataFrame, label: np.ndarray, train: np.ndarray, test: np.ndarray,
                  config: TrainConfig) -> pd.Series:
    """Mean |linear SHAP| per lab on ``test`` of a logistic model fitted on ``train``."""
    labs = fit_lab_transform(frame.iloc[train], include_post_baseline=config.include_post_baseline)
    x_train, x_test = labs.transform(frame.iloc[train]), labs.transform(frame.iloc[test])
    scaler = StandardScaler().fit(x_train)
    model = LogisticRegression(C=config.logistic_c, max_iter=5000).fit(scaler.transform(x_train), label[train])
    coef = model.coef_[0] / scaler.scale_
    parts = (x_test - scaler.mean_) * coef
    groups = pd.Series([lab_of(n) for n in labs.feature_names])
    per_lab = pd.DataFrame(parts, columns=range(parts.shape[1])).T.groupby(groups.to_numpy()).sum().T
    return per_lab.abs().mean(axis=0)


def passes(mean_abs: pd.Series) -> bool:
    planted = [mean_abs[n] for n in PLANTED_LABS if n in mean_abs]
    null = [mean_abs[n] for n in NO_SIGNAL_LABS if n in mean_abs]
    return bool(min(planted) > max(null))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True, help="tables-only cohort with --labs-independent")
    parser.add_argument("--sizes", default="200,400,1000,2000")
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    frame = read_cohort(args.cohort, need_images=False)
    label = short_pfs_label(frame["pfs_months"].to_numpy(float), frame["progressed"].to_numpy(float))
    known = np.flatnonzero(~np.isnan(label))
    labs = frame[[c for c in LAB_COLUMNS if c in frame.columns]]
    config = TrainConfig()
    rng = np.random.default_rng(args.seed)
    summary: dict[str, object] = {"cohort": str(args.cohort), "labelled": int(known.size), "draws": args.draws,
                                  "planted": list(PLANTED_LABS), "no_signal": list(NO_SIGNAL_LABS), "sizes": {}}
    for size in (int(s) for s in args.sizes.split(",")):
        hits, top_null = 0, []
        for _ in range(args.draws):
            order = rng.permutation(known)
            train, test = order[:size], order[size:size + 1000]
            mean_abs = mean_abs_shap(labs, label, train, test, config)
            hits += passes(mean_abs)
            top_null.append(str(mean_abs[list(NO_SIGNAL_LABS)].idxmax()))
        low, high = wilson(hits, args.draws)
        row = {"pass_rate": round(hits / args.draws, 3), "ci95": [round(low, 3), round(high, 3)],
               "largest_null_lab": pd.Series(top_null).value_counts().to_dict()}
        summary["sizes"][str(size)] = row  # type: ignore[index]
        print(size, json.dumps(row), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
