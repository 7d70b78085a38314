"""runs: background runs in a folder, status from exit code / pid / cancel marker, progress from the log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pfs_core.errors import UsageError
from pfs_core.jobs import runs
from pfs_core.jobs.runs import RunInfo, cancel_run, list_runs, progress, run_status, start_run, wait_run
from pfs_core.jobs.worker import main as worker_main

MODEL_FIXTURES = Path(__file__).resolve().parent / "models"

LOG = (
    "preprocessing 1/3: P000\npreprocessing 2/3: P001\npreprocessing 3/3: P002\n"
    "\rcross-validation:   0%|          | 0/48 [00:00<?, ?it/s]"
    "\rcross-validation:   2%|▏         | 1/48 [00:01<00:47,  1.00s/it, fold=0, model=pet_cnn, repeat=0]\n"
    "\rtrain pet_cnn:   0%|          | 0/1 [00:00<?, ?it/s, loss=1.08]\x1b[A\n"
    "\rcross-validation:  10%|█         | 5/48 [00:05<00:43,  1.00s/it, fold=1, model=lab_pet_ct, repeat=0]"
)


def _fake_run(tmp_path: Path, *, pid: int | None = None, kind: str = "benchmark") -> RunInfo:
    folder = tmp_path / "runs" / f"20260101-000000-{kind}-abcd"
    folder.mkdir(parents=True)
    run = RunInfo(run_id=folder.name, kind=kind, command=["python", "-m", "pfs_core", kind], started="x",
                  pid=pid if pid is not None else os.getpid(), folder=folder)
    runs.save_run(run)
    return run


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_progress_from_the_log(tmp_path):
    run = _fake_run(tmp_path)
    assert progress(run).stage == "starting"
    run.log.write_text(LOG.split("\r", 1)[0])
    assert (progress(run).stage, progress(run).done, progress(run).total) == ("preprocessing", 3, 3)
    run.log.write_text(LOG)
    step = progress(run)
    assert (step.stage, step.done, step.total, step.remaining) == ("cross-validation", 5, 48, "00:43")
    assert step.detail == "fold 1, model lab_pet_ct, repeat 0" and abs(step.fraction - 5 / 48) < 1e-9
    assert "cross-validation 5/48" in step.text and "00:43 left" in step.text
    assert runs.log_lines(run, last=1) == [
        "cross-validation:  10%|█         | 5/48 [00:05<00:43,  1.00s/it, fold=1, model=lab_pet_ct, repeat=0]"]


def test_status_from_exit_code_marker_and_pid(tmp_path):
    run = _fake_run(tmp_path)  # our own pid: alive
    assert run_status(run) == "running"
    (run.folder / "exit_code").write_text("0\n")
    assert run_status(run) == "finished"
    assert json.loads((run.folder / "run.json").read_text())["status"] == "finished"  # final status stored
    failed = _fake_run(tmp_path / "b")
    (failed.folder / "exit_code").write_text("2\n")
    assert run_status(failed) == "failed"
    vanished = _fake_run(tmp_path / "c", pid=_dead_pid())  # ended without an exit code
    assert run_status(vanished) == "failed"
    cancelled = _fake_run(tmp_path / "d", pid=_dead_pid())
    (cancelled.folder / "cancelled").write_text("x")
    assert run_status(cancelled) == "cancelled"


def test_reused_pid_is_not_taken_for_the_run(tmp_path):
    run = _fake_run(tmp_path)
    run.proc_start = (runs.process_start_ticks(os.getpid()) or 0) + 1  # another process with the same pid
    if runs.process_start_ticks(os.getpid()) is None:
        pytest.skip("no /proc on this system")
    assert run_status(run) == "failed"


def test_list_runs_newest_first_and_skips_junk(tmp_path):
    older = _fake_run(tmp_path)
    newer_folder = tmp_path / "runs" / "20270101-000000-train-ffff"
    newer_folder.mkdir()
    runs.save_run(RunInfo(newer_folder.name, "train", [], "y", os.getpid(), newer_folder))
    (tmp_path / "runs" / "junk").mkdir()
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "run.json").write_text("{")
    assert [r.run_id for r in list_runs(tmp_path / "runs")] == [newer_folder.name, older.run_id]
    assert list_runs(tmp_path / "nothing") == []
    assert older.output == older.folder / "results" and runs.load_run(newer_folder).output.name == "bundle"


def test_start_run_refuses_bad_arguments(tmp_path):
    with pytest.raises(UsageError, match="unknown run kind"):
        start_run("explain", [], runs_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--out"):
        start_run("benchmark", ["--out", "x"], runs_dir=tmp_path)
    assert not (tmp_path / "runs").exists()


def test_worker_records_exit_code_and_log(tmp_path):
    code = worker_main([str(tmp_path), "--", sys.executable, "-c", "print('hello'); raise SystemExit(3)"])
    assert code == 3
    assert (tmp_path / "exit_code").read_text().strip() == "3"
    assert "hello" in (tmp_path / "log.txt").read_text()
    assert worker_main(["only-one-argument"]) == 2


def test_worker_forwards_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "pfs_core.jobs.worker", str(tmp_path), "--", sys.executable,
                             "-c", "import time; print('up', flush=True); time.sleep(60)"], start_new_session=True)
    log, deadline = tmp_path / "log.txt", time.monotonic() + 20
    while not (log.exists() and "up" in log.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    assert (tmp_path / "exit_code").read_text().strip() == str(-signal.SIGTERM)


def test_cancel_stops_the_process_group(tmp_path):
    """A detached worker running a long command, cancelled as the pages do (no pfs_core import: fast)."""
    run = _fake_run(tmp_path)
    script = "import time; print('up', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-m", "pfs_core.jobs.worker", str(run.folder), "--", sys.executable,
                             "-c", script], start_new_session=True)
    run.pid, run.proc_start = proc.pid, runs.process_start_ticks(proc.pid)
    runs.save_run(run)
    deadline = time.monotonic() + 20
    while "up" not in runs.read_log_tail(run):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert run_status(run) == "running"
    assert cancel_run(run, wait_s=5) == "cancelled"
    assert not runs.is_alive(proc.pid)
    assert runs.exit_code(run) == -signal.SIGTERM
    assert runs.load_run(run.folder).status == "cancelled"
    assert cancel_run(run) == "cancelled"  # a second cancel changes nothing


# ----------------------------------------------------------------------------- a real run (subprocess)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(validated report of a tiny on-disk cohort, fast-config options)."""
    sys.path.insert(0, str(MODEL_FIXTURES))
    from model_fixtures import FAST, SMALL, write_disk_cohort

    from pfs_core.config import to_dict
    from pfs_core.io.cohort import validate_cohort

    folder = tmp_path_factory.mktemp("run_cohort")
    cohort = write_disk_cohort(folder, n=15)
    (folder / "pre.json").write_text(json.dumps(to_dict(SMALL)))
    (folder / "train.json").write_text(json.dumps(FAST.to_dict()))
    options = ["--preprocess", str(folder / "pre.json"), "--train-config", str(folder / "train.json"),
               "--cache-dir", str(folder / "cache")]
    return validate_cohort(cohort), options


@pytest.mark.slow
def test_benchmark_run_finishes_with_results(tiny, tmp_path):
    report, options = tiny
    run = start_run("benchmark", ["--models", "lab_rf", "--repeats", "1", *options], runs_dir=tmp_path / "runs",
                    cohort=report, meta={"label": "test"})
    stored = json.loads((run.folder / "run.json").read_text())
    assert {"id", "kind", "command", "started", "pid", "status"} <= set(stored) and stored["status"] == "running"
    assert stored["meta"]["n_good"] == 15 and stored["meta"]["label"] == "test"
    assert wait_run(run, timeout_s=120) == "finished", "\n".join(runs.log_lines(run))
    assert (run.output / "results.json").is_file()
    assert progress(run).stage == "cross-validation" and progress(run).fraction == 1.0
    assert not (run.folder / "input").exists(), "the copy of the cohort rows must be deleted when the run ends"
    assert list_runs(tmp_path / "runs")[0].status == "finished"
