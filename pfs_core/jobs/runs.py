"""Background runs of ``benchmark`` and ``train`` that outlive the page (or shell) that started them.

A run is a folder ``<runs_dir>/<run_id>/``::

    run.json     id, kind, command, started, pid, status (+ ended, meta)
    log.txt      stdout and stderr of the command (progress bars, the final summary)
    progress.jsonl  one JSON line per step, written by the command (``--progress-file``,
                 :mod:`pfs_core.progress`); read by :func:`progress`
    exit_code    written by :mod:`pfs_core.jobs.worker` when the command ends
    cancelled    marker written by :func:`cancel_run`
    input/       the cohort's usable rows (cohort.csv with absolute image paths), when
                 the run was started from a :class:`~pfs_core.io.cohort.CohortReport`;
                 deleted by the worker as soon as the command ends
    results/     ``benchmark --out`` (results.json, results.md, oof_predictions.csv, outcomes.csv, figures/)
    bundle/      ``train --out`` (a model bundle)

:func:`start_run` launches ``python -m pfs_core.jobs.worker RUN_DIR -- python -m
pfs_core <kind> ...`` in a new session (its own process group), so closing or
reloading the page does not stop it; everything the pages show is read back from
the folder (:func:`list_runs`, :func:`run_status`, :func:`progress`). Whether the worker
still runs comes from psutil (pid plus process creation time, so a reused pid is not
taken for the run). The log holds what the commands print: progress bars, patient
counts and metrics, never lab values.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psutil

from pfs_core.errors import UsageError
from pfs_core.io.cohort import write_good_cohort
from pfs_core.io.outputs import atomic_write_text
from pfs_core.jobs.eta import estimate
from pfs_core.jobs.worker import EXIT_CODE, LOG
from pfs_core.models.provenance import is_simulated
from pfs_core.progress import KEYS as PROGRESS_KEYS
from pfs_core.progress import read_steps

if TYPE_CHECKING:
    from pfs_core.io.cohort import CohortReport


RunKind = Literal["benchmark", "train"]
KINDS: tuple[str, ...] = ("benchmark", "train")
#: Sub-folder of a run that the command writes (its --out).
OUTPUT_FOLDER: dict[str, str] = {"benchmark": "results", "train": "bundle"}
RUN_JSON = "run.json"
CANCELLED = "cancelled"
INPUT_FOLDER = "input"
PROGRESS_FILE = "progress.jsonl"

RUNNING, FINISHED, FAILED, CANCELLED_STATUS = "running", "finished", "failed", "cancelled"
FINAL_STATUSES: tuple[str, ...] = (FINISHED, FAILED, CANCELLED_STATUS)


@dataclass
class RunInfo:
    """What ``run.json`` holds, plus the run's folder."""

    run_id: str
    kind: str
    command: list[str]
    started: str
    pid: int
    folder: Path
    status: str = RUNNING
    ended: str | None = None
    #: psutil creation time of the worker process (Unix seconds), to tell a reused pid apart.
    create_time: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> Path:
        """Folder the command writes: ``results/`` (benchmark) or ``bundle/`` (train)."""
        return self.folder / OUTPUT_FOLDER[self.kind]

    @property
    def log(self) -> Path:
        return self.folder / LOG

    @property
    def progress_file(self) -> Path:
        return self.folder / PROGRESS_FILE

    @property
    def command_line(self) -> str:
        """The command as one shell line (for display and reproduction)."""
        return shlex.join(self.command)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("folder")
        out["id"] = out.pop("run_id")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], folder: Path) -> RunInfo:
        return cls(run_id=str(data["id"]), kind=str(data["kind"]), command=list(data["command"]),
                   started=str(data["started"]), pid=int(data["pid"]), folder=folder,
                   status=str(data.get("status", RUNNING)), ended=data.get("ended"),
                   create_time=data.get("create_time"), meta=dict(data.get("meta") or {}))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


def save_run(run: RunInfo) -> None:
    """(Re)write ``run.json`` atomically."""
    _write_json(run.folder / RUN_JSON, run.to_dict())


