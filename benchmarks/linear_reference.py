"""What does a plain logistic regression reach on the labs and the image read-outs?

    python benchmarks/linear_reference.py --cohort data/sim400 [--seeds 3] [--fine-grid]

A reference for the networks: L2 logistic regression on the prepared labs
(:func:`pfs_core.features.tabular.fit_lab_transform`, fitted on the training folds) and
log(1 + read-out) of :mod:`pfs_core.features.readouts` on the shipped model grid; stratified 3-fold
CV repeated with ``--seeds`` shuffles; prints the mean ± sd AUROC per input set with one
penalty (C = 0.3, standardised inputs) and, in a second column, with one penalty weight per
modality and C chosen by inner CV (:mod:`pfs_core.models.block_logistic`, the networks' logistic
start). On a simulated cohort also "labs+truth": the labs with the simulator's true PET and
CT inputs (``-ln TLR_pos`` and ``ln(1 + V_sstr_negative) + 4 LTF`` from ``ground_truth.csv``,
docs/simulator.md) in place of the read-outs, the most that perfect read-outs could add; and
two half-way rows, the read-outs with the true PET input ("labs+truth_pet+readouts") or the
true CT input ("labs+readouts+truth_ct") added, which say how much each side's measurement
costs. ``--fine-grid`` adds "labs+fine": a wider set of segmentation-free read-outs on an
aligned 6-mm grid (:func:`fine_readouts`), to see whether a finer grid would close the gap.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pfs_core.config import MODEL_PREPROCESS, PreprocessConfig
from pfs_core.dataset import CohortData, load_cohort_data
from pfs_core.features.readouts import (
    COLD_FACTOR,
    CT_READOUT_NAMES,
    LIVER_BAND,
    READOUT_NAMES,
    liver_hu,
    liver_suv,
    measurements,
    to_hu,
)
from pfs_core.features.tabular import fit_lab_transform
from pfs_core.models.block_logistic import fit_block_logistic

INPUTS = {"labs": ("labs",), "labs+pet": ("labs", "pet"), "labs+pet+ct": ("labs", "pet", "ct"), "pet+ct": ("pet", "ct")}
#: With the truth, the PET and CT read-outs form one block ("readouts"), so that each half-way row has three.
TRUTH_INPUTS = {"labs+truth_pet+readouts": ("labs", "truth_pet", "readouts"),
                "labs+readouts+truth_ct": ("labs", "readouts", "truth_ct"), "labs+truth": ("labs", "truth")}
#: The aligned 6-mm grid of ``--fine-grid`` (PET not smoothed before resampling, as on the model grid).
FINE_GRID = PreprocessConfig(spacing_mm=(6.0, 6.0, 6.0), shape=(64, 48, 64), pet_suv_max=60.0, pet_antialias=False)
CUBE = np.ones((3, 3, 3), bool)
#: Hot threshold of the 6-mm set (× liver): the factor its figures in docs/models.md were measured with.
FINE_HOT_FACTOR = 1.25
FINE_NAMES = ("hepatic_hot_ml", "hepatic_tlr", "hepatic_cold_inner_ml", "hepatic_lesion_fraction",
              "hepatic_pet_cold_ct_hypodense_ml", "small_hot_components_ml", "small_hot_components_tlr_max")


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


def fine_readouts(data: CohortData) -> np.ndarray:
    """(N, 7) log(1 + x) of the 6-mm read-outs :data:`FINE_NAMES` (:func:`_fine_case`), one row per patient."""
    rows = [_fine_case(data.pet[i] * FINE_GRID.pet_suv_max,  # type: ignore[index]
                       to_hu(data.ct[i], FINE_GRID.ct_window_hu)) for i in range(len(data))]  # type: ignore[index,arg-type]
    return np.log1p(np.asarray(rows))


def _fine_case(suv: np.ndarray, hu: np.ndarray) -> list[float]:
    """One case on the 6-mm grid (SUVbw, HU): hepatic hot mL and TLR, cold mL one voxel inside the
    region, lesion fraction, PET-cold and CT-hypodense hepatic mL (SSTR-negative liver lesions),
    and over hot components (> 1.5 x liver) smaller than 80 mL anywhere: their mL and volume-weighted
    SUVmax / liver (spleen, kidneys and bladder are larger). Thresholds of pfs_core.features.readouts."""
    liver = float(liver_suv(torch.from_numpy(suv.astype(np.float32))[None, None])[0])
    liver_hu_value = float(liver_hu(torch.from_numpy(hu.astype(np.float32))[None, None])[0])
    band = (suv >= LIVER_BAND[0] * liver) & (suv <= LIVER_BAND[1] * liver)
    labels, n = ndimage.label(ndimage.binary_closing(band, CUBE, iterations=2), CUBE)
    region = labels == 1 + np.argmax(np.bincount(labels.ravel())[1:]) if n else band
    inner = ndimage.binary_erosion(region, CUBE)
    hot, cold = region & (suv > FINE_HOT_FACTOR * liver), inner & (suv < COLD_FACTOR * liver)
    negative = region & (suv < COLD_FACTOR * liver) & (hu > liver_hu_value - 50) & (hu < liver_hu_value - 12)
    labels, n = ndimage.label(suv > 1.5 * liver, CUBE)
    index = np.arange(1, n + 1)
    size_ml = ndimage.sum_labels(np.ones_like(suv), labels, index) * FINE_GRID.voxel_ml
    peak, small = ndimage.maximum(suv, labels, index), size_ml < 80.0
    wb_tlr = float(np.average(peak[small], weights=size_ml[small]) / liver) if small.any() else 3.0
    return [hot.sum() * FINE_GRID.voxel_ml, float(suv[hot].mean() / liver) if hot.any() else 0.0,
            cold.sum() * FINE_GRID.voxel_ml, (hot.sum() + cold.sum()) / max(region.sum(), 1),
            negative.sum() * FINE_GRID.voxel_ml, float(size_ml[small].sum()), wb_tlr]


def print_truth_correlations(fine: np.ndarray, truth_csv: Path, patient_ids: np.ndarray) -> None:
    """Spearman correlation of each 6-mm read-out with the simulator's true lesion summaries."""
    truth = pd.read_csv(truth_csv).set_index("patient_id").loc[list(patient_ids)]
    targets = {"TLR": truth["tumour_to_liver_ratio"].fillna(3.0), "SSTR-neg mL": truth["sstr_negative_volume_ml"],
               "liver fraction": truth["liver_tumour_fraction"]}
    for j, name in enumerate(FINE_NAMES):
        rhos = "  ".join(f"{k} {spearmanr(fine[:, j], v).statistic:+.3f}" for k, v in targets.items())
        print(f"  6-mm {name:34s} Spearman with true {rhos}")


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
    parser.add_argument("--fine-grid", action="store_true", help="add the 6-mm read-outs (row labs+fine)")
    args = parser.parse_args()
    data = load_cohort_data(args.cohort / "cohort.csv", preprocess=MODEL_PREPROCESS, need_images=True,
                            cache_dir=Path("cache"))
    images = readouts(data)
    inputs = dict(INPUTS)
    if args.fine_grid:
        fine = load_cohort_data(args.cohort / "cohort.csv", preprocess=FINE_GRID, need_images=True,
                                cache_dir=Path("cache"))
        images["fine"], inputs["labs+fine"] = fine_readouts(fine), ("labs", "fine")
    truth_csv = args.cohort / "ground_truth.csv"
    if args.fine_grid and truth_csv.is_file():
        print_truth_correlations(images["fine"], truth_csv, data.patient_ids)
    if truth_csv.is_file():
        images["truth"] = true_image_inputs(truth_csv, data.patient_ids)
        images["truth_pet"], images["truth_ct"] = images["truth"][:, :1], images["truth"][:, 1:]
        images["readouts"] = np.hstack([images["pet"], images["ct"]])
        inputs.update(TRUTH_INPUTS)
    for name, parts in inputs.items():
        plain = [cv_auroc(data, images, parts, seed) for seed in range(args.seeds)]
        block = [cv_auroc(data, images, parts, seed, blocks=True) for seed in range(args.seeds)]
        print(f"{name:24s} AUROC {np.mean(plain):.3f} ± {np.std(plain):.3f}   "
              f"modality weights {np.mean(block):.3f} ± {np.std(block):.3f}")


if __name__ == "__main__":
    main()
