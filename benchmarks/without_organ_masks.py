"""A copy of a simulated cohort without its organ masks, so that the organ network delineates the organs.

    python benchmarks/without_organ_masks.py --cohort data/sim116_eval --out data/sim116_eval_noorgans
    PFS_CORE_DATA_ROOTS=$PWD/data python benchmarks/bundle_evaluation.py --model models/lab_pet_ct_pretrained \\
        --cohort data/sim116_eval_noorgans

Writes ``<out>/cohort.csv`` with the image paths made absolute and the ``organs`` column emptied, and copies
``ground_truth.csv``, ``summary.json`` and ``lesions.csv`` beside it; images are not copied. The figures
"without organ masks" of docs/models.md and docs/uncertainty.md are made on such copies.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from pfs_core import schema

BESIDE = ("ground_truth.csv", "summary.json", "lesions.csv")


def without_masks(frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """``frame`` with its PET and CT paths made absolute and no organ masks."""
    out = frame.copy()
    for column in (schema.PET_COLUMN, schema.CT_COLUMN):
        out[column] = [str((folder / p).resolve()) for p in out[column]]
    out[schema.ORGANS_COLUMN] = ""
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True, help="synth output folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    frame = pd.read_csv(args.cohort / "cohort.csv", dtype=str, keep_default_na=False)
    args.out.mkdir(parents=True, exist_ok=True)
    without_masks(frame, args.cohort).to_csv(args.out / "cohort.csv", index=False)
    for name in BESIDE:
        if (args.cohort / name).is_file():
            shutil.copy(args.cohort / name, args.out / name)
    print(f"wrote {args.out / 'cohort.csv'}: {len(frame)} patients, organ masks left out")


if __name__ == "__main__":
    main()
