"""Check the explanations against the simulator's known truth.

    python benchmarks/explain_truth.py --model models/lab_pet_ct_pretrained --cohort data/test40/cohort.csv \
        --out results/explain_truth.json

On a simulated cohort NOT used for training, decoupled so that the labs carry no
information about the imaging burden (e.g. ``synth --n 60 --seed 7003 --labs-independent``,
an explanation-check seed of docs/evaluation.md):

1. SHAP ranking: mean |SHAP| per lab field. Check: every field of the simulator's lab part
   (:data:`PLANTED_LABS`) ranks above every field that carries no signal by construction
   (:data:`NO_SIGNAL_LABS`). Fields correlated with planted ones or with the burden (CgA,
   ALP, AST, ...) may rank anywhere and are not judged.
2. Pointing game: for short-PFS patients (true label) with lesions, does the Grad-CAM
   maximum (on the CT grid; conv trunk and read-out layer, :mod:`pfs_core.explain.gradcam`)
   fall inside a lesion dilated by one PET voxel? PET and CT
   branches separately, against a random-point baseline (the chance that a uniform
   random point in the body lands in a dilated lesion, averaged over the same cases).
   Also the lesion enrichment: mean Grad-CAM inside the dilated lesions over the mean
   inside the body (1 = no preference for lesions), and the hit rate and baseline with
   the lesions dilated by one voxel of the model grid instead (the maps' resolution).
   The same for the read-out maps (:mod:`pfs_core.explain.readout_map`: the voxels the
   liver-referenced read-outs counted), which are measurements, not attributions; and for
   both kinds of map, the tissue (simulator organ label) at the maximum, marked "at the
   liver edge" within one model voxel of the liver.
3. Model randomisation: Spearman rank correlation between the Grad-CAM of the trained
   networks and of the same networks with re-initialised weights (model grid).

Prints and writes a JSON summary.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage, stats

# The simulator's lab part of the true risk (docs/simulator.md, "True risk").
PLANTED_LABS = ("ki67", "albumin", "gamma_gt", "primary_site")
# Independent of every quantity in the true risk by construction: platelets and leukocytes are
# pure noise; creatinine (and age through it) drives only the chromogranin A confounding; sex
# only creatinine and hemoglobin reference levels.
NO_SIGNAL_LABS = ("platelets", "leukocytes", "creatinine", "age", "sex")


def _labs(row: pd.Series) -> dict:
    from pfs_core.schema import LAB_COLUMNS

    return {c: (None if pd.isna(row[c]) else row[c]) for c in LAB_COLUMNS}


def _dilate_mm(mask: np.ndarray, affine: np.ndarray, radius_mm: float) -> np.ndarray:
    """``mask`` dilated by an ellipsoid of ``radius_mm`` (at least one voxel per axis) on its grid."""
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    radius = np.maximum(1, np.round(radius_mm / spacing)).astype(int)
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g / r) ** 2 for g, r in zip(grid, radius, strict=True)) <= 1.0
    return ndimage.binary_dilation(mask, structure=ball)


def _dilated_lesions(lesion_path: Path, pet_voxel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(str(lesion_path))
    return _dilate_mm(np.asarray(image.dataobj) > 0, image.affine, pet_voxel_mm), image.affine


def _tissue(organs: np.ndarray, lesions: np.ndarray, peak: tuple, near_liver: np.ndarray | None = None) -> str:
    """'lesion' when the voxel is in a (dilated) lesion, else the simulator's organ name there,
    with " at the liver edge" when ``near_liver`` (the liver dilated by one model voxel) holds it."""
    from pfs_core.synth.constants import LABEL

    if lesions[peak]:
        return "lesion"
    names = {v: k for k, v in LABEL.items()}
    name = names.get(int(organs[peak]), f"label {int(organs[peak])}")
    edge = near_liver is not None and name != "liver" and bool(near_liver[peak])
    return f"{name} at the liver edge" if edge else name


def _randomised(bundle):
    """A copy of the bundle whose networks have freshly initialised weights (seeded, so reruns agree)."""
    import torch

    torch.manual_seed(0)
    clone = copy.copy(bundle)
    clone.members = []
    for member in bundle.members:
        m = copy.deepcopy(member)
        for module in m.net.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        clone.members.append(m)
    return clone


def evaluate(bundle_path: Path, cohort_csv: Path, *, max_cases: int) -> dict:
    from pfs_core.explain import explain_case
    from pfs_core.explain.gradcam import gradcam_layer_names, gradcam_model_space
    from pfs_core.inference import case_data, case_lesion_features
    from pfs_core.io.labs import validate_labs
    from pfs_core.io.organ_files import read_organ_masks
    from pfs_core.models.bundle import load_bundle
    from pfs_core.preprocessing.model_grid import load_case
    from pfs_core.synth.constants import LABEL

    root = cohort_csv.parent
    cohort = pd.read_csv(cohort_csv).set_index("patient_id")
    truth = pd.read_csv(root / "ground_truth.csv").set_index("patient_id")
    bundle = load_bundle(bundle_path)
    random_bundle = _randomised(bundle)
    shap_rows, hits, rand_corr = [], {"pet": [], "ct": []}, {"pet": [], "ct": []}
    enrichment: dict[str, list[float]] = {"pet": [], "ct": []}
    zero_maps, constant_pairs = {"pet": 0, "ct": 0}, {"pet": 0, "ct": 0}
    baseline, coarse_baseline, coarse_hits = [], [], {"pet": [], "ct": []}
    readout_hits: dict[str, list[bool]] = {"pet": [], "ct": []}
    peak_tissue: dict[str, list[str]] = {f"{kind}_{m}": [] for kind in ("gradcam", "readout") for m in ("pet", "ct")}
    for pid in list(cohort.index)[:max_cases]:
        row = cohort.loc[pid]
        pet, ct = load_case(root / row["pet"], root / row["ct"])
        organs = read_organ_masks(root / row["organs"], ct=ct) if isinstance(row.get("organs"), str) else None
        result = explain_case(bundle, pet=pet, ct=ct, labs=_labs(row), organs=organs)
        if result.lab_shap is not None:
            shap_rows.append(dict(zip(result.lab_shap.names, np.abs(result.lab_shap.shap_values), strict=True)))
        data = case_data(bundle, validate_labs(_labs(row)), result.prepared)
        data.lesion_features = case_lesion_features(bundle, result.measurement)
        layers = gradcam_layer_names(bundle) if result.convolution_used else {}  # no CNN in use: no Grad-CAM
        for modality, layer in layers.items():
            trained = gradcam_model_space(bundle, data, modality=modality, layer=layer)
            shuffled = gradcam_model_space(random_bundle, data, modality=modality, layer=layer)
            if trained is None or shuffled is None:
                continue
            if np.ptp(trained) == 0 or np.ptp(shuffled) == 0:  # a rank correlation with a constant map is undefined
                constant_pairs[modality] += 1
            else:
                rand_corr[modality].append(float(stats.spearmanr(trained.ravel(), shuffled.ravel())[0]))
        short = truth.loc[pid, "short_pfs_observed"] == 1
        if not short or truth.loc[pid, "n_lesions"] == 0:
            continue
        pet_voxel = float(np.mean(pet.spacing_mm))
        lesions, _ = _dilated_lesions(root / "images" / f"{pid}_lesions.nii.gz", pet_voxel)
        organs_image = nib.load(str(root / "images" / f"{pid}_organs.nii.gz"))
        organs = np.asarray(organs_image.dataobj)
        body = organs > 0
        near_liver = _dilate_mm(organs == LABEL["liver"], organs_image.affine, max(bundle.preprocess.spacing_mm))
        coarse, _ = _dilated_lesions(root / "images" / f"{pid}_lesions.nii.gz", max(bundle.preprocess.spacing_mm))
        baseline.append(float(lesions[body].mean()))
        coarse_baseline.append(float(coarse[body].mean()))
        for modality, image in result.gradcam.items():
            cam = np.asarray(image.dataobj)
            zero_maps[modality] += int(cam.max() <= 0)  # no voxel raised the risk: counted as a miss
            peak = np.unravel_index(np.argmax(cam), cam.shape)
            hits[modality].append(bool(cam.max() > 0 and lesions[peak]))
            coarse_hits[modality].append(bool(cam.max() > 0 and coarse[peak]))
            peak_tissue[f"gradcam_{modality}"].append(_tissue(organs, lesions, peak, near_liver) if cam.max() > 0 else "empty")
            enrichment[modality].append(float(cam[lesions].mean() / max(cam[body].mean(), 1e-9)))
        for modality, image in result.readout_maps.items():
            values = np.asarray(image.dataobj)
            peak = np.unravel_index(np.argmax(values), values.shape)
            readout_hits[modality].append(bool(values.max() > 0 and lesions[peak]))
            peak_tissue[f"readout_{modality}"].append(_tissue(organs, lesions, peak, near_liver) if values.max() > 0 else "empty")
    mean_abs = pd.DataFrame(shap_rows).mean().sort_values(ascending=False)
    ranks = {name: int(i + 1) for i, name in enumerate(mean_abs.index)}
    planted = [ranks[n] for n in PLANTED_LABS if n in ranks]
    others = [r for n, r in ranks.items() if n not in PLANTED_LABS]
    no_signal = [ranks[n] for n in NO_SIGNAL_LABS if n in ranks]
    return {
        "model": bundle.name, "bundle_sha256": bundle.sha256, "cohort": str(cohort_csv),
        "n_cases": min(max_cases, len(cohort)),
        "shap": {"mean_abs": mean_abs.round(5).to_dict(), "rank": ranks, "planted": list(PLANTED_LABS),
                 "planted_ranks": planted, "mean_rank_planted": float(np.mean(planted)),
                 "mean_rank_others": float(np.mean(others)),
                 "no_signal": list(NO_SIGNAL_LABS), "no_signal_ranks": no_signal,
                 "all_planted_above_all_others": bool(max(planted) < min(others)),
                 "all_planted_above_no_signal": bool(max(planted) < min(no_signal))},
        "pointing_game": {m: {"n": len(h), "hit_rate": float(np.mean(h)) if h else None, "all_zero_maps": zero_maps[m]}
                          for m, h in hits.items()}
        | {"random_point_baseline": float(np.mean(baseline)) if baseline else None, "n_short_with_lesions": len(baseline),
           "lesion_enrichment_median": {m: float(np.median(v)) if v else None for m, v in enrichment.items()},
           "within_one_model_voxel": {m: float(np.mean(h)) if h else None for m, h in coarse_hits.items()}
           | {"random_point_baseline": float(np.mean(coarse_baseline)) if coarse_baseline else None}},
        "readout_map_pointing": {m: {"n": len(h), "hit_rate": float(np.mean(h)) if h else None}
                                 for m, h in readout_hits.items()},
        "peak_tissue": {k: pd.Series(v, dtype=object).value_counts().to_dict() for k, v in peak_tissue.items()},
        "randomisation_spearman": {m: {"median": float(np.median(c)) if c else None, "n": len(c),
                                       "skipped_constant_map": constant_pairs[m]}
                                   for m, c in rand_corr.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--max-cases", type=int, default=40)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    summary = evaluate(args.model, args.cohort, max_cases=args.max_cases)
    summary["wall_time_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
