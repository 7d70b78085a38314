"""Many users at once: N concurrent dashboard sessions each predict a sample case; time to result and server memory.

    python benchmarks/load_sessions.py [--sessions 10] [--out results/load_sessions.json]

Starts ``streamlit run app.py`` on loopback with Streamlit's agent API
(``--server.enableAgentApi true``): each session is a real server session that runs
the app's script as a browser's would (widgets, reruns, the Predict button), driven
by JSON requests to ``/_stcore/agent/interact`` instead of a browser. Every session
opens the Case Explorer, picks a sample case (round robin over the shipped ones, so
different ones as far as there are cases), and all sessions press Predict at the
same moment; each one waits for its probability.

Records per session the seconds from pressing Predict to the result, the seconds it
waited in the dashboard's fair queue (the page's "Waited N s for a free slot"
caption), the probability shown and any error (an error box, an exception, a
missing result); and the peak resident memory of the server's process tree
(psutil, sampled every 0.2 s). Prints a JSON summary and writes it with ``--out``.
Exit status 0 when every session answered without an error and the peak is within
``--max-peak-mb``, else 1. It loads the machine: every core is busy for a while.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
INTERACT = "/_stcore/agent/interact"
RESULT_LABEL = "P(PFS ≤ 12 months)"
WAITED = re.compile(r"Waited (\d+) s for a free slot \((\d+) at a time on this server\)")
#: Seconds the server waits for a run before answering "still running" (the client then asks again).
AGENT_WAIT_S = 60
SAMPLE_EVERY_S = 0.2


@dataclass
class SessionRecord:
    """One session: its case, seconds from Predict to the result, seconds queued, what it showed."""

    index: int
    case: str
    seconds_to_result: float | None = None
    queued_s: float | None = None
    #: The server's queue slots, as the page says when the session had to wait.
    slots: int | None = None
    probability: str | None = None
    errors: list[str] = field(default_factory=list)


class MemorySampler:
    """Peak resident memory (MB) of a process and its children, sampled in a background thread."""

    def __init__(self, pid: int, every_s: float = SAMPLE_EVERY_S) -> None:
        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.peak_mb = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current_mb(self) -> float:
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:  # a child that just ended
                continue
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_mb = max(self.peak_mb, self.current_mb())
                self.samples += 1
            except psutil.Error:
                return
            self._stop.wait(self.every_s)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, *, slots: int | None, log: Any) -> subprocess.Popen[bytes]:
    """``streamlit run app.py`` with the agent API, on loopback; shipped models (no PFS_ overrides but the slots);
    its output goes to the open file ``log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PFS_")}
    if slots is not None:
        env["PFS_CORE_UI_SLOTS"] = str(slots)
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--server.enableAgentApi", "true",
               "--server.agentWaitTimeout", str(AGENT_WAIT_S), "--browser.gatherUsageStats", "false"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for_health(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout_s:.0f} s")


def interact(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """One agent API request; a run still going (202 wait_timed_out) is collected by asking again."""
    while True:
        request = urllib.request.Request(url + INTERACT, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=AGENT_WAIT_S + 60) as response:
                status, doc = response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"agent API {exc.code}: {exc.read()[:300]!r}") from None
        if status != 202:
            return dict(doc)
        body = {"session_id": doc["session_id"]}


