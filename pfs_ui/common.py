"""Streamlit glue shared by the pages: paths, cached loaders, uploads, error boxes, session helpers.

All computing lives in :mod:`pfs_core`; this module only adapts it to Streamlit.
Uploaded files are written to a temporary folder that is removed as soon as they
are loaded, and no patient value is ever logged.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from pfs_core import DISCLAIMER
from pfs_core.errors import PfsError, UsageError
from pfs_core.io.cohort import read_cohort

# Heavy imports (torch, MONAI, shap, pyvista, the models) sit inside the functions that need them, so a
# page paints before they load (pfs_ui.common warms them up in the background).

ROOT = Path(__file__).resolve().parents[1]
#: Bundles shown by the pages; PFS_MODELS_DIR points the dashboard at a group's own models instead.
MODELS_DIR = ROOT / "models"
SAMPLE_DIR = ROOT / "sample_data"
RUNS_DIR = ROOT / "runs"
SHIPPED_RESULTS = ROOT / "results"


def show_disclaimer() -> None:
    """The disclaimer banner shown at the top of every page."""
    st.warning(DISCLAIMER, icon=":material/science:")


#: Plotly's toolbar camera saves an SVG (vector, for slides and papers) named after the chart; a PNG is one
#: right-click away in the browser. Set for every chart the pages draw (issue 25: every figure exportable).
CHART_CONFIG: dict[str, Any] = {"displaylogo": False,
                                "toImageButtonOptions": {"format": "svg", "scale": 1}}


def show_chart(where: Any, figure: Any, *, key: str, name: str | None = None, **kwargs: Any) -> Any:
    """Draw a plotly ``figure`` in ``where`` (``st`` or a column) with the export button set to SVG.

    ``name``: the exported file's name (default ``key``). Extra keyword arguments go to ``st.plotly_chart``
    (``on_select``, ``selection_mode``). Returns what ``st.plotly_chart`` returns (the selection state).
    """
    config = {**CHART_CONFIG, "toImageButtonOptions": {**CHART_CONFIG["toImageButtonOptions"],
                                                       "filename": name or key}}
    return where.plotly_chart(figure, key=key, config=config, **kwargs)


def show_error(exc: PfsError) -> None:
    """A friendly error box for an input problem (never a traceback)."""
    st.error(str(exc), icon=":material/error:")


def models_dir() -> Path:
    """Folder of model bundles: $PFS_MODELS_DIR if set, else the shipped models/."""
    return Path(os.environ.get("PFS_MODELS_DIR", MODELS_DIR))


def list_bundles(root: Path | None = None) -> list[Path]:
    """Model bundle folders (those holding a manifest.json) under ``root`` (default :func:`models_dir`), default model first."""
    from pfs_core.models.registry import DEFAULT_MODEL

    root = models_dir() if root is None else root
    found = sorted(p for p in root.glob("*") if (p / "manifest.json").is_file() and not _is_organ_bundle(p))
    return sorted(found, key=lambda p: p.name != DEFAULT_MODEL)


def _is_organ_bundle(path: Path) -> bool:
    """The CT organ network sits beside the PFS models but predicts no PFS; a broken PFS manifest still counts
    as a PFS bundle so that the page can show why it fails."""
    from pfs_core.models.organ_seg import FORMAT as ORGAN_FORMAT

    try:
        return json.loads((path / "manifest.json").read_text()).get("format") == ORGAN_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


@st.cache_resource(show_spinner="Loading and verifying the model bundle...")
def cached_bundle(path: str, fingerprint: float) -> Any:
    """Load a bundle once per process (``fingerprint``: manifest mtime, so a retrained bundle reloads)."""
    from pfs_core.models.bundle import load_bundle

    return load_bundle(Path(path))


def load_bundle_ui(path: Path) -> Any:
    """Cached, verified bundle; raises BundleError with the reason when it fails its checks."""
    return cached_bundle(str(path), (path / "manifest.json").stat().st_mtime)


@st.cache_data(show_spinner=False)
def sample_cases(folder: str = str(SAMPLE_DIR)) -> pd.DataFrame:
    """The shipped demonstration cases (cohort.csv of sample_data/, checked; image paths absolute)."""
    return read_cohort(Path(folder) / "cohort.csv")


@contextmanager
def uploaded_files(**files: Any) -> Iterator[dict[str, Path]]:
    """Write Streamlit uploads to a private temporary folder; the folder is deleted on exit.

    ``files``: name → UploadedFile (or None). Yields name → path (the original
    file name is kept, so .nii.gz and .zip are recognised and messages name it).
    """
    with tempfile.TemporaryDirectory(prefix="pfs_upload_") as folder:
        paths = {}
        for name, upload in files.items():
            if upload is None:
                continue
            path = Path(folder) / name / Path(upload.name).name
            path.parent.mkdir()
            path.write_bytes(upload.getvalue())
            paths[name] = path
        yield paths


def device_label() -> str:
    """'GPU: <name>' when CUDA is present, else 'CPU'."""
    import torch

    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return "CPU"


def session_value(key: str, default: Any = None) -> Any:
    """Typed-enough access to one session-state slot."""
    return st.session_state.get(key, default)


def set_session_value(key: str, value: Any) -> None:
    st.session_state[key] = value


def without_folders(message: str, paths: dict[str, Path]) -> str:
    """``message`` with the private temporary folders removed, so it names the user's own file."""
    for path in paths.values():
        message = message.replace(f"{path.parent}/", "")
    return message


