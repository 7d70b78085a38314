"""benchmarks/bench_scale.py: peak memory of a process tree, speed-ups against the fewest jobs, the Markdown table.

The benchmark runs it measures are those of ``python -m pfs_core benchmark`` (tested in test_cv_execution.py); here
the measuring itself runs on a small child process and hand-made rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_scale  # noqa: E402


def test_peak_memory_of_a_child_that_holds_200_mb():
    child = "import time; x = bytearray(200_000_000); x[::4096] = b'1' * len(x[::4096]); time.sleep(1.0)"
    measured = bench_scale.run_measured([sys.executable, "-c", child])
    assert measured["returncode"] == 0 and measured["command_s"] >= 1.0
    assert 0.2 <= measured["peak_memory_gb_one_process"] <= measured["peak_memory_gb_tree"] < 1.0


def _row(cohort: str, jobs: int, benchmark_s: float, command_s: float, auroc: float) -> dict:
    return {"cohort": cohort, "jobs": jobs, "load_before": 0.5, "returncode": 0, "benchmark_s": benchmark_s,
            "command_s": command_s, "n_patients": 116, "peak_memory_gb_one_process": 0.8,
            "peak_memory_gb_tree": 0.8 * jobs, "metrics": {"lab_rf": {"auroc": {"mean": auroc}}},
            "execution": {"task_seconds_mean": 0.8, "task_seconds_max": 2.0, "task_seconds_total": 96.0}}


def test_speed_up_and_identical_metrics_against_the_fewest_jobs():
    rows = [_row("a/cohort.csv", 1, 100.0, 110.0, 0.7), _row("a/cohort.csv", 2, 50.0, 60.0, 0.7),
            _row("b/cohort.csv", 1, 80.0, 90.0, 0.6), _row("b/cohort.csv", 2, 40.0, 45.0, 0.61)]
    bench_scale.add_speed_ups(rows)
    assert (rows[1]["speed_up_benchmark"], rows[1]["speed_up_command"]) == (2.0, 1.83)
    assert rows[1]["metrics_identical_to_jobs_1"] is True and rows[3]["metrics_identical_to_jobs_1"] is False
    assert "speed_up_benchmark" not in rows[0]
    table = bench_scale.markdown(rows).splitlines()
    assert "speed-up (benchmark / command)" in table[0] and len(table) == 6
    assert table[3].startswith("| a | 116 | 2 |") and "2.0× / 1.83×" in table[3]
