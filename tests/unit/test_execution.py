"""The execution layer: task order, shared inputs, retry once then a named error, cancel; in this process,
in local worker processes and on a local Ray instance of 2 CPUs."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pfs_core.errors import InputError, UsageError
from pfs_core.execution import (
    Cancelled,
    Execution,
    InMemory,
    Task,
    TaskError,
    check,
    ray_available,
    run_tasks,
)

HERE = Path(__file__).resolve().parent


def square(x: int, *, delay: float = 0.0) -> tuple[int, int]:
    """(x², the worker's pid); later tasks finish first when ``delay`` shrinks with x."""
    time.sleep(delay)
    return x * x, os.getpid()


def total_of(values: np.ndarray, x: int) -> float:
    return float(values.sum()) + x


def flaky(folder: str, name: str, *, fail_times: int) -> str:
    """Fails the first ``fail_times`` calls (counted in files under ``folder``), then returns ``name``."""
    calls = len(list(Path(folder).glob(f"{name}.*")))
    Path(folder, f"{name}.{calls}").touch()
    if calls < fail_times:
        raise ValueError(f"attempt {calls + 1} of {name} failed")
    return name


def user_error() -> None:
    raise InputError("cohort.csv: column pfs_months is missing; add it")


def mark(folder: str, i: int, *, delay: float = 0.0) -> int:
    time.sleep(delay)
    Path(folder, f"ran.{i}").touch()
    return i


@dataclass(frozen=True)
class CountingSource:
    """A Shared input that records each load in ``folder`` (a worker must load it once)."""

    folder: str

    def key(self) -> str:
        return f"counting:{self.folder}"

    def load(self) -> np.ndarray:
        Path(self.folder, f"load.{os.getpid()}.{time.monotonic_ns()}").touch()
        return np.arange(10.0)


LOCAL = [pytest.param({"backend": "local", "jobs": 1}, id="in-process"),
         pytest.param({"backend": "local", "jobs": 2}, id="2-processes")]


@pytest.fixture(scope="module")
def ray_2cpu(tmp_path_factory):
    """A local Ray instance of 2 CPUs (temp dir under pytest's; the test modules importable by its workers)."""
    if not ray_available():
        pytest.skip("ray is not installed (pip install .[ray])")
    import ray

    temp = tmp_path_factory.mktemp("ray")
    if len(str(temp)) > 60:  # Unix socket paths of Ray's session folder must stay under 107 characters
        import tempfile

        temp = Path(tempfile.mkdtemp(prefix="ray"))
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp), log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(HERE), str(HERE / "models")])}})
    yield ray
    ray.shutdown()


WHERE = [*LOCAL, pytest.param({"backend": "ray", "jobs": 2}, id="ray", marks=pytest.mark.slow)]


def _where(request, where):
    if where["backend"] == "ray":
        request.getfixturevalue("ray_2cpu")
    return where


@pytest.mark.parametrize("where", WHERE)
def test_results_come_back_in_task_order(where, request):
    where = _where(request, where)
    tasks = [Task(square, (i,), {"delay": 0.3 * (3 - i) if where["jobs"] > 1 else 0.0}, label=f"task {i}")
             for i in range(4)]
    seen = []
    results = run_tasks(tasks, **where, progress=lambda done, total, label: seen.append((done, total, label)))
    assert [r[0] for r in results] == [0, 1, 4, 9]
    assert [s[:2] for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert sorted(s[2] for s in seen) == [f"task {i}" for i in range(4)]
    if where == {"backend": "local", "jobs": 1}:
        assert {r[1] for r in results} == {os.getpid()}
        assert [s[2] for s in seen] == [f"task {i}" for i in range(4)]
    else:
        assert os.getpid() not in {r[1] for r in results}


@pytest.mark.parametrize("where", WHERE)
def test_a_shared_input_is_loaded_once_per_worker(where, request, tmp_path):
    where = _where(request, where)
    source = CountingSource(str(tmp_path))
    results = run_tasks([Task(total_of, (source, i)) for i in range(6)], **where)
    assert results == [45.0 + i for i in range(6)]
    loads = list(tmp_path.glob("load.*"))
    pids = {p.name.split(".")[1] for p in loads}
    assert len(loads) == len(pids) <= 2  # one load per worker process, whatever the number of tasks


def test_an_in_memory_input_is_used_as_is_in_process():
    values = np.arange(4.0)
    assert run_tasks([Task(total_of, (InMemory(values, "v"), 1))]) == [7.0]


@pytest.mark.parametrize("where", WHERE)
def test_a_failed_task_is_retried_once(where, request, tmp_path):
    where = _where(request, where)
    assert run_tasks([Task(flaky, (str(tmp_path), "a"), {"fail_times": 1}, label="model lab_rf, repeat 0, fold 1")],
                     **where) == ["a"]
    assert len(list(tmp_path.glob("a.*"))) == 2


@pytest.mark.parametrize("where", WHERE)
def test_a_task_failing_twice_is_named_in_the_error(where, request, tmp_path):
    where = _where(request, where)
    tasks = [Task(square, (1,), label="model classic, repeat 0, fold 0"),
             Task(flaky, (str(tmp_path), "b"), {"fail_times": 5}, label="model pet_cnn, repeat 1, fold 2")]
    with pytest.raises(TaskError, match=r"model pet_cnn, repeat 1, fold 2 failed twice .*ValueError: attempt 2"):
        run_tasks(tasks, **where)
    assert len(list(tmp_path.glob("b.*"))) == 2


@pytest.mark.parametrize("where", LOCAL)
def test_a_user_error_keeps_its_type_and_is_not_retried(where):
    with pytest.raises(InputError, match=r"^model lab_rf, repeat 0, fold 0: cohort.csv: column pfs_months"):
        run_tasks([Task(user_error, label="model lab_rf, repeat 0, fold 0")], **where)


@pytest.mark.parametrize("where", WHERE)
def test_cancel_stops_before_the_remaining_tasks(where, request, tmp_path):
    where = _where(request, where)
    stop = threading.Event()
    tasks = [Task(mark, (str(tmp_path), i), {"delay": 0.0 if i == 0 else 1.0}, label=f"task {i}") for i in range(8)]
    with pytest.raises(Cancelled, match="cancelled after"):
        run_tasks(tasks, **where, progress=lambda done, total, label: stop.set(), cancel=stop)
    assert (tmp_path / "ran.0").exists()
    assert len(list(tmp_path.glob("ran.*"))) < 8


def test_cancel_accepts_a_callable():
    with pytest.raises(Cancelled):
        run_tasks([Task(square, (1,))], cancel=lambda: True)


def test_options_are_checked_before_any_work(monkeypatch):
    with pytest.raises(UsageError, match="--jobs 0"):
        check("local", 0, None)
    with pytest.raises(UsageError, match="--backend gpu"):
        Execution(backend="gpu")
    with pytest.raises(UsageError, match="--address .* add --backend ray"):
        Execution(address="auto")
    import pfs_core.execution as execution

    monkeypatch.setattr(execution, "ray_available", lambda: False)
    with pytest.raises(UsageError, match=r"pip install \.\[ray\]"):
        Execution(backend="ray")


def test_ray_missing_is_a_usage_error_on_the_command_line(monkeypatch, tmp_path, capsys):
    import pfs_core.execution as execution
    from pfs_core.cli import main

    monkeypatch.setattr(execution, "ray_available", lambda: False)
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("patient_id\n")
    code = main(["benchmark", "--cohort", str(cohort), "--backend", "ray", "--models", "lab_rf",
                 "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    assert "install the extra: pip install .[ray]" in capsys.readouterr().err
