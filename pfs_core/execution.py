"""One execution layer for cohort-scale work: tasks run in this process, in local processes or on Ray.

A :class:`Task` is one unit of work (e.g. one model fitted on one repeat × fold): a top-level function
(or ``"module:function"``), small arguments, a label that names it in progress lines and errors, and the
resources it declares (CPUs, a GPU fraction, memory). :func:`run_tasks` runs a list of them and returns
their results in task order, whatever order they finish in:

- ``backend="local", jobs=1``: one after the other in this process (what every command did before);
- ``backend="local", jobs=N``: a pool of N spawned processes (spawn, not fork: the caller has usually
  started torch's and OpenMP's threads, and a forked child can hang on a lock one of them held);
- ``backend="ray"``: Ray Core tasks (``ray.remote(num_cpus=..., num_gpus=...)``) on the Ray instance at
  ``address`` (``"auto"``, ``"ray://head:10001"``...), or on a local instance of ``jobs`` CPUs started
  here and shut down afterwards. Ray is an optional extra (``pip install .[ray]``).

Large read-only inputs travel once, not with every task: an argument that is a :class:`Shared` (a
cohort to load from its path and cache, or an object in memory) is replaced in the worker by its value,
loaded once per worker process (:func:`resolve`; memo keyed by :meth:`Shared.key`). The local pool hands
the shared inputs to each worker once when it starts; Ray puts each in its object store once.

A task that raises is run once more; a second failure raises :class:`TaskError` naming the task (or,
for a problem the user can fix, the same :class:`~pfs_core.errors.PfsError` prefixed with the task's
label, not retried). ``cancel`` (a ``threading.Event`` or a callable returning True) is checked between
tasks (and every fraction of a second while waiting for workers); pending tasks are dropped, running
Ray tasks are cancelled with ``ray.cancel``, and :class:`Cancelled` is raised. ``progress(done, total,
label)`` is called in this process after each finished task.

This module imports no pfs_core layer above :mod:`pfs_core.errors` and no heavy library at import time.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pfs_core.errors import PfsError, UsageError

BACKENDS: tuple[str, ...] = ("local", "ray")
#: Seconds between two looks at ``cancel`` while waiting for workers.
POLL_S = 0.2
#: Attempts per task: the first run and one retry.
ATTEMPTS = 2
RAY_EXTRA = "install the extra: pip install .[ray] (or pip install ray==2.60.0)"


class TaskError(RuntimeError):
    """A task failed twice (its first run and the retry); the message names the task."""


class Cancelled(PfsError):
    """The run was cancelled before all its tasks finished."""


@runtime_checkable
class Shared(Protocol):
    """A large read-only input handed to each worker once (not pickled with every task).

    ``key()``: a short string naming the content (the memo key); ``load()``: the value, called once per
    worker process (e.g. read a cohort from its path and cache).
    """

    def key(self) -> str: ...

    def load(self) -> Any: ...


@dataclass(frozen=True)
class InMemory:
    """A :class:`Shared` value already in memory: pickled once per local worker, put once into Ray's object
    store (for a caller without a file behind its data, e.g. a test cohort)."""

    value: Any
    name: str

    def key(self) -> str:
        return f"memory:{self.name}"

    def load(self) -> Any:
        return self.value


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(*args, **kwargs)`` with :class:`Shared` arguments replaced by their values.

    ``fn``: a top-level function or ``"package.module:function"``. ``label``: names the task in progress
    lines and errors (e.g. "model lab_rf, repeat 0, fold 2"); ``info``: the same as small key/values.
    ``cpus``: CPU cores the task uses (torch threads in a worker); ``gpu``: fraction of one GPU (Ray
    schedules by it); ``memory_mb``: memory it needs at most (Ray schedules by it; 0: not declared);
    ``cost``: its expected run time relative to the others: workers start the costliest first (fewer idle
    workers at the end), results still come back in task order.
    """

    fn: Callable[..., Any] | str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)
    cpus: float = 1.0
    gpu: float = 0.0
    memory_mb: int = 0
    cost: float = 1.0


