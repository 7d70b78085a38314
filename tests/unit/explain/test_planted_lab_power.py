"""benchmarks/planted_lab_power.py: column-to-lab mapping and the pass rule of the planted-lab check."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import planted_lab_power  # noqa: E402


def test_columns_of_the_lab_transform_map_back_to_their_lab() -> None:
    assert [planted_lab_power.lab_of(n) for n in ("log1p_gamma_gt", "missing_ki67", "primary_site=pancreas", "age")] \
        == ["gamma_gt", "ki67", "primary_site", "age"]


def test_the_check_passes_only_when_every_planted_lab_is_above_every_null_one() -> None:
    planted = dict.fromkeys(planted_lab_power.PLANTED_LABS, 0.05)
    null = dict.fromkeys(planted_lab_power.NO_SIGNAL_LABS, 0.01)
    assert planted_lab_power.passes(pd.Series(planted | null))
    assert not planted_lab_power.passes(pd.Series(planted | null | {"age": 0.06}))