def case_threads() -> int | None:
    """Torch CPU threads for one case: 1 (see :func:`pfs_core.inference.case_device`) unless $PFS_CORE_THREADS is set."""
    return None if os.environ.get("PFS_CORE_THREADS", "").strip() else 1


#: Setting: how many heavy analyses (load, predict, explain) the dashboard runs at once, for all sessions together.
SLOTS_SETTING = "PFS_CORE_UI_SLOTS"
#: Default ceiling of :func:`compute_slots` whatever the core count, for memory: 10 sessions predicting sample cases
#: peaked at 2.0-2.1 GB with 2 or 4 slots (docs/security.md, "Many users at once"). Large uploads need more per
#: analysis: on a small server set PFS_CORE_UI_SLOTS lower.
MAX_DEFAULT_SLOTS = 4


class FairQueue:
    """At most ``slots`` holders at a time; the others wait and enter first come, first served.

    A ticket queue under one condition variable, not a bare lock or semaphore: a
    lock lets whichever waiter the scheduler wakes go first, so a session could
    wait for ever behind later arrivals. Streamlit runs every session's script in
    its own thread of one server process, so one instance serves all sessions.
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a queue needs at least one slot, got {slots}")
        self.slots = slots
        self._cond = threading.Condition()
        self._tickets = itertools.count()
        self._waiting: deque[int] = deque()
        self._running = 0

    @property
    def running(self) -> int:
        """Analyses holding a slot now."""
        with self._cond:
            return self._running

    @property
    def waiting(self) -> int:
        """Analyses waiting for a slot now."""
        with self._cond:
            return len(self._waiting)

    @contextmanager
    def slot(self, *, on_wait: Callable[[int, float], None] | None = None, poll_s: float = 0.5) -> Iterator[float]:
        """Hold one slot for the ``with`` block; yields the seconds waited for it.

        ``on_wait(ahead, waited_s)`` is called about every ``poll_s`` seconds while
        waiting, with the number of analyses ahead (running + queued before this
        one). An exception it raises (Streamlit stopping the session's script)
        leaves the queue, so a closed page never holds up the others.
        """
        waited = self._enter(on_wait, poll_s)
        try:
            yield waited
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def _enter(self, on_wait: Callable[[int, float], None] | None, poll_s: float) -> float:
        started = time.monotonic()
        with self._cond:
            ticket = next(self._tickets)
            self._waiting.append(ticket)
        try:
            while True:
                with self._cond:
                    if self._may_start(ticket):
                        self._waiting.popleft()
                        self._running += 1
                        self._cond.notify_all()  # the next in line may take another free slot
                        return time.monotonic() - started
                    ahead = self._running + self._waiting.index(ticket)
                if on_wait is not None:  # outside the lock: a slow page must not stall the other sessions
                    on_wait(ahead, time.monotonic() - started)
                with self._cond:
                    if not self._may_start(ticket):
                        self._cond.wait(poll_s)
        except BaseException:
            with self._cond:
                self._waiting.remove(ticket)
                self._cond.notify_all()
            raise

    def _may_start(self, ticket: int) -> bool:
        """First in line and a slot free (call with the lock held)."""
        return self._waiting[0] == ticket and self._running < self.slots


def compute_slots() -> int:
    """Slots of the dashboard's queue: $PFS_CORE_UI_SLOTS, else the usable CPU cores (at most MAX_DEFAULT_SLOTS).

    Each analysis runs on :func:`case_threads` torch threads (1), so one slot per
    core keeps the cores busy without oversubscribing them.
    """
    text = os.environ.get(SLOTS_SETTING, "").strip()
    if not text:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(cores, MAX_DEFAULT_SLOTS))
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{SLOTS_SETTING}={text!r} is not a whole number ≥ 1: set it to the number of analyses the "
                         "dashboard may run at once (default: the CPU cores, at most "
                         f"{MAX_DEFAULT_SLOTS}), or unset it")
    return int(text)


@st.cache_resource(show_spinner=False)
def _shared_queue(slots: int) -> FairQueue:
    """One queue per process and slot count, shared by every session."""
    return FairQueue(slots)


def compute_queue() -> FairQueue:
    """The process-wide queue of heavy analyses (:func:`compute_slot`)."""
    return _shared_queue(compute_slots())


@contextmanager
def compute_slot(status: Any = None, *, label: str | None = None) -> Iterator[None]:
    """Run the ``with`` block in a slot of the shared fair queue, telling the user while it waits.

    While waiting, ``status`` (an ``st.status`` container; else an info box here)
    reads "Waiting for a free slot: N analyses ahead of yours"; once the slot is
    taken, the status label goes back to ``label`` and a caption says how long
    the wait was. Heavy work (loading images, predict, explain) goes inside, page
    drawing outside.
    """
    queue = compute_queue()
    box = None if status is not None else st.empty()

    def show(ahead: int, waited_s: float) -> None:
        # Rewritten every poll: each write is also where Streamlit stops a closed session's script.
        text = (f"Waiting for a free slot: {ahead} {'analysis' if ahead == 1 else 'analyses'} ahead of yours "
                f"({queue.slots} at a time on this server; waiting {waited_s:.0f} s)")
        if status is not None:
            status.update(label=text, state="running")
        else:
            assert box is not None
            box.info(text, icon=":material/hourglass_top:")
        shown.append(ahead)

    shown: list[int] = []
    with queue.slot(on_wait=show) as waited:
        if box is not None:
            box.empty()
        if shown:
            if status is not None and label is not None:
                status.update(label=label)
            st.caption(f"Waited {waited:.0f} s for a free slot ({queue.slots} at a time on this server).")
        yield


#: Set when a prediction starts: the warm-up then stops at its next step instead of competing with it.
PREDICTION_STARTED = threading.Event()


def _warm_up_steps() -> Iterator[None]:
    """The one-off costs of the Case Explorer's result path, paid on tiny synthetic inputs (no patient data).

    Imports (captum, lifelines, pyvista/VTK) and first calls (VTK contouring,
    smoothing and clustering, plotly's trace classes, figure JSON) would otherwise
    land on the first Predict. Each ``yield`` is a point where the warm-up may stop.
    """

    import numpy as np

    for name in ("pfs_core.explain", "captum.attr", "pfs_core.preprocessing.resample", "pfs_core.results.report", "lifelines",
                 "pfs_core.viz", "pfs_core.viz.mesh", "pyvista"):
        importlib.import_module(name)
        yield
    import shap

    shap.KernelExplainer(lambda rows: rows.sum(axis=1), np.zeros((3, 4))).shap_values(np.ones((1, 4)), nsamples=20,
                                                                                       silent=True)
    yield
    import plotly.io

    from pfs_core.viz import (
        km_figure,
        mesh3d_figure,
        mip_figure,
        modality_bar_figure,
        risk_distribution_figure,
        shap_bar_figure,
        slice_figure,
    )
    from pfs_core.viz import mesh as geometry

    grid = np.indices((24, 20, 22), dtype=np.float32)
    ball = np.exp(-(((grid - np.array([12.0, 10.0, 11.0])[:, None, None, None]) ** 2).sum(0)) / 40.0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    ct = np.where(ball > 0.05, 40.0, -1000.0).astype(np.float32)
    meshes = geometry.case_scene(ct, affine, 10.0 * ball, affine, ball, affine, suv_level=5.0, cam_level=0.5,
                                 max_triangles_total=4 * geometry.MIN_TRIANGLES)
    yield
    figures = [
        lambda: mesh3d_figure(meshes, title="warm-up"),
        lambda: shap_bar_figure(["age", "sex"], [0.1, -0.05], [60.0, "F"], ["years", ""], base_value=0.4,
                                output_space="probability", imputed=[False, True]),
        lambda: modality_bar_figure({"lab": 0.1, "pet": -0.02, "ct": 0.01}, output_space="probability"),
        lambda: slice_figure(ct, ball, affine=affine, axis="axial", index=10, background_kind="ct"),
        lambda: mip_figure(10.0 * ball, ball, affine=affine),
        lambda: risk_distribution_figure(np.linspace(0.1, 0.9, 20), 0.5, threshold=0.5),
        lambda: km_figure(np.linspace(1.0, 30.0, 20), np.arange(20) % 2, ["high", "low"] * 10, highlight="high")[0],
    ]
    for build in figures:
        plotly.io.to_json(build(), validate=False)
        yield


def _warm_up_stack() -> None:
    """Run every warm-up step, unless a prediction has started (it would only compete with it)."""
    for _ in _warm_up_steps():
        if PREDICTION_STARTED.is_set():
            return


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Run :func:`_warm_up_stack` once per process, in a background thread.

    ``app.py`` starts it after the page has been drawn, so it does not delay the
    first page; it takes ~2-3 s of CPU and stops early when a Predict comes first.
    A failure here only means that the first Predict pays these costs itself.
    """

    def run() -> None:
        try:
            _warm_up_stack()
        except Exception:  # noqa: BLE001 - best effort; the real call reports its own errors
            pass

    thread = threading.Thread(target=run, name="pfs-warm-up", daemon=True)
    thread.start()
    return thread
