"""A copy of a cohort table with the outcomes permuted: the training data of a randomisation check.

    python benchmarks/permuted_cohort.py --cohort data/sim1000_dev102/cohort.csv --seed 0 --out /tmp/perm102/cohort.csv
    PFS_CORE_DATA_ROOTS=$PWD/data python -m pfs_core train --cohort /tmp/perm102/cohort.csv \
        --model lab_pet_ct_pretrained --out /tmp/perm_bundle --seed 2026 [--train-config FILE]

The outcome columns (``pfs_months`` and ``progressed``, together) are shuffled over the rows with a fixed
``--seed``; labs, images and organ masks stay with their patient. Image and mask paths are written absolute,
so the copy may live anywhere that ``PFS_CORE_DATA_ROOTS`` covers. A model trained on it has nothing true to
learn: its explanations are the "randomised model" of the explanation checks
(``benchmarks/lesion_explain_truth.py --permuted-model``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from pfs_core import schema

OUTCOMES = (schema.TIME_COLUMN, schema.EVENT_COLUMN)


def permuted(frame: pd.DataFrame, folder: Path, seed: int) -> pd.DataFrame:
    """``frame`` with its outcome columns permuted over the rows and its file paths made absolute."""
    out = frame.copy()
    order = np.random.default_rng(seed).permutation(len(out))
    for column in OUTCOMES:
        out[column] = frame[column].to_numpy()[order]
    for column in (schema.PET_COLUMN, schema.CT_COLUMN, schema.ORGANS_COLUMN):
        if column in out.columns:
            out[column] = [str((folder / p).resolve()) if isinstance(p, str) and p else p for p in out[column]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    frame = pd.read_csv(args.cohort, dtype={schema.ID_COLUMN: str})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    permuted(frame, args.cohort.parent, args.seed).to_csv(args.out, index=False)
    print(f"wrote {args.out}: {len(frame)} patients, outcomes permuted (seed {args.seed})")


if __name__ == "__main__":
    main()
