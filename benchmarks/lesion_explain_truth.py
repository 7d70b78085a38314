"""Lesion contributions against the simulator's truth: pointing, SSTR-negative pointing, randomisation.

    python benchmarks/lesion_explain_truth.py --model models/lab_pet_ct_pretrained \
        --cohort data/sim400_eval9004 [--permuted-model /tmp/permuted_bundle] \
        --out results/lesion_pointing_eval9004.json

For every patient of a simulated cohort folder (``synth`` output with images and an ``organs``
column) the case is measured with its organ masks (:func:`pfs_core.measure.case.measure_case`) and
explained down to its lesions (:func:`pfs_core.explain.lesions.lesion_contributions`).

1. Pointing: in short-PFS patients (observed label) with true lesions, is the lesion with the largest
   contribution (it must raise the risk) a true lesion, i.e. do at least half of its CT voxels lie
   in a true lesion dilated by one PET voxel? Baseline: the hottest PET voxel inside the true liver
   (native PET grid), inside a dilated true lesion or not. Beside it: why each miss is one (no lesion
   measured, no lesion raises the risk, the top lesion is not a true one), and the rate when the lesion
   with the largest contribution counts whatever its sign.
2. SSTR-negative pointing: in patients with true SSTR-negative lesions (any outcome), is the top
   lesion an SSTR-negative one (most of its voxels that lie in a true lesion lie in an SSTR-negative
   one)? The hottest-voxel baseline beside it, and why each miss is one (no measured lesion lies mostly in an
   SSTR-negative one, or another lesion is on top), and the rate among the patients with an SSTR-negative
   lesion that the measurement searches for (CT-visible, in the liver, 15 mm or more).
3. Randomisation (with ``--permuted-model``, the same model trained on permuted outcomes,
   ``benchmarks/permuted_cohort.py``): per patient with at least 3 measured lesions, Spearman correlation of
   the two models' lesion contributions; the median is reported (a check passes at <= 0.3). The option may
   be repeated (one model per permutation seed): the answer depends on the signs a permuted model happens
   to give the measurements, so one permutation is one draw; with several, each median is reported, how
   many pass, and their median.

Each rate has a 95 % Wilson interval. Prints and writes a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from measure_truth import negative_subsets
from scipy import ndimage, stats

from pfs_core.explain.lesions import lesion_contributions
from pfs_core.inference import case_data, case_lesion_features, measure_settings, prepare_images
from pfs_core.io import load_ct, load_pet
from pfs_core.io.cohort import read_cohort
from pfs_core.io.labs import validate_labs
from pfs_core.io.organ_files import read_organ_masks
from pfs_core.measure.case import measure_case, organ_fractions
from pfs_core.measure.grids import sample_at, world_of
from pfs_core.metrics import short_pfs_label
from pfs_core.models.bundle import load_bundle
from pfs_core.schema import LAB_COLUMNS


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion k / n (scipy)."""
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def _rate(hits: list[bool]) -> dict[str, object]:
    n, k = len(hits), int(sum(hits))
    low, high = wilson(k, n) if n else (float("nan"), float("nan"))
    return {"n": n, "hits": k, "rate": round(k / n, 3) if n else None, "ci95": [round(low, 3), round(high, 3)]}


