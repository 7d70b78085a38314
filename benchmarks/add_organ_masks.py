"""Give a simulated cohort written before simulator 2.0.1 its organ masks column.

    python benchmarks/add_organ_masks.py --cohort data/sim400_dev101

Writes ``images/<id>_organ_masks.nii.gz`` from each ``images/<id>_organs.nii.gz``
(:func:`pfs_core.synth.organ_masks.organ_mask_image`, what ``synth`` now writes itself) and adds the
``organs`` column to ``cohort.csv``. Images, labs and outcomes are untouched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from pfs_core.schema import ID_COLUMN, ORGANS_COLUMN
from pfs_core.synth.organ_masks import ORGAN_MASKS_SUFFIX, organ_mask_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True)
    args = parser.parse_args()
    table = args.cohort / "cohort.csv"
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    column = []
    for pid in frame[ID_COLUMN]:
        source = args.cohort / "images" / f"{pid}_organs.nii.gz"
        target = f"images/{pid}{ORGAN_MASKS_SUFFIX}"
        if not (args.cohort / target).is_file():
            img = nib.load(str(source))
            nib.save(organ_mask_image(np.asarray(img.dataobj), img.affine), str(args.cohort / target))
        column.append(target)
    frame[ORGANS_COLUMN] = column
    frame.to_csv(table, index=False)
    print(f"{table}: organs column added ({len(frame)} patients)")


if __name__ == "__main__":
    main()
