"""runs: background runs in a folder, status from exit code / pid (psutil) / cancel marker, progress from the
JSON lines that the commands write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pfs_core import progress as progress_module
from pfs_core.errors import UsageError
from pfs_core.jobs import runs
from pfs_core.jobs.runs import RunInfo, cancel_run, list_runs, progress, run_status, start_run, wait_run
from pfs_core.jobs.worker import main as worker_main
from pfs_core.progress import emit, read_steps, writing_to

MODEL_FIXTURES = Path(__file__).resolve().parents[1] / "models"


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


def _seen(run: RunInfo) -> tuple[str, int, int, str]:
    step = progress(run)
    return step.stage, step.done, step.total, step.detail


@pytest.fixture(scope="module")
def fixtures():
    """tests/unit/models/model_fixtures.py (tiny cohorts, fast configs)."""
    sys.path.insert(0, str(MODEL_FIXTURES))
    import model_fixtures

    return model_fixtures


def test_progress_of_a_real_cross_validation(tmp_path, fixtures, monkeypatch):
    """cross_validate writes the lines; progress() gives what the page shows during each fit and at the end."""
    from pfs_core.models.registry import get_spec
    from pfs_core.training import cv

    run = _fake_run(tmp_path)
    assert _seen(run) == ("starting", 0, 0, "loading libraries and the cohort")
    data = fixtures.make_cohort(18)
    splits = cv.make_splits(data, folds=3, repeats=2, seed=1)
    seen, fit_model = [], cv.fit_model

    def fit_and_look(*args, **kwargs):
        seen.append(_seen(run))  # what the runs page shows while this model is being fitted
        return fit_model(*args, **kwargs)

    monkeypatch.setattr(cv, "fit_model", fit_and_look)
    with writing_to(run.progress_file):
        cv.cross_validate(data, [get_spec("lab_rf")], splits, config=fixtures.FAST, seed=1)
    expected = [("cross-validation", i, 6, f"model lab_rf, repeat {i // 3}, fold {i % 3}") for i in range(6)]
    assert seen == expected
    step = progress(run)
    assert (step.stage, step.done, step.total, step.fraction) == ("cross-validation", 6, 6, 1.0)
    assert step.remaining_s is None and step.text == "cross-validation 6/6"
    assert [line["done"] for line in read_steps(run.progress_file)] == list(range(7))


def test_progress_of_a_real_preprocessing(tmp_path, tiny, fixtures, monkeypatch):
    """preprocess_cohort: one line per patient; the human line on stderr stays."""
    from pfs_core.preprocessing import model_grid

    report, _ = tiny
    run = _fake_run(tmp_path)
    seen, prepared = [], model_grid.prepared_arrays

    def case_and_look(*args, **kwargs):
        seen.append(_seen(run)[:3])
        return prepared(*args, **kwargs)

    monkeypatch.setattr(model_grid, "prepared_arrays", case_and_look)
    with writing_to(run.progress_file):
        model_grid.preprocess_cohort(report.source, fixtures.SMALL, cache_dir=None, progress=True)
    assert seen == [("preprocessing", i, 15) for i in range(15)]
    assert _seen(run)[:3] == ("preprocessing", 15, 15) and progress(run).fraction == 1.0


def test_time_left_from_the_timestamps(tmp_path, monkeypatch):
    clock = {"now": 1000.0}
    fake_time = type("FakeTime", (), {"time": staticmethod(lambda: clock["now"])})
    monkeypatch.setattr(progress_module, "time", fake_time)
    run = _fake_run(tmp_path)
    with writing_to(run.progress_file):
        for done in range(4):
            clock["now"] += 1
            emit("preprocessing", done, 3)
        for done, now in ((0, 1010.0), (1, 1012.0), (2, 1014.0)):
            clock["now"] = now
            emit("cross-validation", done, 10, model="lab_rf", repeat=0, fold=done)
    step = progress(run, now=1014.0)
    assert (step.stage, step.done, step.total) == ("cross-validation", 2, 10)
    assert step.detail == "model lab_rf, repeat 0, fold 2"
    assert step.remaining_s == pytest.approx(16.0)  # 2 s per step so far, 8 steps left
    assert step.text == "cross-validation 2/10 (model lab_rf, repeat 0, fold 2) — about 00:16 left"
    with open(run.progress_file, "a") as handle:
        handle.write('{"stage": "cross-valid')  # a line being written when the page reads
    assert progress(run, now=1014.0) == step
    assert progress(run, now=1015.0).remaining_s == pytest.approx(15.0)  # counts down while the step runs
    assert runs.Progress("x", 1, 2, remaining_s=3725).text == "x 1/2 — about 1:02:05 left"


def test_no_sink_no_file_and_unwritable_sink(tmp_path, capsys):
    emit("cross-validation", 0, 1)  # no sink: nothing happens
    with pytest.raises(OSError):
        with writing_to(tmp_path / "missing" / "progress.jsonl"):
            pass
    with writing_to(tmp_path / "p.jsonl"):
        progress_module._sink.close()  # e.g. the disk went away: the work goes on, with one warning
        emit("cross-validation", 0, 1)
        emit("cross-validation", 1, 1)
    assert capsys.readouterr().err.count("progress file not written") == 1
    assert progress_module._sink is None


def test_log_lines_collapse_bar_redraws(tmp_path):
    run = _fake_run(tmp_path)
    run.log.write_text("preprocessing 1/1: P000\n\rcross-validation:   0%| | 0/2\rcross-validation:  50%| | 1/2"
                       "\n\rtrain pet_cnn:   0%| | 0/1\x1b[A\n")  # as tqdm writes bars to a file
    assert runs.log_lines(run) == ["preprocessing 1/1: P000", "cross-validation:  50%| | 1/2",
                                   "train pet_cnn:   0%| | 0/1"]


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


def test_liveness_of_a_started_and_a_finished_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        created = runs.process_create_time(proc.pid)
        assert created == psutil.Process(proc.pid).create_time()
        assert runs.is_alive(proc.pid) and runs.is_alive(proc.pid, create_time=created)
    finally:
        proc.kill()
    deadline = time.monotonic() + 10
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:  # ended, not yet reaped
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not runs.is_alive(proc.pid, create_time=created)
    assert not runs.is_alive(_dead_pid()) and runs.process_create_time(_dead_pid()) is None


def test_reused_pid_is_not_taken_for_the_run(tmp_path):
    created = runs.process_create_time(os.getpid())
    assert created is not None
    assert runs.is_alive(os.getpid(), create_time=created + 0.5)  # within the clock tolerance
    assert not runs.is_alive(os.getpid(), create_time=created - 60)  # our pid, but another process's start
    run = _fake_run(tmp_path)
    run.create_time = created + 60
    runs.save_run(run)
    assert runs.load_run(run.folder).create_time == created + 60
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
    with pytest.raises(UsageError, match="--progress-file"):
        start_run("train", ["--progress-file=p.jsonl"], runs_dir=tmp_path)
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
    run.pid, run.create_time = proc.pid, runs.process_create_time(proc.pid)
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
    (folder / "train.json").write_text(json.dumps(to_dict(FAST)))
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
    assert run.command[-4:] == ["--progress-file", str(run.progress_file), "--out", str(run.output)]
    assert wait_run(run, timeout_s=120) == "finished", "\n".join(runs.log_lines(run))
    assert (run.output / "results.json").is_file()
    assert _seen(run)[:3] == ("cross-validation", 3, 3) and progress(run).fraction == 1.0  # 3 folds x 1 model
    assert [(line["stage"], line["done"]) for line in read_steps(run.progress_file)] == [
        ("cross-validation", i) for i in range(4)]
    assert not (run.folder / "input").exists(), "the copy of the cohort rows must be deleted when the run ends"
    assert list_runs(tmp_path / "runs")[0].status == "finished"


@pytest.mark.slow
def test_train_run_writes_progress_and_a_bundle(tiny, tmp_path):
    report, options = tiny
    run = start_run("train", ["--model", "lab_rf", *options], runs_dir=tmp_path / "runs", cohort=report)
    assert wait_run(run, timeout_s=120) == "finished", "\n".join(runs.log_lines(run))
    assert (run.output / "manifest.json").is_file()
    assert [(line["stage"], line["done"], line["total"]) for line in read_steps(run.progress_file)] == [
        ("cross-validation", i, 3) for i in range(4)]
    assert progress(run).text == "cross-validation 3/3"