@dataclass(frozen=True)
class Execution:
    """Where tasks run: ``backend`` (local or ray), ``jobs`` (parallel local processes, or the CPUs of a
    local Ray instance) and ``address`` (an existing Ray cluster)."""

    backend: str = "local"
    jobs: int = 1
    address: str | None = None

    def __post_init__(self) -> None:
        check(self.backend, self.jobs, self.address)

    @property
    def in_process(self) -> bool:
        """True when tasks run one after the other in this process."""
        return self.backend == "local" and self.jobs == 1

    def run(self, tasks: Sequence[Task], *, progress: Callable[[int, int, str], None] | None = None,
            cancel: Any = None) -> list[Any]:
        """:func:`run_tasks` of ``tasks`` here."""
        return run_tasks(tasks, backend=self.backend, jobs=self.jobs, address=self.address, progress=progress,
                         cancel=cancel)

    def describe(self) -> dict[str, Any]:
        """Backend and jobs (the address is left out: it may name an internal host)."""
        return {"backend": self.backend, "jobs": self.jobs, "ray_cluster": self.address is not None}


def check(backend: str, jobs: int, address: str | None) -> None:
    """UsageError for an unknown backend, ``jobs`` < 1, an address without Ray, or Ray not installed."""
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend}: unknown; choose one of {', '.join(BACKENDS)}")
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: must be at least 1")
    if address is not None and backend != "ray":
        raise UsageError("--address names a Ray cluster: add --backend ray (or leave --address out)")
    if backend == "ray" and not ray_available():
        raise UsageError(f"--backend ray needs the Python package ray, which is not installed: {RAY_EXTRA}")


def ray_available() -> bool:
    """True when ``import ray`` works."""
    try:
        importlib.import_module("ray")
    except ImportError:
        return False
    return True


def run_tasks(
    tasks: Sequence[Task],
    *,
    backend: str = "local",
    jobs: int = 1,
    address: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Any = None,
) -> list[Any]:
    """The result of every task, in task order (see the module docstring for backends, retry, cancel)."""
    check(backend, jobs, address)
    tasks = list(tasks)
    if not tasks:
        return []
    cancelled = _cancel_check(cancel)
    report = progress or (lambda done, total, label: None)
    if backend == "ray":
        return _run_ray(tasks, jobs=jobs, address=address, progress=report, cancelled=cancelled)
    if jobs == 1:
        return _run_here(tasks, progress=report, cancelled=cancelled)
    return _run_pool(tasks, jobs=jobs, progress=report, cancelled=cancelled)


# ----------------------------------------------------------------------------- shared inputs

_MEMO: dict[str, Any] = {}  # per process: Shared key → loaded value
_SHARED: dict[str, Shared] = {}  # per local worker: Shared key → the descriptor handed over at start
#: Values kept per process at most (a worker serves one run; a long-lived caller drops the oldest).
MEMO_SIZE = 2


@dataclass(frozen=True)
class _Ref:
    """Stands in a task's arguments for a :class:`Shared` input (resolved in the worker)."""

    key: str


def resolve(shared: Shared) -> Any:
    """``shared.load()``, once per process (memo keyed by ``shared.key()``)."""
    key = shared.key()
    if key not in _MEMO:
        while len(_MEMO) >= MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = shared.load()
    return _MEMO[key]


def _split_shared(tasks: Sequence[Task]) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]], dict[str, Shared]]:
    """(args, kwargs) of every task with each Shared replaced by a :class:`_Ref`, and the Shared by key."""
    shared: dict[str, Shared] = {}

    def swap(value: Any) -> Any:
        if isinstance(value, Shared) and not isinstance(value, type):
            shared.setdefault(value.key(), value)
            return _Ref(value.key())
        return value

    args = [tuple(swap(a) for a in task.args) for task in tasks]
    kwargs = [{k: swap(v) for k, v in task.kwargs.items()} for task in tasks]
    return args, kwargs, shared


def _function(fn: Callable[..., Any] | str) -> Callable[..., Any]:
    if callable(fn):
        return fn
    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _call(fn: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: Mapping[str, Any],
          values: Mapping[str, Any]) -> Any:
    """``fn`` with every :class:`_Ref` argument replaced from ``values`` (key → Shared or loaded value)."""

    def value(arg: Any) -> Any:
        if not isinstance(arg, _Ref):
            return arg
        found = values[arg.key]
        return resolve(found) if isinstance(found, Shared) else found

    return _function(fn)(*(value(a) for a in args), **{k: value(v) for k, v in kwargs.items()})