def load_run(folder: str | Path) -> RunInfo:
    """The run stored in ``folder``; UsageError when it has no readable run.json."""
    folder = Path(folder)
    try:
        return RunInfo.from_dict(json.loads((folder / RUN_JSON).read_text()), folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{folder}: not a run folder (run.json missing or unreadable: {exc})") from None


# ----------------------------------------------------------------------------- process helpers


#: Seconds two readings of one process's creation time may differ by: psutil gives it to 0.01 s
#: as boot time + time since boot, and the boot time moves with clock updates (NTP).
CREATE_TIME_TOLERANCE_S = 1.0


def process_create_time(pid: int) -> float | None:
    """Creation time of process ``pid`` (Unix seconds, psutil), or None when there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_alive(pid: int, *, create_time: float | None = None) -> bool:
    """True while ``pid`` runs: not a zombie, and created at ``create_time`` when that is known."""
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own finished child
    except ChildProcessError:
        pass
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        if create_time is not None and abs(process.create_time() - create_time) > CREATE_TIME_TOLERANCE_S:
            return False  # the pid now belongs to another process
        return process.is_running()
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:
        return True


# ----------------------------------------------------------------------------- start


def new_run_id(kind: str) -> str:
    """``YYYYmmdd-HHMMSS-<kind>-<4 hex>`` (sorts by start time)."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{kind}-{secrets.token_hex(2)}"


def _check_args(kind: str, args: Sequence[str], *, with_cohort: bool) -> None:
    if kind not in KINDS:
        raise UsageError(f"unknown run kind {kind!r}; use one of {', '.join(KINDS)}")
    taken = ["--out", "--progress-file"] + (["--cohort"] if with_cohort else [])
    for option in taken:
        if any(a == option or a.startswith(f"{option}=") for a in args):
            raise UsageError(f"do not pass {option}: the run sets it (outputs go to the run folder)")


def start_run(
    kind: RunKind,
    args: Sequence[str],
    *,
    runs_dir: Path,
    cohort: CohortReport | None = None,
    meta: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> RunInfo:
    """Launch ``python -m pfs_core <kind> <args> --progress-file <run>/progress.jsonl --out <run>/<results|bundle>``
    in the background.

    Args:
        kind: "benchmark" or "train".
        args: the command's other options (not ``--out`` or ``--progress-file``; not ``--cohort``
            when ``cohort`` is given).
        runs_dir: parent folder of the run folders (created when needed).
        cohort: a validated cohort: its usable rows are written to ``<run>/input/cohort.csv``
            and passed as ``--cohort`` (so bad rows never reach the command).
        meta: extra JSON-able facts stored in run.json (e.g. counts of good/bad rows).
        cwd: working folder of the command (default: the parent of ``runs_dir``), where
            relative paths such as the default ``--cache-dir cache`` land.

    Returns:
        the :class:`RunInfo` (also in ``<run>/run.json``).
    """
    _check_args(kind, args, with_cohort=cohort is not None)
    runs_dir = Path(runs_dir).resolve()
    run_id = new_run_id(kind)
    folder = runs_dir / run_id
    folder.mkdir(parents=True)
    info = dict(meta or {})
    args = list(args)
    if cohort is not None:
        args += ["--cohort", str(_write_input(cohort, folder, info))]
    command = [sys.executable, "-m", "pfs_core", kind, *args, "--progress-file", str(folder / PROGRESS_FILE),
               "--out", str(folder / OUTPUT_FOLDER[kind])]
    worker = [sys.executable, "-m", "pfs_core.jobs.worker", str(folder), "--", *command]
    with open(folder / LOG, "ab") as log:
        proc = subprocess.Popen(worker, start_new_session=True, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=str(cwd or runs_dir.parent), close_fds=True)
    run = RunInfo(run_id=run_id, kind=kind, command=command, started=_now(), pid=proc.pid, folder=folder,
                  create_time=process_create_time(proc.pid), meta=info)
    save_run(run)
    return run


def _write_input(cohort: CohortReport, folder: Path, info: dict[str, Any]) -> Path:
    """Write the usable rows into ``folder/input``; record counts and provenance in ``info``."""

    path = write_good_cohort(cohort, folder / INPUT_FOLDER)
    info.setdefault("cohort_source", str(cohort.source.resolve()))
    info.update(n_rows=cohort.n_rows, n_good=cohort.n_good, n_bad=cohort.n_bad,
                bad_rows=cohort.bad_rows, simulated=is_simulated(cohort.source))
    return path


# ----------------------------------------------------------------------------- status


def exit_code(run: RunInfo) -> int | None:
    """The command's exit status once it has ended (negative: killed by that signal), else None."""
    try:
        return int((run.folder / EXIT_CODE).read_text().strip())
    except (OSError, ValueError):
        return None


def run_status(run: RunInfo) -> str:
    """"running", "finished", "failed" or "cancelled", from the folder and the process.

    Order: a ``cancelled`` marker wins; then the exit code (0 finished, else failed);
    with neither, the run is running while its worker process lives, else failed
    (it ended without recording an exit code, e.g. the machine restarted). A final
    status is written back to run.json.
    """
    if run.status in FINAL_STATUSES:
        return run.status
    code = exit_code(run)
    if (run.folder / CANCELLED).exists():
        if code is None and is_alive(run.pid, create_time=run.create_time):
            return RUNNING
        status = CANCELLED_STATUS
    elif code is not None:
        status = FINISHED if code == 0 else FAILED
    elif is_alive(run.pid, create_time=run.create_time):
        return RUNNING
    else:
        status = FAILED
    run.status, run.ended = status, _now()
    save_run(run)
    return status


def list_runs(runs_dir: Path) -> list[RunInfo]:
    """Every run under ``runs_dir``, newest first (folders without a readable run.json are skipped)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    runs = []
    for folder in sorted(runs_dir.iterdir(), reverse=True):
        if (folder / RUN_JSON).is_file():
            try:
                runs.append(load_run(folder))
            except UsageError:
                continue
    return runs


def cancel_run(run: RunInfo, *, wait_s: float = 5.0) -> str:
    """Stop a running run: SIGTERM to its process group, SIGKILL after ``wait_s`` seconds; status "cancelled".

    A run that has already ended keeps its status.
    """
    status = run_status(run)
    if status != RUNNING:
        return status
    (run.folder / CANCELLED).write_text(_now() + "\n")
    _signal_group(run.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and is_alive(run.pid, create_time=run.create_time):
        time.sleep(0.1)
    if is_alive(run.pid, create_time=run.create_time):
        _signal_group(run.pid, signal.SIGKILL)
        time.sleep(0.2)
    return run_status(run)


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)  # the worker leads its own session: pgid == pid (psutil has no group signal)
    except (ProcessLookupError, PermissionError):
        pass


def wait_run(run: RunInfo, *, timeout_s: float, poll_s: float = 0.2) -> str:
    """Block until the run is no longer running or ``timeout_s`` passed; returns the status."""
    deadline = time.monotonic() + timeout_s
    status = run_status(run)
    while status == RUNNING and time.monotonic() < deadline:
        time.sleep(poll_s)
        status = run_status(run)
    return status


# ----------------------------------------------------------------------------- progress and log


@dataclass(frozen=True)
class Progress:
    """Where a run is, from the last lines of its progress file (:mod:`pfs_core.progress`).

    ``stage``: "starting" (no line yet: libraries and the cohort are loading), "preprocessing"
    (one step = one patient's images) or "cross-validation" (one step = one model fitted on one
    fold; also what ``train`` does); ``fraction`` in [0, 1] of that stage; ``detail`` names the
    step under way (e.g. "model pet_cnn, repeat 0, fold 1"); ``remaining_s`` is the estimated
    time left in the stage (:func:`pfs_core.jobs.eta.estimate`: each model's mean step duration ×
    its steps left, counted down while a step runs), None until one step is done; ``rough`` while
    not every model has finished a step; ``slow_step`` when the step under way overruns.
    """

    stage: str
    done: int
    total: int
    detail: str = ""
    remaining_s: float | None = None
    rough: bool = False
    slow_step: bool = False

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def text(self) -> str:
        parts = [f"{self.stage} {self.done}/{self.total}" if self.total else self.stage]
        if self.detail:
            parts.append(f"({self.detail})")
        if self.remaining_s is not None:
            parts.append(f"— about {_clock(self.remaining_s)} left" + (" (rough)" if self.rough else ""))
            if self.slow_step:
                parts.append("· this step takes longer than the others")
        elif self.total and self.done < self.total:
            parts.append("— estimating the time left…")
        return " ".join(parts)


def _clock(seconds: float) -> str:
    """``mm:ss`` or ``h:mm:ss``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress(run: RunInfo, *, now: float | None = None) -> Progress:
    """The latest progress of the run, from ``<run>/progress.jsonl`` ("starting" before its first line).

    The time left comes from the timestamps of the current stage's lines (:func:`pfs_core.jobs.eta.estimate`)
    at ``now`` (Unix seconds; default: the clock).
    """
    steps = read_steps(run.progress_file)
    if not steps:
        return Progress("starting", 0, 0, detail="loading libraries and the cohort")
    last = steps[-1]
    stage = [last]
    for step in reversed(steps[:-1]):  # back to the first line of this stage
        if step["stage"] != last["stage"] or step["total"] != last["total"] or step["done"] > stage[0]["done"]:
            break
        stage.insert(0, step)
    done, total = int(last["done"]), int(last["total"])
    eta = estimate(stage, time.time() if now is None else now)
    detail = ", ".join(f"{key} {value}" for key, value in last.items() if key not in PROGRESS_KEYS)
    if eta is None:
        return Progress(str(last["stage"]), done, total, detail=detail)
    return Progress(str(last["stage"]), done, total, detail=detail, remaining_s=eta.seconds, rough=eta.rough,
                    slow_step=eta.slow_step)


#: Terminal cursor codes that tqdm writes between nested bars (removed before a log is shown).
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TAIL_BYTES = 64 * 1024


def read_log_tail(run: RunInfo, *, max_bytes: int = TAIL_BYTES) -> str:
    """The last ``max_bytes`` of the log, decoded, ANSI cursor codes removed."""
    try:
        with open(run.log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return ""
    return _ANSI.sub("", data.decode("utf-8", errors="replace"))


def log_lines(run: RunInfo, *, last: int = 20) -> list[str]:
    """The last ``last`` lines of the log with progress-bar redraws collapsed (the final state of each)."""
    lines = []
    for raw in read_log_tail(run).split("\n"):
        final = raw.split("\r")
        kept = [part for part in final if part.strip()]
        if kept:
            lines.append(kept[-1].rstrip())
    return lines[-last:]