def _truth(folder: Path, pid: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    img = nib.load(str(folder / "images" / f"{pid}_lesions.nii.gz"))
    return np.asarray(img.dataobj).astype(np.int32), img.affine, pd.read_csv(folder / "lesions.csv")


def _top_is(measured: np.ndarray, top: int, truth: np.ndarray, negative_labels: set[int]) -> tuple[bool, bool]:
    """(top lesion is a true lesion, its true-lesion voxels lie mostly in SSTR-negative lesions)."""
    voxels = measured == top
    dilated = ndimage.grey_dilation(truth, size=(3, 3, 3))  # one CT voxel; the PET voxel is checked below
    inside = dilated[voxels]
    is_true = voxels.sum() > 0 and float((inside > 0).mean()) >= 0.5
    hit = inside[inside > 0]
    negative = hit.size > 0 and float(np.isin(hit, list(negative_labels)).mean()) > 0.5
    return is_true, negative


def _hottest_in_liver(pet, organs, truth: np.ndarray, truth_affine: np.ndarray,
                      negative_labels: set[int]) -> tuple[bool, bool]:
    """The hottest PET voxel in the liver: in a true lesion (dilated by one voxel)? in an SSTR-negative one?"""
    liver = organ_fractions(organs, pet)["liver"] >= 0.5
    if not liver.any():
        return False, False
    values = np.where(liver, pet.data, -np.inf)
    peak = np.unravel_index(int(np.argmax(values)), pet.shape)
    world = world_of(np.asarray([peak]), pet.affine)
    dilated = ndimage.grey_dilation(truth, size=(3, 3, 3))
    label = int(sample_at(dilated, truth_affine, world, order=0)[0])
    return label > 0, label in negative_labels


def _randomisation(paths: list[Path], spearman: list[list[float]]) -> dict[str, object] | None:
    """Per permuted model the median within-patient Spearman; with several, how many pass and their median."""
    if not paths:
        return None
    rows = [{"permuted_model": str(path), "n_patients": len(rhos),
             "median_spearman": round(float(np.median(rhos)), 3) if rhos else None}
            for path, rhos in zip(paths, spearman, strict=True)]
    medians = [r["median_spearman"] for r in rows if r["median_spearman"] is not None]
    out: dict[str, object] = rows[0] if len(rows) == 1 else {
        "models": rows, "passing": sum(m <= 0.3 for m in medians),
        "median_of_medians": round(float(np.median(medians)), 3) if medians else None}
    return {**out, "check": "median <= 0.3"}


def _largest(result) -> int | None:
    """Id of the lesion with the largest contribution, whatever its sign (None without lesions)."""
    if result is None or result.lesions.empty:
        return None
    return int(result.lesions.loc[result.lesions["contribution"].idxmax(), "lesion_id"])


def _miss_reason(result, top: int | None, is_true: bool) -> str:
    if result is None or result.lesions.empty:
        return "no lesion measured"
    if top is None:
        return "no lesion raises the risk"
    return "hit" if is_true else "top lesion not a true lesion"


def _searchable_negative(lesions: pd.DataFrame) -> bool:
    """Has the patient a true SSTR-negative lesion the measurement searches (CT-visible, liver, >= 15 mm)?"""
    return bool(negative_subsets(lesions)["liver_ct_visible_15mm"].any())


def _negative_reason(m, truth: np.ndarray, negative_labels: set[int], top: int | None, is_negative: bool) -> str:
    """Why the top lesion of a patient with SSTR-negative disease is not an SSTR-negative one."""
    if is_negative:
        return "hit"
    found = any(_top_is(m.lesion_labels, int(i), truth, negative_labels)[1] for i in m.lesions["lesion_id"])
    if not found:
        return "no SSTR-negative lesion measured"
    return "another lesion on top" if top is not None else "no lesion raises the risk"


def _explain(bundle, labs, pet, ct, measurement):
    data = case_data(bundle, labs, prepare_images(bundle, pet, ct))
    data.lesion_features = case_lesion_features(bundle, measurement)
    return lesion_contributions(bundle, data, measurement.lesions)


def evaluate(bundle_path: Path, cohort: Path, permuted: list[Path], max_cases: int) -> dict[str, object]:
    bundle = load_bundle(bundle_path)
    others = [load_bundle(path) for path in permuted]
    frame = read_cohort(cohort / "cohort.csv")
    label = short_pfs_label(frame["pfs_months"].to_numpy(float), frame["progressed"].to_numpy(float))
    truth_table = pd.read_csv(cohort / "ground_truth.csv").set_index("patient_id")
    lesions_csv = pd.read_csv(cohort / "lesions.csv")
    pointing, baseline, negative, negative_baseline = [], [], [], []
    spearman: list[list[float]] = [[] for _ in others]
    any_sign: list[bool] = []
    negative_searchable: list[bool] = []
    negative_misses = {"hit": 0, "no SSTR-negative lesion measured": 0, "no lesion raises the risk": 0,
                       "another lesion on top": 0}
    misses = {"hit": 0, "no lesion measured": 0, "no lesion raises the risk": 0, "top lesion not a true lesion": 0}
    started = time.perf_counter()
    for i, row in enumerate(frame.itertuples(index=False)):
        pid = str(row.patient_id)
        short = label[i] == 1
        has_negative = int(truth_table.loc[pid, "n_sstr_negative"]) > 0
        if truth_table.loc[pid, "n_lesions"] == 0 or not (short or has_negative or others):
            continue
        if max_cases and len(pointing) + len(negative) >= max_cases:
            break
        pet, ct = load_pet(Path(row.pet)), load_ct(Path(row.ct))
        organs = read_organ_masks(row.organs, ct=ct)
        m = measure_case(pet, ct, organs=organs, settings=measure_settings(bundle))
        labs = validate_labs({c: (None if pd.isna(getattr(row, c)) else getattr(row, c)) for c in LAB_COLUMNS})
        result = _explain(bundle, labs, pet, ct, m)
        truth, truth_affine, _ = _truth(cohort, pid)
        mine = lesions_csv[lesions_csv["patient_id"] == pid]
        negative_labels = set(mine.loc[mine["sstr_negative"] == 1, "lesion_label"].astype(int))
        top = result.top_lesion() if result is not None else None
        is_true, is_negative = _top_is(m.lesion_labels, top, truth, negative_labels) if top else (False, False)
        hot_true, hot_negative = _hottest_in_liver(pet, organs, truth, truth_affine, negative_labels)
        if short:
            pointing.append(is_true)
            baseline.append(hot_true)
            largest = _largest(result)
            any_sign.append(largest is not None and _top_is(m.lesion_labels, largest, truth, negative_labels)[0])
            misses[_miss_reason(result, top, is_true)] += 1
        if has_negative:
            negative.append(is_negative)
            negative_baseline.append(hot_negative)
            negative_misses[_negative_reason(m, truth, negative_labels, top, is_negative)] += 1
            if _searchable_negative(mine):
                negative_searchable.append(is_negative)
        if result is not None and len(m.lesions) >= 3:
            for other, rhos in zip(others, spearman, strict=True):
                shuffled = _explain(other, labs, pet, ct, m)
                rho = stats.spearmanr(result.lesions["contribution"], shuffled.lesions["contribution"])[0]
                rhos.append(0.0 if np.isnan(rho) else float(rho))
    return {
        "model": str(bundle_path), "model_version": bundle.version, "cohort": str(cohort),
        "pointing_short_pfs": _rate(pointing), "pointing_baseline_hottest_liver_voxel": _rate(baseline),
        "pointing_short_pfs_outcomes": misses, "pointing_short_pfs_largest_any_sign": _rate(any_sign),
        "sstr_negative_pointing": _rate(negative), "sstr_negative_pointing_outcomes": negative_misses,
        "sstr_negative_pointing_searchable": _rate(negative_searchable), "sstr_negative_baseline_hottest_liver_voxel": _rate(negative_baseline),
        "randomisation": _randomisation(permuted, spearman),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cohort", type=Path, required=True, help="synth output folder")
    parser.add_argument("--permuted-model", type=Path, action="append", default=[],
                        help="a model trained on permuted outcomes (benchmarks/permuted_cohort.py); may be repeated")
    parser.add_argument("--max-cases", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    summary = evaluate(args.model, args.cohort, args.permuted_model, args.max_cases)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
