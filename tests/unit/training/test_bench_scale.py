"""benchmarks/bench_scale.py: one benchmark run per cohort × --jobs, with per-task times, memory and speed-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_scale_script_records_tasks_memory_and_identical_metrics(disk_cohort, small_json, tmp_path):
    pre, train = small_json
    out = tmp_path / "scale.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--cohort", str(disk_cohort),
                           "--jobs", "1", "--jobs", "2", "--models", "lab_rf", "--repeats", "1", "--threads", "1",
                           "--preprocess", str(pre), "--train-config", str(train), "--cache-dir", str(tmp_path / "cache"),
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert [r["jobs"] for r in runs] == [1, 2]
    for run in runs:
        assert run["execution"]["tasks"] == 3 and run["execution"]["jobs"] == run["jobs"]  # 1 model x 3 folds
        assert run["peak_memory_gb_one_process"] > 0.05 and run["command_s"] >= run["benchmark_s"] > 0
        assert set(run["auroc"]) == {"lab_rf"}
    assert runs[1]["metrics_identical_to_jobs_1"] is True and runs[1]["speed_up_command"] > 0
    assert "| speed-up (benchmark / command) |" in done.stdout