def _worker_threads(cpus: float) -> None:
    """torch, OpenMP and BLAS threads of a worker process = the CPUs its task declared (at least 1).

    Not only torch's: a BLAS or OpenMP pool sized for all cores in each of two workers made every fold fit
    3.5 times slower on 2 cores (their threads spin-wait for each other; measured, docs/scale.md).
    """
    n = max(1, int(cpus))
    for name in ("PFS_CORE_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(n)  # for libraries loaded later
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:
        return
    threadpool_limits(limits=n)  # the libraries already loaded


# ----------------------------------------------------------------------------- in this process


def _cancel_check(cancel: Any) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return lambda: bool(cancel.is_set())
    if callable(cancel):
        return lambda: bool(cancel())
    raise TypeError("cancel: give a threading.Event or a callable returning True to cancel")


def _failure(task: Task, exc: BaseException, attempts: int) -> BaseException:
    """The error raised for ``task``: a PfsError keeps its type (label prefixed), others become TaskError."""
    label = task.label or "a task"
    if isinstance(exc, PfsError):
        error: BaseException = type(exc)(f"{label}: {exc}")
    else:
        runs = "twice (first run and one retry)" if attempts > 1 else "once"
        error = TaskError(f"{label} failed {runs}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _run_here(tasks: Sequence[Task], *, progress: Callable[[int, int, str], None],
              cancelled: Callable[[], bool]) -> list[Any]:
    args, kwargs, shared = _split_shared(tasks)
    values = {key: s for key, s in shared.items()}
    results = []
    for i, task in enumerate(tasks):
        if cancelled():
            raise Cancelled(f"cancelled after {i} of {len(tasks)} tasks")
        for attempt in range(1, ATTEMPTS + 1):
            try:
                # in this process an InMemory value is used as it is (no copy)
                results.append(_call(task.fn, args[i], kwargs[i],
                                     {k: (v.value if isinstance(v, InMemory) else v) for k, v in values.items()}))
                break
            except PfsError as exc:
                raise _failure(task, exc, attempt) from exc
            except Exception as exc:
                if attempt == ATTEMPTS:
                    raise _failure(task, exc, attempt) from exc
        progress(i + 1, len(tasks), task.label)
    return results


# ----------------------------------------------------------------------------- local processes


def _init_worker(shared: dict[str, Shared]) -> None:
    _SHARED.clear()
    _SHARED.update(shared)


def _pool_call(fn: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: Mapping[str, Any], cpus: float) -> Any:
    _worker_threads(cpus)
    return _call(fn, args, kwargs, _SHARED)


@contextmanager
def plain_main() -> Iterator[None]:
    """A bare ``__main__`` while spawned workers start.

    A spawned worker first runs the parent's main script (as ``__mp_main__``); inside a Streamlit server or
    after a page test, that script is the app page, and a worker running it re-imports MONAI in an order
    that breaks on its circular imports (the worker dies before its first task). Workers need nothing of it.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _run_pool(tasks: Sequence[Task], *, jobs: int, progress: Callable[[int, int, str], None],
              cancelled: Callable[[], bool]) -> list[Any]:
    """Tasks in a pool of ``jobs`` spawned processes, at most ``jobs`` submitted at a time (nothing waits in the
    pool's queue, so a cancel leaves no queued work and a retry goes to the end of the line)."""
    args, kwargs, shared = _split_shared(tasks)
    results: dict[int, Any] = {}
    failures: dict[int, int] = {}
    queue = _costliest_first(tasks)
    broken = 0
    while queue:
        pool = ProcessPoolExecutor(max_workers=min(jobs, len(queue)), mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(shared,))
        running: dict[Future[Any], int] = {}
        stop = False

        try:
            with plain_main():  # the first submits start the workers (they spawn while __main__ is bare)
                _top_up(pool, running, queue, tasks, args, kwargs, jobs)
            while running:
                finished, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
                if cancelled():
                    stop = True
                    raise Cancelled(f"cancelled after {len(results)} of {len(tasks)} tasks")
                for future in finished:
                    i = running.pop(future)
                    exc = future.exception()
                    if exc is None:
                        results[i] = future.result()
                        progress(len(results), len(tasks), tasks[i].label)
                        continue
                    if isinstance(exc, BrokenProcessPool):
                        running[future] = i
                        raise exc
                    failures[i] = failures.get(i, 0) + 1
                    if isinstance(exc, PfsError) or failures[i] >= ATTEMPTS:
                        stop = True
                        raise _failure(tasks[i], exc, failures[i]) from exc
                    queue.append(i)
                _top_up(pool, running, queue, tasks, args, kwargs, jobs)
        except BrokenProcessPool as exc:  # a worker died (killed for memory, or failed to start)
            broken += 1
            lost = sorted(running.values())
            if broken >= ATTEMPTS:
                names = "; ".join(tasks[i].label for i in lost) or "?"
                raise TaskError(f"a worker process ended abruptly twice (killed for lack of memory?) while running: "
                                f"{names}; use fewer --jobs") from exc
            queue = lost + queue
        finally:
            if stop:  # cancelled or failed: do not wait for the running tasks
                _stop_workers(pool)
            pool.shutdown(wait=not stop)
    return [results[i] for i in range(len(tasks))]


def _costliest_first(tasks: Sequence[Task]) -> list[int]:
    """Task indices by decreasing :attr:`Task.cost` (ties in task order)."""
    return sorted(range(len(tasks)), key=lambda i: -tasks[i].cost)


def _top_up(pool: ProcessPoolExecutor, running: dict[Future[Any], int], queue: list[int], tasks: Sequence[Task],
            args: Sequence[tuple[Any, ...]], kwargs: Sequence[Mapping[str, Any]], jobs: int) -> None:
    """Submit queued tasks (first in line first) until ``jobs`` run."""
    while queue and len(running) < jobs:
        i = queue.pop(0)
        running[pool.submit(_pool_call, tasks[i].fn, args[i], kwargs[i], tasks[i].cpus)] = i


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's processes (a cancelled run does not wait for the running tasks)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


# ----------------------------------------------------------------------------- Ray


def _ray_call(fn: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: Mapping[str, Any], cpus: float,
              keys: Sequence[str], *values: Any) -> Any:
    """Runs in a Ray worker: ``values`` are the shared inputs (Ray resolves the object references)."""
    _worker_threads(cpus)
    return _call(fn, args, kwargs, dict(zip(keys, values, strict=True)))


@contextmanager
def ray_instance(*, address: str | None, jobs: int) -> Iterator[Any]:
    """The ``ray`` module, connected: to a running instance if this process has one, to ``address``, or to a
    local instance of ``jobs`` CPUs started here (and shut down on exit)."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--backend ray needs the Python package ray: {RAY_EXTRA}") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": jobs, "include_dashboard": False}
        try:
            ray.init(**kwargs, log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            raise UsageError(f"--address {address}: no Ray cluster answers there ({exc}); start one with "
                             "'ray start --head' or give the address of its head node") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _run_ray(tasks: Sequence[Task], *, jobs: int, address: str | None, progress: Callable[[int, int, str], None],
             cancelled: Callable[[], bool]) -> list[Any]:
    args, kwargs, shared = _split_shared(tasks)
    with ray_instance(address=address, jobs=jobs) as ray:
        refs = {key: ray.put(value) for key, value in shared.items()}  # once into the object store
        remote = ray.remote(_ray_call)

        def submit(i: int) -> Any:
            task = tasks[i]
            keys = sorted(refs)
            options: dict[str, Any] = {"num_cpus": task.cpus, "num_gpus": task.gpu, "max_retries": 0}
            if task.memory_mb:
                options["memory"] = int(task.memory_mb) * 1024 * 1024
            return remote.options(**options).remote(task.fn, args[i], kwargs[i], task.cpus, keys,
                                                    *(refs[k] for k in keys))

        pending = {submit(i): i for i in _costliest_first(tasks)}
        results: dict[int, Any] = {}
        failures: dict[int, int] = {}
        try:
            while pending:
                if cancelled():
                    raise Cancelled(f"cancelled after {len(results)} of {len(tasks)} tasks")
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    i = pending.pop(ref)
                    try:
                        results[i] = ray.get(ref)
                    except Exception as exc:  # RayTaskError wraps the task's own exception as .cause
                        cause = getattr(exc, "cause", None) or exc
                        failures[i] = failures.get(i, 0) + 1
                        if isinstance(cause, PfsError) or failures[i] >= ATTEMPTS:
                            raise _failure(tasks[i], cause, failures[i]) from exc
                        pending[submit(i)] = i
                        continue
                    progress(len(results), len(tasks), tasks[i].label)
        finally:
            for ref in pending:
                ray.cancel(ref, force=False)
    return [results[i] for i in range(len(tasks))]


def describe_tasks(seconds: Sequence[float]) -> dict[str, Any]:
    """Count, total, mean and max of per-task seconds (for results files and docs/scale.md)."""
    if not seconds:
        return {"tasks": 0}
    return {"tasks": len(seconds), "task_seconds_total": round(float(sum(seconds)), 2),
            "task_seconds_mean": round(float(sum(seconds)) / len(seconds), 3),
            "task_seconds_max": round(float(max(seconds)), 2)}
