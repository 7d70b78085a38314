"""``pfs_core predict`` adds the patient's PFS outlook to its JSON without changing the other keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pfs_core.cli import main

BUNDLE = Path(__file__).resolve().parents[3] / "models" / "lab_rf"


@pytest.mark.skipif(not (BUNDLE / "manifest.json").is_file(), reason="the shipped models/lab_rf bundle is absent")
def test_predict_json_has_the_pfs_outlook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labs = tmp_path / "labs.json"
    labs.write_text(json.dumps({"chromogranin_a": 850, "ki67": 12.5, "sex": "F", "age": 63}))
    out = tmp_path / "p.json"
    assert main(["predict", "--model", str(BUNDLE), "--labs", str(labs), "--json", str(out), "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert {"probability", "interval", "risk_group", "missing_modalities"} <= set(printed)  # the existing keys
    outlook = printed["pfs_outlook"]
    assert "Cox" in outlook["method"]
    by = outlook["probability_progressed_by_months"]
    assert list(by) == ["6", "12", "24"]
    assert 0.0 < by["6"] < by["12"] < by["24"] < 1.0
    assert all(low <= by[m] <= high for m, (low, high) in outlook["interval_95_by_months"].items())
    assert "Of 100 patients like this one" in outlook["sentence"]
