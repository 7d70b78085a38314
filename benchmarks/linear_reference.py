"""What does a plain logistic regression reach on the labs and the image read-outs?

    python benchmarks/linear_reference.py --cohort data/sim400 [--seeds 3]

A reference for the networks: L2 logistic regression on the prepared labs
(:func:`pfs_core.tabular.fit_lab_transform`, fitted on the training folds) and
log(1 + read-out) of :mod:`pfs_core.readouts` on the shipped model grid; stratified 3-fold
CV repeated with ``--seeds`` shuffles; prints the mean ± sd AUROC per input set with one
penalty (C = 0.3, standardised inputs) and, in a second column, with one penalty weight per
modality and C chosen by inner CV (:mod:`pfs_core.block_logistic`, the networks' logistic
start). On a simulated cohort also "labs+truth": the labs with the simulator's true PET and
CT inputs (``-ln TLR_pos`` and ``ln(1 + V_sstr_negative) + 4 LTF`` from ``ground_truth.csv``,
docs/simulator.md) in place of the read-outs, the most that perfect read-outs could add.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pfs_core.block_logistic import fit_block_logistic
from pfs_core.readouts import CT_READOUT_NAMES, READOUT_NAMES, measurements
from pfs_core.tabular import fit_lab_transform
from pfs_core.train import MODEL_PREPROCESS, CohortData, load_cohort_data

INPUTS = {"labs": ("labs",), "labs+pet": ("labs", "pet"), "labs+pet+ct": ("labs", "pet", "ct"), "pet+ct": ("pet", "ct")}


def readouts(data: CohortData) -> dict[str, np.ndarray]:
    """log(1 + read-outs) per image, (N, k) each."""
    voxel_ml = MODEL_PREPROCESS.voxel_ml
    rows = pd.DataFrame([measurements(data.pet[i], data.ct[i], suv_max=MODEL_PREPROCESS.pet_suv_max,  # type: ignore[index]
                                      ct_window_hu=MODEL_PREPROCESS.ct_window_hu, voxel_ml=voxel_ml)
                         for i in range(len(data))])
    return {"pet": np.log1p(rows[list(READOUT_NAMES)].to_numpy()), "ct": np.log1p(rows[list(CT_READOUT_NAMES)].to_numpy())}


def true_image_inputs(truth_csv: Path, patient_ids: np.ndarray) -> np.ndarray:
    """(N, 2) the simulator's raw PET and CT risk inputs of each patient (docs/simulator.md)."""
    truth = pd.read_csv(truth_csv).set_index("patient_id").loc[list(patient_ids)]
    raw_pet = -np.log(truth["tumour_to_liver_ratio"].fillna(3.0).to_numpy())
    raw_ct = np.log1p(truth["sstr_negative_volume_ml"].fillna(0.0).to_numpy()) + 4.0 * truth[
        "liver_tumour_fraction"].fillna(0.0).to_numpy()
    return np.column_stack([raw_pet, raw_ct])


def cv_auroc(data: CohortData, images: dict[str, np.ndarray], parts: tuple[str, ...], seed: int, *,
             blocks: bool = False) -> float:
    y = data.label
    known = np.flatnonzero(~np.isnan(y))
    prob = np.zeros(len(known))
    for train, test in StratifiedKFold(3, shuffle=True, random_state=seed).split(known, y[known]):
        fit_rows, test_rows = known[train], known[test]
        labs = fit_lab_transform(data.labs.iloc[fit_rows]) if "labs" in parts else None
        design = _design(data, images, parts, labs, fit_rows)
        if blocks:
            sizes = tuple(labs.n_features if p == "labs" else images[p].shape[1] for p in parts)  # type: ignore[union-attr]
            fit = fit_block_logistic(design, y[fit_rows], sizes, seed=seed)
            prob[test] = fit.decision_function(_design(data, images, parts, labs, test_rows))
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=5000))
        model.fit(design, y[fit_rows])
        prob[test] = model.predict_proba(_design(data, images, parts, labs, test_rows))[:, 1]
    return float(roc_auc_score(y[known], prob))


def _design(data: CohortData, images: dict[str, np.ndarray], parts: tuple[str, ...], labs: object,
            rows: np.ndarray) -> np.ndarray:
    blocks = [labs.transform(data.labs.iloc[rows])] if labs is not None else []  # type: ignore[attr-defined]
    return np.hstack(blocks + [images[p][rows] for p in parts if p != "labs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True, help="folder written by `pfs_core synth`")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    data = load_cohort_data(args.cohort / "cohort.csv", preprocess=MODEL_PREPROCESS, need_images=True,
                            cache_dir=Path("cache"))
    images = readouts(data)
    truth_csv = args.cohort / "ground_truth.csv"
    if truth_csv.is_file():
        images["truth"] = true_image_inputs(truth_csv, data.patient_ids)
        INPUTS["labs+truth"] = ("labs", "truth")
    for name, parts in INPUTS.items():
        plain = [cv_auroc(data, images, parts, seed) for seed in range(args.seeds)]
        block = [cv_auroc(data, images, parts, seed, blocks=True) for seed in range(args.seeds)]
        print(f"{name:12s} AUROC {np.mean(plain):.3f} ± {np.std(plain):.3f}   "
              f"modality weights {np.mean(block):.3f} ± {np.std(block):.3f}")


if __name__ == "__main__":
    main()
