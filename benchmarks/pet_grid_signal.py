"""How much of the simulator's PET signal survives the model grid, with perfect lesion masks.

    python benchmarks/pet_grid_signal.py --cohort data/sim116 --n 40

The simulator's PET part of the risk is the volume-weighted tumour-to-liver ratio (TLR) of
the SSTR-positive lesions. For each grid setting, every case is preprocessed as the models
see it, the true lesion and liver masks are resampled onto the same grid, and the ratio
mean SUV in the lesions / median SUV in the liver is compared with the true TLR (Spearman,
patients with SSTR-positive lesions). This is an upper bound for any network on that grid:
it is given the segmentation that a network has to learn. Prints one line per setting.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from pfs_core.config import MODEL_PREPROCESS, PreprocessConfig
from pfs_core.io.volume import Volume
from pfs_core.preprocessing.model_grid import load_case, preprocess_case, to_model_grid
from pfs_core.synth.constants import LABEL

SETTINGS: dict[str, PreprocessConfig] = {
    "12 mm, PET smoothed before resampling": dataclasses.replace(MODEL_PREPROCESS, pet_antialias=True),
    "12 mm, PET not smoothed (shipped)": MODEL_PREPROCESS,
    "6 mm, PET smoothed": dataclasses.replace(MODEL_PREPROCESS, spacing_mm=(6.0, 6.0, 6.0), shape=(64, 48, 64),
                                              pet_antialias=True),
}


def _mask_on_grid(mask: np.ndarray, affine: np.ndarray, model_affine: np.ndarray,
                  config: PreprocessConfig) -> np.ndarray:
    volume = Volume(data=mask.astype(np.float32), affine=affine, source="mask", modality="CT", units="HU",
                    suv_note="")
    return to_model_grid(volume, low=0.0, high=1.0, model_affine=model_affine, config=config,
                         antialias=False) > 0.5


def grid_ratio(images: Path, pid: str, positive: np.ndarray, config: PreprocessConfig) -> float:
    """Mean lesion SUV / median liver SUV on the model grid of ``config`` (NaN without SSTR+ lesions)."""
    pet, ct = load_case(images / f"{pid}_pet.nii.gz", images / f"{pid}_ct.nii.gz")
    case = preprocess_case(pet, ct, config)
    suv = case.pet * config.pet_suv_max
    lesions = nib.load(images / f"{pid}_lesions.nii.gz")
    organs = nib.load(images / f"{pid}_organs.nii.gz")
    lesion_map, organ_map = np.asarray(lesions.dataobj), np.asarray(organs.dataobj)
    tumour = _mask_on_grid(np.isin(lesion_map, positive), lesions.affine, case.model_affine, config)
    liver = _mask_on_grid((organ_map == LABEL["liver"]) & (lesion_map == 0), organs.affine, case.model_affine,
                          config)
    if not tumour.any() or not liver.any():
        return float("nan")
    return float(suv[tumour].mean() / np.median(suv[liver]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True, help="folder written by `pfs_core synth`")
    parser.add_argument("--n", type=int, default=40, help="first N patients")
    args = parser.parse_args()
    truth = pd.read_csv(args.cohort / "ground_truth.csv").head(args.n)
    lesions = pd.read_csv(args.cohort / "lesions.csv")
    truth = truth[truth.tumour_to_liver_ratio.notna()]
    for name, config in SETTINGS.items():
        ratios = [grid_ratio(args.cohort / "images", pid,
                             lesions[(lesions.patient_id == pid) & (lesions.sstr_negative == 0)].lesion_label.to_numpy(),
                             config) for pid in truth.patient_id]
        ok = np.isfinite(ratios)
        rho = spearmanr(np.asarray(ratios)[ok], truth.tumour_to_liver_ratio.to_numpy()[ok])[0]
        print(f"{name:40s} Spearman(grid ratio, true TLR) = {rho:.3f}  (n = {int(ok.sum())})")


if __name__ == "__main__":
    main()
