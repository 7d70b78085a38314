"""Lesion measurement against the simulator's truth: feature correlations, lesion sensitivity, false positives.

    python benchmarks/measure_truth.py --cohort data/sim200_eval [--organs truth|network] [--before]
        [--out results/measure_truth.json]
    python benchmarks/measure_truth.py --cohort DIR --ceiling-only     # truth tables alone (no images needed)

For every patient of a simulated cohort (``pfs_core synth`` folder with images) runs
``measure_case`` with the simulator's organ masks (``--organs truth``) or the organ network's
(``network``), then reports Spearman correlations of the per-patient features with
``ground_truth.csv``; sensitivity for true lesions of 15 mm or more (equivalent-sphere diameter;
found = at least 10 % of the true lesion's CT voxels inside one measured lesion), split by SSTR
status; and false-positive lesions per patient (measured lesions touching no true lesion).
``--before`` adds the liver-referenced read-outs of ``pfs_core.features.readouts`` (the models'
imaging input up to issue 22) for the same patients, and per truth the Spearman of the measurement
and of the best-matching read-out with their paired difference, each with a 95 % patient-bootstrap
interval ([point, low, high]; 2,000 resamples, seed 0).

SSTR-negative volume, two more figures (``sstr_negative``): the **ceiling**, the Spearman with the true
SSTR-negative volume that a perfect measurement of only some negative lesions would reach (every liver one;
liver ones of 15 mm or more; CT-visible ones of 15 mm or more at any site), from the truth tables alone;
and the measured volume against the **detectable truth**, the volume of the CT-visible SSTR-negative liver
lesions of 15 mm or more (what the measurement searches, at the size of the sensitivity target).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.stats import bootstrap, spearmanr

from pfs_core.io import load_ct, load_pet
from pfs_core.io.organs import ORGANS, OrganMasks
from pfs_core.measure.case import measure_case
from pfs_core.measure.settings import MeasureSettings
from pfs_core.synth.constants import LABEL
from pfs_core.synth.organ_masks import organ_codes

# measured feature -> true quantity of ground_truth.csv
PAIRS = {
    "sstr_positive_volume_ml": "sstr_positive_volume_ml",
    "liver_tumour_fraction": "liver_tumour_fraction",
    "tumour_to_liver_mean": "tumour_to_liver_ratio",
    "sstr_negative_volume_ml": "sstr_negative_volume_ml",
}
MIN_DIAMETER_MM = 15.0
FOUND_FRACTION = 0.10
RESAMPLES = 2000  # patient-bootstrap resamples of every interval


def diameter_mm(volume_ml: pd.Series) -> pd.Series:
    """Equivalent-sphere diameter (mm) of volumes in mL."""
    return 2.0 * (volume_ml * 750.0 / math.pi) ** (1.0 / 3.0)


def negative_subsets(lesions: pd.DataFrame) -> dict[str, pd.Series]:
    """Masks over ``lesions`` of the SSTR-negative lesions a measurement could be asked to find."""
    negative = lesions["sstr_negative"] == 1
    liver = lesions["site"] == "liver"
    big = diameter_mm(lesions["volume_ml"]) >= MIN_DIAMETER_MM
    visible = lesions["ct_visible"] == 1
    return {"liver": negative & liver, "liver_15mm": negative & liver & big,
            "liver_ct_visible_15mm": negative & liver & big & visible,
            "ct_visible_15mm_any_site": negative & big & visible}


def volume_per_patient(lesions: pd.DataFrame, mask: pd.Series, patients: pd.Index) -> pd.Series:
    """Summed ``volume_ml`` of the masked lesions per patient of ``patients`` (0 without one)."""
    return lesions[mask].groupby("patient_id")["volume_ml"].sum().reindex(patients, fill_value=0.0)


def paired_difference(new: pd.Series, old: pd.Series, truth: pd.Series) -> list[float]:
    """Spearman(new, truth) − Spearman(old, truth) on the same patients, with its 95 % paired patient-bootstrap
    percentile interval, [point, low, high] (resamples with a constant column left out)."""
    a, b, t = (s.to_numpy(float) for s in (new, old, truth))
    draws = np.random.default_rng(0).integers(0, len(a), size=(RESAMPLES, len(a)))
    keep = [i for i in draws if min(np.ptp(a[i]), np.ptp(b[i]), np.ptp(t[i])) > 0]
    diffs = [spearmanr(a[i], t[i])[0] - spearmanr(b[i], t[i])[0] for i in keep]
    low, high = np.percentile(diffs, [2.5, 97.5])
    point = spearmanr(a, t)[0] - spearmanr(b, t)[0]
    return [round(float(point), 3), round(float(low), 3), round(float(high), 3)]


def spearman_interval(x: pd.Series, y: pd.Series) -> list[float]:
    """Spearman of x and y with its 95 % patient-bootstrap percentile interval, [point, low, high].

    A resample in which x or y is constant (few patients with SSTR-negative disease) has no Spearman and
    is left out of the percentiles.
    """
    a, b = x.to_numpy(float), y.to_numpy(float)
    draws = np.random.default_rng(0).integers(0, len(a), size=(RESAMPLES, len(a)))
    with np.errstate(invalid="ignore"):
        rhos = np.array([spearmanr(a[i], b[i])[0] if np.ptp(a[i]) > 0 and np.ptp(b[i]) > 0 else np.nan
                         for i in draws])
    low, high = np.nanpercentile(rhos, [2.5, 97.5])
    return [round(float(spearmanr(a, b)[0]), 3), round(float(low), 3), round(float(high), 3)]


def sstr_negative_ceilings(lesions: pd.DataFrame, truth: pd.DataFrame) -> dict[str, object]:
    """How well a perfect measurement of only some SSTR-negative lesions could rank the true volume."""
    total = truth["sstr_negative_volume_ml"]
    lesions = lesions[lesions["patient_id"].isin(truth.index)]
    return {"patients_with_sstr_negative_disease": int((total > 0).sum()),
            "ceiling_spearman": {name: spearman_interval(volume_per_patient(lesions, mask, truth.index), total)
                                 for name, mask in negative_subsets(lesions).items()}}


def truth_organs(path: Path) -> OrganMasks:
    """The simulator's organ map as :class:`OrganMasks` (kidneys and adrenals split at the midline)."""
    img = nib.load(str(path))
    labels = organ_codes(np.asarray(img.dataobj), img.affine)
    present = tuple(n for c, n in ORGANS.items() if (labels == c).any())
    return OrganMasks(labels=labels, affine=img.affine, source=f"simulator truth {path.name}", present=present)


