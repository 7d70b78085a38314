"""What the PET read-out definition of 2026-12-04 changed, by a logistic reference on a cohort.

    python benchmarks/readout_variants.py --cohort data/sim400 [--seeds 3]

Recomputes the model-grid read-outs of :mod:`pfs_core.features.readouts` with each hot factor and cold
inset of :data:`VARIANTS`: the former (1.25, the band's upper edge, and 0 voxels, the whole
region), the present (1.4 and 1 voxel), each change alone, and 1.33 (just above the 99th
percentile of the liver's own voxels) with the inset, and prints, per variant, the share of
patients without any hot hepatic voxel and the cross-validated AUROC of the logistic reference
of ``benchmarks/linear_reference.py`` on the PET read-outs alone and on labs + PET + CT
read-outs (one penalty / modality weights). The read-out choice itself rests on what the
read-outs measure (``benchmarks/readout_signal.py``) and where Grad-CAM points
(``benchmarks/explain_truth.py``); this script shows what it costs or gains in prediction.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from linear_reference import cv_auroc, readouts

from pfs_core.config import MODEL_PREPROCESS
from pfs_core.dataset import load_cohort_data
from pfs_core.features import readouts as pet_readouts

VARIANTS = {"hot 1.25, cold inset 0 (before)": (1.25, 0), "hot 1.25, cold inset 1": (1.25, 1),
            "hot 1.33, cold inset 1": (1.33, 1), "hot 1.4, cold inset 0": (1.4, 0),
            "hot 1.4, cold inset 1 (now)": (1.4, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True, help="folder written by `pfs_core synth`")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    data = load_cohort_data(args.cohort / "cohort.csv", preprocess=MODEL_PREPROCESS, need_images=True,
                            cache_dir=Path("cache"))
    saved = pet_readouts.HOT_FACTOR, pet_readouts.COLD_INSET_VOXELS
    try:
        for name, (hot, inset) in VARIANTS.items():
            pet_readouts.HOT_FACTOR, pet_readouts.COLD_INSET_VOXELS = hot, inset
            images = readouts(data)
            scores = []
            for parts in (("pet",), ("labs", "pet", "ct")):
                plain = np.mean([cv_auroc(data, images, parts, seed) for seed in range(args.seeds)])
                block = np.mean([cv_auroc(data, images, parts, seed, blocks=True) for seed in range(args.seeds)])
                scores.append(f"{'+'.join(parts):12s} {plain:.3f} / {block:.3f}")
            no_hot = float(np.mean(images["pet"][:, 0] == 0))
            print(f"{name:34s} no hot voxel {no_hot:4.0%}   " + "   ".join(scores), flush=True)
    finally:
        pet_readouts.HOT_FACTOR, pet_readouts.COLD_INSET_VOXELS = saved


if __name__ == "__main__":
    main()