def nodes(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a snapshot's tree, depth first."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(reversed(node.get("children") or []))
    return found


def read_result(snapshot: dict[str, Any], record: SessionRecord) -> None:
    """The probability, the queue wait and any error shown in a session's final snapshot."""
    if snapshot.get("status") != "ready":
        record.errors.append(f"snapshot status {snapshot.get('status')}")
    for node in nodes(snapshot["tree"]):
        kind, props = node.get("type"), node.get("props") or {}
        if kind in ("error", "exception"):
            record.errors.append(f"{kind}: {str(props.get('body') or props.get('message') or props)[:300]}")
        elif kind == "metric" and props.get("label") == RESULT_LABEL:
            record.probability = str(props.get("value"))
        elif kind == "caption" and (match := WAITED.search(str(props.get("body", "")))):
            record.queued_s, record.slots = float(match.group(1)), int(match.group(2))
    if record.probability is None:
        record.errors.append("no probability on the page")


def open_session(url: str, record: SessionRecord) -> str | None:
    """Create a session on the Case Explorer and pick the record's sample case; the session id, or None."""
    try:
        first = interact(url, {})
        session = str(first["session_id"])
        picked = interact(url, {"session_id": session, "widget_state": {"sample_id": record.case}})
        if picked.get("status") != "ready":
            record.errors.append(f"picking {record.case}: status {picked.get('status')}")
            return None
        return session
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        record.errors.append(f"opening the session: {exc}")
        return None


def predict(url: str, session: str, record: SessionRecord, start: threading.Barrier) -> None:
    """Press Predict (all sessions together) and wait for the page's answer."""
    start.wait()
    started = time.perf_counter()
    try:
        snapshot = interact(url, {"session_id": session, "trigger": {"key": "predict"}})
    except (RuntimeError, OSError, ValueError) as exc:
        record.errors.append(f"predict: {exc}")
        return
    record.seconds_to_result = round(time.perf_counter() - started, 2)
    read_result(snapshot, record)


def sample_cases() -> list[str]:
    import csv

    with (ROOT / "sample_data" / "cohort.csv").open(newline="") as handle:
        return [row["patient_id"] for row in csv.DictReader(handle)]


def machine() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "usable_cores": usable, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average_before": [round(x, 2) for x in os.getloadavg()]}


def run(n_sessions: int, *, slots: int | None, max_peak_mb: float) -> dict[str, Any]:
    cases = sample_cases()
    records = [SessionRecord(i, cases[i % len(cases)]) for i in range(n_sessions)]
    about = machine()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()  # the server's output, shown only when it fails to start
    server = start_server(port, slots=slots, log=log)
    try:
        try:
            wait_for_health(url, server)
        except (RuntimeError, TimeoutError):
            log.seek(0)
            sys.stderr.write(log.read()[-3000:].decode(errors="replace"))
            raise
        with MemorySampler(server.pid) as memory:
            idle_mb = memory.current_mb()
            sessions: list[str | None] = [None] * n_sessions
            openers = [threading.Thread(target=lambda r=r: sessions.__setitem__(r.index, open_session(url, r)))
                       for r in records]
            opened = _all(openers)
            opened_mb = memory.current_mb()
            ready = [(r, s) for r, s in zip(records, sessions, strict=True) if s is not None]
            start = threading.Barrier(len(ready)) if ready else None
            workers = [threading.Thread(target=predict, args=(url, s, r, start)) for r, s in ready]
            wall = _all(workers)
            after_mb = memory.current_mb()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    times = [r.seconds_to_result for r in records if r.seconds_to_result is not None and not r.errors]
    errors = [f"session {r.index} ({r.case}): {e}" for r in records for e in r.errors]
    about["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    summary = {
        "what": "concurrent Case Explorer sessions (Streamlit agent API), each predicting one sample case",
        "command": "python benchmarks/load_sessions.py " + " ".join(sys.argv[1:]),
        "sessions": n_sessions, "answered": len(times), "errors": errors,
        "median_s": round(statistics.median(times), 2) if times else None,
        "slowest_s": max(times) if times else None, "fastest_s": min(times) if times else None,
        "wall_s_all_predictions": round(wall, 2), "wall_s_opening_sessions": round(opened, 2),
        "queued_s_max": max((r.queued_s or 0.0 for r in records), default=0.0),
        "server_peak_mb": round(memory.peak_mb, 1), "server_idle_mb": round(idle_mb, 1),
        "server_mb_sessions_open": round(opened_mb, 1), "server_mb_after_results": round(after_mb, 1),
        "memory_samples": memory.samples, "memory_sample_every_s": SAMPLE_EVERY_S, "max_peak_mb": max_peak_mb,
        "slots_setting": slots, "server_slots": max((r.slots or 0 for r in records), default=0) or None,
        "distinct_cases": len({r.case for r in records}),
        "machine": about, "per_session": [asdict(r) for r in records],
    }
    summary["ok"] = bool(len(times) == n_sessions and not errors and memory.peak_mb <= max_peak_mb)
    return summary


def _all(threads: list[threading.Thread]) -> float:
    """Start every thread, wait for all; the wall seconds."""
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10, help="concurrent sessions (default 10)")
    parser.add_argument("--slots", type=int, help="PFS_CORE_UI_SLOTS of the server (default: its own default)")
    parser.add_argument("--max-peak-mb", type=float, default=3072.0, help="acceptance: server peak (default 3 GB)")
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = parser.parse_args()
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    summary = run(args.sessions, slots=args.slots, max_peak_mb=args.max_peak_mb)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
