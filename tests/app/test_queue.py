"""The dashboard's fair queue of heavy analyses (pfs_ui.common): bounded, first come first served, a waiting
page says how many analyses are ahead, and a page that goes away leaves the queue."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from pfs_core.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # pfs_ui is not an installed package: streamlit run (and AppTest) add the app's folder
    sys.path.insert(0, str(ROOT))

from pfs_ui import common  # noqa: E402
from pfs_ui.common import FairQueue, compute_slot, compute_slots  # noqa: E402


def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)


@contextmanager
def _held(queue: FairQueue, n: int = 1) -> Iterator[threading.Event]:
    """``n`` slots of ``queue`` held by background threads until the yielded event is set."""
    release = threading.Event()

    def hold() -> None:
        with queue.slot():
            release.wait(30)

    threads = [threading.Thread(target=hold, daemon=True) for _ in range(n)]
    for thread in threads:
        thread.start()
    _until(lambda: queue.running == n)
    try:
        yield release
    finally:
        release.set()
        for thread in threads:
            thread.join(10)


def test_waiters_enter_in_arrival_order():
    queue, order = FairQueue(1), []

    def analysis(i: int) -> None:
        with queue.slot(poll_s=0.01):
            order.append(i)

    with _held(queue):
        threads = []
        for i in range(6):  # each one queued before the next arrives
            threads.append(threading.Thread(target=analysis, args=(i,)))
            threads[-1].start()
            _until(lambda i=i: queue.waiting == i + 1)
    for thread in threads:
        thread.join(10)
    assert order == list(range(6))


def test_never_more_than_the_slots_at_once():
    queue, lock = FairQueue(2), threading.Lock()
    inside, peak = [0], [0]

    def analysis() -> None:
        with queue.slot(poll_s=0.01):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=analysis) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert peak[0] == 2 and queue.running == 0 and queue.waiting == 0


def test_waiter_is_told_how_many_analyses_are_ahead():
    queue, seen = FairQueue(1), ([], [])
    with _held(queue):
        waiters = [threading.Thread(target=_enter_and_leave, args=(queue, s)) for s in seen]
        for i, waiter in enumerate(waiters):
            waiter.start()
            _until(lambda i=i: queue.waiting == i + 1 and len(seen[i]) > 0)
    for waiter in waiters:
        waiter.join(10)
    # the first waiter: the running analysis ahead; the second: the running one and the first waiter
    assert seen[0][0] == 1 and seen[1][0] == 2


def _enter_and_leave(queue: FairQueue, seen: list[int]) -> None:
    with queue.slot(on_wait=lambda ahead, _s: seen.append(ahead), poll_s=0.01):
        pass


def test_a_page_that_stops_while_waiting_leaves_the_queue():
    """Streamlit stops a closed or rerun page's script by raising in its next st call (here: on_wait)."""
    queue, entered = FairQueue(1), []

    def stopped(_ahead: int, _waited: float) -> None:
        raise KeyboardInterrupt("session closed")

    with _held(queue):
        with pytest.raises(KeyboardInterrupt):
            with queue.slot(on_wait=stopped):
                entered.append("stopped")
        assert queue.waiting == 0
        later = threading.Thread(target=lambda: _enter_and_leave(queue, []))
        later.start()
    later.join(10)
    assert not later.is_alive() and entered == [] and queue.running == 0


def test_an_error_in_the_analysis_frees_its_slot():
    queue = FairQueue(1)
    with pytest.raises(ValueError), queue.slot():
        raise ValueError("broken case")
    assert queue.running == 0
    with queue.slot() as waited:
        assert waited < 1.0


def test_slots_setting(monkeypatch):
    monkeypatch.setenv(common.SLOTS_SETTING, "3")
    assert compute_slots() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(common.SLOTS_SETTING, bad)
        with pytest.raises(UsageError, match=common.SLOTS_SETTING):
            compute_slots()
    monkeypatch.delenv(common.SLOTS_SETTING)
    assert 1 <= compute_slots() <= common.MAX_DEFAULT_SLOTS
    with pytest.raises(ValueError):
        FairQueue(0)


class _Status:
    """Stands in for st.status: records its labels."""

    def __init__(self) -> None:
        self.labels: list[str] = []

    def update(self, *, label: str | None = None, **_: Any) -> None:
        if label is not None:
            self.labels.append(label)


def test_compute_slot_shows_the_wait_then_the_work(monkeypatch):
    queue = FairQueue(1)
    monkeypatch.setattr(common, "compute_queue", lambda: queue)
    status = _Status()
    with _held(queue) as release:
        threading.Timer(0.8, release.set).start()
        with compute_slot(status, label="Loading images..."):
            ran = queue.running
    assert status.labels[0].startswith("Waiting for a free slot: 1 analysis ahead of yours (1 at a time")
    assert status.labels[-1] == "Loading images..." and ran == 1


@pytest.mark.slow
def test_case_explorer_waits_for_a_busy_server_then_answers(app_path, monkeypatch):
    queue = FairQueue(1)
    monkeypatch.setattr(common, "compute_queue", lambda: queue)
    at = AppTest.from_file(app_path, default_timeout=120)
    at.switch_page("pages/case_explorer.py").run()
    with _held(queue) as release:
        threading.Timer(2.0, release.set).start()
        at.button(key="predict").click().run()
    assert not at.exception, at.exception
    assert any(re.match(r"Waited \d+ s for a free slot \(1 at a time", c.value) for c in at.caption), [c.value for c in at.caption]
    assert "P(PFS ≤ 12 months)" in [m.label for m in at.metric]
    assert queue.running == 0 and queue.waiting == 0
