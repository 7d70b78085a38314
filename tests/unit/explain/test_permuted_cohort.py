"""benchmarks/permuted_cohort.py: the training cohort of the randomised model of the explanation checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import permuted_cohort  # noqa: E402


def test_outcomes_move_together_and_everything_else_stays(tmp_path: Path) -> None:
    frame = pd.DataFrame({"patient_id": [f"P{i}" for i in range(50)], "pet": [f"images/P{i}_pet.nii.gz" for i in range(50)],
                          "ct": [f"images/P{i}_ct.nii.gz" for i in range(50)], "ki67": range(50),
                          "pfs_months": [float(i) for i in range(50)], "progressed": [i % 2 for i in range(50)]})
    out = permuted_cohort.permuted(frame, tmp_path, seed=0)
    assert sorted(out["pfs_months"]) == sorted(frame["pfs_months"]) and (out["pfs_months"] != frame["pfs_months"]).any()
    assert (out["progressed"] == out["pfs_months"].astype(int) % 2).all()  # each outcome pair kept whole
    assert out["ki67"].tolist() == frame["ki67"].tolist()
    assert out.loc[3, "pet"] == str((tmp_path / "images/P3_pet.nii.gz").resolve())
    pd.testing.assert_frame_equal(out, permuted_cohort.permuted(frame, tmp_path, seed=0))
