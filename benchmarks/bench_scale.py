"""Scale of the cohort benchmark: time per task, total time and memory for each cohort × worker count (issue 26).

    python benchmarks/bench_scale.py --cohort data/sim116_eval/cohort.csv --cohort data/sim400_dev101/cohort.csv \
        --cohort data/sim1000_dev102/cohort.csv --jobs 1 --jobs 2 --out results/scale.json \
        [--backend ray] [--device cuda] [--repeats 5] [--folds 3] [--models all] [--threads 2]

Runs ``python -m pfs_core benchmark`` once per cohort and ``--jobs`` value, one run after the other
(never two at once: they would share the cores), into a temporary folder, and records for each run:
the command's wall time, the benchmark's own ``wall_time_s`` (cross-validation, reference rows,
bootstrap), the fold tasks' count, total, mean and max seconds (``execution`` in its results.json),
the peak resident memory of the command and of its largest worker process (sampled with psutil every
0.2 s; the sum over the process tree and the largest single process), the 1-minute load average before
the run, and the AUROC of every model. With several ``--jobs`` values per cohort it adds the speed-up
against the smallest one and whether the metrics were identical. The cohorts' preprocessing and lesion
measurements should be cached (``--cache-dir``, default ``cache``) by an earlier run, or the first run
of each cohort also pays for them. Writes JSON (``--out``) and prints a Markdown table (docs/scale.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

#: Seconds between two samples of the process tree's memory.
SAMPLE_S = 0.2


def tree_memory(root: psutil.Process) -> tuple[int, int]:
    """(sum, largest) resident bytes of ``root`` and its descendants now."""
    sizes = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            sizes.append(proc.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sum(sizes), max(sizes, default=0)


def run_measured(command: list[str]) -> dict[str, Any]:
    """Run ``command``; its wall time, exit status, output tail and peak memory (tree sum and one process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    peak = {"sum": 0, "one": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                total, largest = tree_memory(root)
            except psutil.NoSuchProcess:
                return
            peak["sum"], peak["one"] = max(peak["sum"], total), max(peak["one"], largest)
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    done.set()
    sampler.join()
    return {"returncode": proc.returncode, "command_s": round(time.perf_counter() - started, 2),
            "peak_memory_gb_tree": round(peak["sum"] / 1e9, 2), "peak_memory_gb_one_process": round(peak["one"] / 1e9, 2),
            "output_tail": output[-2000:]}


def benchmark_command(args: argparse.Namespace, cohort: Path, jobs: int, out: Path) -> list[str]:
    command = [sys.executable, "-m", "pfs_core", "benchmark", "--cohort", str(cohort), "--folds", str(args.folds),
               "--repeats", str(args.repeats), "--models", args.models, "--seed", str(args.seed), "--out", str(out),
               "--threads", str(args.threads), "--no-progress", "--jobs", str(jobs), "--backend", args.backend,
               "--cache-dir", str(args.cache_dir)]
    extra = [[f"--{name.replace('_', '-')}", str(getattr(args, name))] for name in ("device", "preprocess", "train_config")
             if getattr(args, name)]
    return command + [part for pair in extra for part in pair]


def one_run(args: argparse.Namespace, cohort: Path, jobs: int, folder: Path) -> dict[str, Any]:
    out = folder / f"{cohort.parent.name}_jobs{jobs}"
    load = os.getloadavg()[0]
    measured = run_measured(benchmark_command(args, cohort, jobs, out))
    row: dict[str, Any] = {"cohort": str(cohort), "jobs": jobs, "backend": args.backend, "load_before": round(load, 2),
                           **measured}
    if measured["returncode"] != 0:
        return row
    results = json.loads((out / "results.json").read_text())
    row.update(benchmark_s=results["wall_time_s"], n_patients=(results.get("cohort") or {}).get("n"),
               execution=results.get("execution"),
               auroc={name: m["auroc"]["mean"] for name, m in results["metrics"].items()})
    row["metrics"] = results["metrics"]
    del row["output_tail"]
    return row


def add_speed_ups(rows: list[dict[str, Any]]) -> None:
    """Speed-up of each run against the run of the same cohort with the fewest jobs; identical metrics or not."""
    for row in rows:
        base = min((r for r in rows if r["cohort"] == row["cohort"] and "benchmark_s" in r),
                   key=lambda r: r["jobs"], default=None)
        if base is None or "benchmark_s" not in row or base is row:
            continue
        row["speed_up_benchmark"] = round(base["benchmark_s"] / row["benchmark_s"], 2)
        row["speed_up_command"] = round(base["command_s"] / row["command_s"], 2)
        row["metrics_identical_to_jobs_" + str(base["jobs"])] = row["metrics"] == base["metrics"]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| cohort | patients | jobs | load | time per task (mean / max) | sum of tasks | benchmark | command | "
             "peak memory (one process / tree) | speed-up (benchmark / command) |", "|" + "---|" * 10]
    for r in rows:
        if "benchmark_s" not in r:
            lines.append(f"| {r['cohort']} | | {r['jobs']} | | failed (exit {r['returncode']}) | | | | | |")
            continue
        e = r.get("execution") or {}
        speed = f"{r['speed_up_benchmark']}× / {r['speed_up_command']}×" if "speed_up_benchmark" in r else ""
        lines.append(f"| {Path(r['cohort']).parent.name} | {r.get('n_patients') or ''} | {r['jobs']} | {r['load_before']} | "
                     f"{e.get('task_seconds_mean', '?')} s / {e.get('task_seconds_max', '?')} s | "
                     f"{e.get('task_seconds_total', '?')} s | {r['benchmark_s']:.1f} s | {r['command_s']:.1f} s | "
                     f"{r['peak_memory_gb_one_process']} / {r['peak_memory_gb_tree']} GB | {speed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, action="append", required=True, help="cohort.csv (repeat the option)")
    parser.add_argument("--jobs", type=int, action="append", required=True, help="worker count (repeat the option)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--backend", choices=("local", "ray"), default="local")
    parser.add_argument("--device", default=None, help="torch device of the runs (default: the command's)")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="all")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of a --jobs 1 run (default 2)")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    parser.add_argument("--preprocess", type=Path, help="PreprocessConfig JSON passed on (default: the command's)")
    parser.add_argument("--train-config", type=Path, help="TrainConfig JSON passed on (default: the command's)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as folder:
        for cohort in args.cohort:
            for jobs in sorted(set(args.jobs)):
                rows.append(one_run(args, cohort, jobs, Path(folder)))
                print(f"{cohort} jobs {jobs}: {rows[-1].get('benchmark_s', 'failed')} s benchmark, "
                      f"{rows[-1]['command_s']} s command", flush=True)
    add_speed_ups(rows)
    for row in rows:
        row.pop("metrics", None)
    doc = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {round(psutil.virtual_memory().total / 1e9, 1)} GB",
           "date": time.strftime("%Y-%m-%d"), "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(markdown(rows))
    return 0 if all(r["returncode"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