def lesion_matching(truth_labels: np.ndarray, truth: pd.DataFrame, measured: np.ndarray,
                    table: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Per true lesion: found or not; and the number of measured lesions touching no true lesion."""
    found = []
    for row in truth.itertuples():
        voxels = truth_labels == row.lesion_label
        ids, counts = np.unique(measured[voxels], return_counts=True)
        hit = counts[ids > 0].max() if (ids > 0).any() else 0
        found.append(voxels.sum() > 0 and hit >= FOUND_FRACTION * voxels.sum())
    truth = truth.assign(found=found)
    near = ndimage.binary_dilation(truth_labels > 0)
    touched = set(np.unique(measured[near]).tolist())
    return truth, [int(i) for i in table["lesion_id"] if int(i) not in touched]


def false_positive_rows(pid: str, ids: list[int], measured: np.ndarray, table: pd.DataFrame,
                        tissue_path: Path) -> list[dict[str, object]]:
    """Each false-positive lesion with its SSTR status and the simulator tissue most of it lies in."""
    names = {code: name for name, code in LABEL.items()}
    tissue = np.asarray(nib.load(str(tissue_path)).dataobj).astype(np.int64)
    status = table.set_index("lesion_id")["sstr_status"]
    def most(values: np.ndarray) -> str:  # a PET lesion beyond the CT's field of view has no CT-grid voxel
        return names.get(int(np.bincount(values).argmax()), "unknown") if values.size else "outside the CT"

    return [{"patient_id": pid, "lesion_id": i, "sstr_status": status[i], "true_tissue": most(tissue[measured == i])}
            for i in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--organs", choices=("truth", "network"), default="truth")
    parser.add_argument("--before", action="store_true")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--settings", type=json.loads, default={},
                        help='MeasureSettings fields to override, as JSON, e.g. \'{"photopenic_ratio": 0}\'')
    parser.add_argument("--ceiling-only", action="store_true",
                        help="only the SSTR-negative ceilings, from lesions.csv and ground_truth.csv (no measuring)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--lesions-out", type=Path, help="optional CSV of every true lesion with found or not")
    parser.add_argument("--patients-out", type=Path, help="optional CSV of measured and true features per patient")
    parser.add_argument("--paired-with", type=Path,
                        help="a --patients-out CSV of another run on the same cohort (e.g. other --settings): "
                             "paired Spearman differences, this run minus that one")
    parser.add_argument("--false-positives-out", type=Path,
                        help="optional CSV of every false-positive lesion with the simulator tissue it lies in")
    args = parser.parse_args()
    cohort = pd.read_csv(args.cohort / "cohort.csv")
    gt = pd.read_csv(args.cohort / "ground_truth.csv").set_index("patient_id")
    lesions = pd.read_csv(args.cohort / "lesions.csv")
    ids = cohort["patient_id"].tolist()[: args.limit]
    if args.ceiling_only:
        write({"cohort": str(args.cohort), "n": len(ids), "sstr_negative": sstr_negative_ceilings(lesions, gt.loc[ids])},
              args.out)
        return
    feats, matched, fps, seconds = [], [], [], []
    fp_rows: list[dict[str, object]] = []
    for pid in ids:
        images = args.cohort / "images"
        pet, ct = load_pet(images / f"{pid}_pet.nii.gz"), load_ct(images / f"{pid}_ct.nii.gz")
        start = time.perf_counter()
        if args.organs == "truth":
            organs = truth_organs(images / f"{pid}_organs.nii.gz")
        else:
            from pfs_core.models.organ_seg import segment_organs
            organs = segment_organs(ct)
        m = measure_case(pet, ct, organs=organs, settings=MeasureSettings(**args.settings))
        seconds.append(time.perf_counter() - start)
        truth_labels = np.asarray(nib.load(str(images / f"{pid}_lesions.nii.gz")).dataobj)
        rows, fp = lesion_matching(truth_labels, lesions[lesions["patient_id"] == pid], m.lesion_labels, m.lesions)
        matched.append(rows)
        fps.append(len(fp))
        if args.false_positives_out:
            fp_rows += false_positive_rows(pid, fp, m.lesion_labels, m.lesions, images / f"{pid}_organs.nii.gz")
        feats.append({"patient_id": pid, **m.features})
    measured = pd.DataFrame(feats).set_index("patient_id")
    truth = gt.loc[measured.index]
    if args.false_positives_out:
        fp_table = pd.DataFrame(fp_rows, columns=["patient_id", "lesion_id", "sstr_status", "true_tissue"])
        fp_table.to_csv(args.false_positives_out, index=False)
        print(fp_table.groupby(["true_tissue", "sstr_status"]).size().to_string())
    if args.patients_out:
        measured.join(truth[list(PAIRS.values())], rsuffix="_true").to_csv(args.patients_out)
    spearman = {f: round(float(spearmanr(measured[f], truth[t])[0]), 3) for f, t in PAIRS.items()}
    per_lesion = pd.concat(matched)
    per_lesion["diameter_mm"] = diameter_mm(per_lesion["volume_ml"])
    if args.lesions_out:
        per_lesion.to_csv(args.lesions_out, index=False)
    big = per_lesion[per_lesion["diameter_mm"] >= MIN_DIAMETER_MM]
    sens = {
        "all": round(float(big["found"].mean()), 3),
        "sstr_positive": round(float(big.loc[big["sstr_negative"] == 0, "found"].mean()), 3),
        "sstr_negative_ct_visible": round(float(big.loc[(big["sstr_negative"] == 1) & (big["ct_visible"] == 1),
                                                         "found"].mean()), 3),
        "n_lesions": len(big),
    }
    result = {"cohort": str(args.cohort), "n": len(ids), "organs": args.organs, "spearman": spearman,
              "sensitivity_15mm": sens, "false_positives_per_patient": round(float(np.mean(fps)), 3),
              "seconds_per_case_median": round(float(np.median(seconds)), 2)}
    detectable = volume_per_patient(lesions, negative_subsets(lesions)["liver_ct_visible_15mm"], truth.index)
    result["sstr_negative"] = {**sstr_negative_ceilings(lesions, truth),
                               "measured_vs_detectable_truth": spearman_interval(
                                   measured["sstr_negative_volume_ml"], detectable),
                               "measured_vs_truth": spearman_interval(measured["sstr_negative_volume_ml"],
                                                                      truth["sstr_negative_volume_ml"])}
    if args.paired_with:
        other = pd.read_csv(args.paired_with, index_col="patient_id").loc[measured.index]
        result["paired_with"] = {"run": str(args.paired_with), **{
            t: paired_difference(measured[f], other[f], truth[t]) for f, t in PAIRS.items()}}
    if args.before:
        rows = before_readouts(args.cohort, truth)
        result["before"] = {f"{col} ~ {t}": round(float(spearmanr(rows[col], truth[t])[0]), 3)
                            for col in rows.columns for t in PAIRS.values()}
        result["paired_vs_before"] = paired_intervals(measured, rows, truth)
    write(result, args.out)


def write(result: dict[str, object], out: Path | None) -> None:
    """Print ``result`` as JSON, and write it to ``out`` when given."""
    print(json.dumps(result, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")


def before_readouts(cohort: Path, truth: pd.DataFrame) -> pd.DataFrame:
    """The liver-referenced read-outs (model grid) of every patient of ``truth``."""
    from pfs_core.config import MODEL_PREPROCESS
    from pfs_core.dataset import load_cohort_data
    from pfs_core.features.readouts import measurements

    data = load_cohort_data(cohort / "cohort.csv", preprocess=MODEL_PREPROCESS, need_images=True, cache_dir=None)
    return pd.DataFrame([measurements(data.pet[i], data.ct[i], suv_max=MODEL_PREPROCESS.pet_suv_max,  # type: ignore[index]
                                      ct_window_hu=MODEL_PREPROCESS.ct_window_hu, voxel_ml=MODEL_PREPROCESS.voxel_ml)
                         for i in range(len(data))], index=data.patient_ids).loc[truth.index]


def paired_intervals(measured: pd.DataFrame, before: pd.DataFrame, truth: pd.DataFrame, *,
                     resamples: int = RESAMPLES, seed: int = 0) -> dict[str, dict[str, object]]:
    """Per truth: Spearman of the measurement and of the best-matching read-out, and their difference,
    each with a 95 % patient-bootstrap interval (paired: the same patients in both)."""
    out = {}
    for feature, target in PAIRS.items():
        t = truth[target].to_numpy(float)
        old = max(before.columns, key=lambda c: abs(spearmanr(before[c], t)[0]))

        def rho(x: np.ndarray, y: np.ndarray) -> float:
            return float(spearmanr(x, y)[0])

        def stats(new: np.ndarray, prev: np.ndarray, true: np.ndarray) -> np.ndarray:
            return np.array([rho(new, true), rho(prev, true), rho(new, true) - rho(prev, true)])

        samples = (measured[feature].to_numpy(float), before[old].to_numpy(float), t)
        boot = bootstrap(samples, stats, paired=True, vectorized=False, n_resamples=resamples,
                         confidence_level=0.95, method="percentile", random_state=seed)
        point = stats(*samples)
        low, high = boot.confidence_interval
        out[target] = {"measured": feature, "before": old,
                       **{name: [round(float(point[i]), 3), round(float(low[i]), 3), round(float(high[i]), 3)]
                          for i, name in enumerate(("spearman_measured", "spearman_before", "difference"))}}
    return out


if __name__ == "__main__":
    main()
