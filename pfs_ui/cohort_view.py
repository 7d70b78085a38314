"""Streamlit glue of the cohort pages (Your cohort, Batch scoring): choosing a cohort table, showing its
validation, starting and following background runs, scoring and downloading.

All work is done by :mod:`pfs_core.io.cohort` and :mod:`pfs_core.jobs.runs`; runs are
read back from disk (``runs/``) on every rerun, so they survive a page reload. Only
the last validation report and score table of this browser session are kept in
session state (they are derived from the user's files, never written to a log).

Nothing of a user's cohort is kept on disk by scoring or explaining it: the shared
preprocessing cache (``cache/``) is used only for the simulated cohorts the
project ships (:func:`shared_cache_for`), an uploaded table lives in a temporary
folder removed after the call, and the CSV download has its formulas neutralised.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from pfs_core.errors import InputError, PfsError, UsageError
from pfs_core.io.cohort import DATA_ROOTS_VARIABLE, data_roots
from pfs_core.io.outputs import csv_safe
from pfs_ui.common import (
    ROOT,
    RUNS_DIR,
    SAMPLE_DIR,
    SHIPPED_RESULTS,
    compute_slot,
    list_bundles,
    session_value,
    set_session_value,
    show_error,
)

# Heavy imports (torch, MONAI, shap, pyvista, the models) sit inside the functions that need them, so a
# page paints before they load (pfs_ui.common warms them up in the background).

#: Seconds between two refreshes of the runs panel while a run is going.
POLL_S = 2.0
REPORT_KEY = "cohort_report"
SCORES_KEY = "batch_scores"
PATH_MODE, UPLOAD_MODE = "Path on this machine", "Upload CSV"


# ----------------------------------------------------------------------------- folders


def runs_dir() -> Path:
    """Folder of background runs: ``$PFS_RUNS_DIR`` when set (tests), else ``<repo>/runs``."""
    return Path(os.environ.get("PFS_RUNS_DIR") or RUNS_DIR)


def results_dir() -> Path:
    """Folder of the shipped benchmark results: ``$PFS_RESULTS_DIR`` when set (tests), else ``<repo>/results``."""
    return Path(os.environ.get("PFS_RESULTS_DIR") or SHIPPED_RESULTS)


def cache_dir() -> Path:
    """Preprocessing cache shared with the command line (``<repo>/cache``)."""
    return Path(os.environ.get("PFS_CACHE_DIR") or ROOT / "cache")


def shipped_cohorts() -> set[Path]:
    """The simulated cohort tables the project ships or names: ``sample_data/cohort.csv`` and the ``cohort_csv`` of
    every shipped benchmark result (resolved; relative names are read from the repository)."""
    tables = {(SAMPLE_DIR / "cohort.csv").resolve()}
    for doc in results_dir().glob("*/results.json"):
        try:
            name = json.loads(doc.read_text()).get("cohort_csv")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(name, str) and name:
            tables.add((ROOT / name).resolve())
    return tables


def shared_cache_for(cohort_csv: Path | None) -> Path | None:
    """:func:`cache_dir` for a shipped simulated cohort (:func:`shipped_cohorts`: reused across sessions for
    speed), else None: a user's patients' model-grid PET/CT arrays are never written to the shared cache."""
    if cohort_csv is None:
        return None
    try:
        table = Path(cohort_csv).resolve()
    except (OSError, RuntimeError):
        return None
    return cache_dir() if table in shipped_cohorts() else None


def bundle_choices() -> list[Path]:
    """Shipped bundles (``models/``) first, then the bundles of finished training runs (newest first)."""
    from pfs_core.jobs.runs import FINISHED, list_runs, run_status

    trained = [run.output for run in list_runs(runs_dir())
               if run.kind == "train" and run_status(run) == FINISHED and (run.output / "manifest.json").is_file()]
    return [*list_bundles(), *trained]


def bundle_label(path: Path) -> str:
    """"lab_rf" for a shipped bundle, "lab_rf (run 2026...)" for a run's bundle."""
    if path.name == "bundle" and (path.parent / "run.json").is_file():

        try:
            model = json.loads((path / "manifest.json").read_text()).get("model_name", "bundle")
        except (OSError, ValueError):
            model = "bundle"
        return f"{model} (run {path.parent.name})"
    return path.name


# ----------------------------------------------------------------------------- choosing and checking a cohort


@dataclass
class CohortSource:
    """Where the cohort table is: a path on this machine, or an uploaded CSV plus the image folder."""

    path: Path | None
    upload: Any
    image_root: Path | None

    @property
    def signature(self) -> tuple[str, ...]:
        """Identifies the input, so a report of another input is not shown for this one."""
        if self.upload is not None:
            return ("upload", self.upload.name, str(self.upload.size), str(self.image_root))
        mtime = str(self.path.stat().st_mtime) if self.path is not None and self.path.is_file() else ""
        return ("path", str(self.path), mtime, str(self.image_root))

    @property
    def given(self) -> bool:
        return self.path is not None or self.upload is not None


def cohort_source_widgets() -> CohortSource:
    """Radio path/upload, the path or uploader, and the image folder (keys: cohort_mode, cohort_path,
    cohort_upload, image_root)."""
    mode = st.radio("Cohort table", [PATH_MODE, UPLOAD_MODE], horizontal=True, key="cohort_mode")
    if mode == PATH_MODE:
        text = st.text_input("Path of cohort.csv on this machine", key="cohort_path",
                             placeholder="e.g. /data/my_cohort/cohort.csv")
        root = st.text_input("Image folder (optional; default: the CSV's folder)", key="image_root",
                             help="Relative paths in the pet/ct columns are read from this folder.")
        return CohortSource(Path(text.strip()).expanduser() if text.strip() else None, None, _folder(root))
    upload = st.file_uploader("cohort.csv", type=["csv"], key="cohort_upload")
    root = st.text_input("Folder the image paths are relative to (on this machine)", key="image_root",
                         help=f"Needed unless the pet/ct columns hold absolute paths; default: {ROOT}")
    return CohortSource(None, upload, _folder(root) or ROOT)


def _folder(text: str) -> Path | None:
    return Path(text.strip()).expanduser() if text.strip() else None


def _with_csv(source: CohortSource, work: Callable[[Path], Any]) -> Any:
    """Call ``work(csv_path)``; an upload is written to a private temporary file removed afterwards."""
    if source.upload is None:
        assert source.path is not None
        return work(source.path)
    with tempfile.TemporaryDirectory(prefix="pfs_cohort_upload_") as folder:
        path = Path(folder) / Path(source.upload.name).name
        path.write_bytes(source.upload.getvalue())
        return work(path)


def _progress_bar(label: str) -> Callable[[int, int], None]:
    bar = st.progress(0.0, text=label)

    def update(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"{label} {done}/{total}")

    return update


def check_typed_paths(source: CohortSource) -> None:
    """On a server with ``PFS_CORE_DATA_ROOTS`` set, a cohort table or image folder typed on the page must lie
    inside one of those folders (InputError otherwise, with one message whether or not the path exists), so a
    remote user cannot make the server read its other files; without the setting (a dashboard on one's own
    machine) any path is read."""
    roots = data_roots()
    if not roots:
        return
    for label, path in (("Cohort table", source.path), ("Image folder", source.image_root)):
        if path is None or (source.upload is not None and path == ROOT):
            continue
        if not any(path.resolve().is_relative_to(root) for root in roots):
            raise InputError(f"{label}: not found or not allowed on this server; give a path inside "
                             f"{os.pathsep.join(map(str, roots))} ({DATA_ROOTS_VARIABLE})")


def validate_source(source: CohortSource, *, check_images: bool = True, require_outcome: bool = True) -> Any:
    """Validate the chosen table (progress bar while images load, in a slot of the server's fair queue); the report
    is kept in session state."""
    from pfs_core.io.cohort import validate_cohort

    check_typed_paths(source)
    update = _progress_bar("Checking images")
    with compute_slot():
        report = _with_csv(source, lambda path: validate_cohort(
            path, check_images=check_images, require_outcome=require_outcome, image_root=source.image_root,
            progress=update))
    set_session_value(REPORT_KEY, (source.signature, report))
    return report


def current_report(source: CohortSource) -> Any:
    """The session's validation report of this very input, or None."""
    stored = session_value(REPORT_KEY)
    if stored is None or not source.given or stored[0] != source.signature:
        return None
    return stored[1]


def render_report(report: Any) -> None:
    """Counts, every problem with its row number, and file-level warnings."""
    total, good, bad = st.columns(3)
    total.metric("Rows", report.n_rows)
    good.metric("Usable rows", report.n_good)
    bad.metric("Rows with problems", report.n_bad)
    if report.problems:
        path_refusals(report)
        st.warning(f"{report.n_bad} row(s) cannot be used and are left out; the other {report.n_good} go on. "
                 "Row numbers are spreadsheet rows (the header is row 1).", icon=":material/rule:")
        st.dataframe(report.problems_frame(), hide_index=True, key="problems_table")
    else:
        st.success(f"All {report.n_rows} rows are usable.", icon=":material/check_circle:")
    for warning in report.warnings:
        st.warning(warning)


def path_refusals(report: Any, *, most: int = 10) -> None:
    """An error box for image paths that are missing or outside the allowed folders: the user must move the images
    or have the allowed folders widened, so it is said apart from the other row problems (the validator's one
    message, which does not tell a missing file from a refused one)."""
    refused = [p for p in report.problems if DATA_ROOTS_VARIABLE in p.reason]
    if not refused:
        return
    rows = sorted({p.row for p in refused})
    shown = ", ".join(map(str, rows[:most])) + (f" and {len(rows) - most} more" if len(rows) > most else "")
    st.error(f"Left out for an image path, row(s) {shown}; the first: {refused[0].reason}.",
             icon=":material/folder_off:")


# ----------------------------------------------------------------------------- background runs


@dataclass
class RunOptions:
    """What the run form asks; turned into command-line options by :func:`run_args`."""

    kind: str
    models: list[str]
    folds: int
    repeats: int
    seed: int
    epochs: int | None
    include_post_baseline: bool
    preprocess_json: str
    train_config_json: str


def run_option_widgets() -> RunOptions:
    """The form of a background run (keys run_kind, run_models, train_model, run_folds, run_repeats,
    run_seed, run_epochs, run_post_baseline, run_preprocess, run_train_config)."""
    from pfs_core.models.registry import DEFAULT_MODEL, MODEL_NAMES

    kind = st.radio("What to run", ["benchmark", "train"], horizontal=True, key="run_kind",
                    format_func=lambda k: {"benchmark": "Benchmark (compare models)", "train": "Train a bundle"}[k])
    left, mid, right = st.columns(3)
    if kind == "benchmark":
        models = st.multiselect("Models", MODEL_NAMES, default=list(MODEL_NAMES), key="run_models")
        repeats = int(right.number_input("Repeats", 1, 20, 3, key="run_repeats"))
    else:
        models = [st.selectbox("Model", MODEL_NAMES, index=MODEL_NAMES.index(DEFAULT_MODEL), key="train_model")]
        repeats = 1
    folds = int(left.number_input("Folds", 2, 10, 3, key="run_folds"))
    seed = int(mid.number_input("Seed", 0, 2**31 - 1, 2026, key="run_seed"))
    with st.expander("Advanced"):
        epochs = int(st.number_input("Epochs of the neural networks (0 = default)", 0, 500, 0, key="run_epochs"))
        post = st.checkbox("Also use prrt_cycles (known only AFTER therapy; every output names this choice)",
                           key="run_post_baseline")
        pre = st.text_input("Preprocessing config JSON (path, optional)", key="run_preprocess")
        train = st.text_input("Training config JSON (path, optional)", key="run_train_config")
    return RunOptions(kind, models, folds, repeats, seed, epochs or None, post, pre.strip(), train.strip())


def run_args(options: RunOptions, *, cache: Path | None = None) -> list[str]:
    """Command-line options of ``python -m pfs_core <kind>`` (without --cohort/--out, set by the run);
    ``cache``: the preprocessing cache (:func:`shared_cache_for`), None for ``--no-cache``."""
    cached = ["--cache-dir", str(cache)] if cache is not None else ["--no-cache"]
    args = ["--folds", str(options.folds), "--seed", str(options.seed), *cached]
    if options.kind == "benchmark":
        args += ["--models", ",".join(options.models), "--repeats", str(options.repeats)]
    else:
        args += ["--model", options.models[0]]
    if options.epochs:
        args += ["--epochs", str(options.epochs)]
    if options.include_post_baseline:
        args.append("--include-post-baseline")
    if options.preprocess_json:
        args += ["--preprocess", options.preprocess_json]
    if options.train_config_json:
        args += ["--train-config", options.train_config_json]
    return args


def start_background_run(report: Any, options: RunOptions) -> Any:
    """Start the run on the report's usable rows; returns its RunInfo."""
    from pfs_core.jobs.runs import start_run

    if not options.models:
        raise UsageError("choose at least one model")
    args = run_args(options, cache=shared_cache_for(report.source))
    return start_run(options.kind, args, runs_dir=runs_dir(), cohort=report)  # type: ignore[arg-type]


STATUS_ICONS = {"running": ":material/progress_activity:", "finished": ":material/check_circle:",
                "failed": ":material/error:", "cancelled": ":material/cancel:"}


def runs_panel(*, limit: int = 10) -> None:
    """Recent runs read from disk; refreshes itself every POLL_S seconds while one is running."""
    from pfs_core.jobs.runs import RUNNING, list_runs, run_status

    running = any(run_status(r) == RUNNING for r in list_runs(runs_dir())[:limit])
    st.fragment(run_every=POLL_S if running else None, key="runs_panel")(_runs_list)(limit)


def _runs_list(limit: int) -> None:
    from pfs_core.jobs.runs import list_runs

    runs = list_runs(runs_dir())[:limit]
    if not runs:
        st.caption(f"No runs yet in {runs_dir()}.")
    for run in runs:
        _run_box(run)


def _run_box(run: Any) -> None:
    from pfs_core.jobs.runs import RUNNING, cancel_run, log_lines, progress, run_status

    status = run_status(run)
    with st.container(border=True):
        head, button = st.columns([5, 1])
        counts = run.meta.get("n_good")
        head.markdown(f"{STATUS_ICONS.get(status, '')} **{run.kind}** `{run.run_id}` — {status}"
                      + (f" · {counts} patients" if counts is not None else ""))
        if status == RUNNING:
            step = progress(run)
            st.progress(step.fraction, text=step.text)
            if button.button("Cancel", key=f"cancel_{run.run_id}", icon=":material/stop:"):
                st.toast(f"Run {run.run_id}: {cancel_run(run)}")
                st.rerun()
        elif status == "finished":
            where = "Model comparison" if run.kind == "benchmark" else "Batch scoring and Model comparison"
            st.caption(f"Output: `{run.output}` (listed on the {where} page{'' if run.kind == 'benchmark' else 's'}).")
        elif status == "failed":
            st.code("\n".join(log_lines(run, last=8)) or "(empty log)", language=None)
        with st.expander("Command and log"):
            st.code(run.command_line, language="bash")
            st.code("\n".join(log_lines(run, last=30)) or "(empty log)", language=None)


# ----------------------------------------------------------------------------- batch scoring


def score_source(bundle: Any, source: CohortSource) -> None:
    """Validate + score the usable rows (in a slot of the server's fair queue); keep (scores, report) in session
    state. Only a shipped simulated cohort reads and fills the shared cache (:func:`shared_cache_for`)."""
    from pfs_core.inference import score_cohort

    check_typed_paths(source)
    update = _progress_bar("Checking images")
    cache = shared_cache_for(source.path) if source.upload is None else None
    with compute_slot(), st.spinner("Scoring the usable rows..."):
        result = _with_csv(source, lambda path: score_cohort(bundle, path, image_root=source.image_root,
                                                              cache_dir=cache, progress=update))
    set_session_value(SCORES_KEY, (source.signature, bundle.sha256, result))


def render_scores(bundle: Any, source: CohortSource) -> None:
    """The score table, its download, and the rows left out (when this input was scored in this session)."""
    stored = session_value(SCORES_KEY)
    if stored is None or stored[0] != source.signature or stored[1] != bundle.sha256:
        return
    result = stored[2]
    render_report(result.report)
    scores: pd.DataFrame = result.scores
    st.subheader(f"Scores of {len(scores)} patients ({bundle.name}, version {bundle.version})")
    if bundle.manifest.get("training_cohort", {}).get("simulated"):
        st.info("This model was trained on a **simulated** cohort: the scores illustrate the method.")
    st.dataframe(scores, hide_index=True, key="scores_table")
    st.download_button("Download scores (CSV)", scores_csv(scores),
                       file_name=f"scores_{bundle.name}.csv", mime="text/csv", key="download",
                       icon=":material/download:")


def scores_csv(scores: pd.DataFrame) -> bytes:
    """The score table as CSV bytes, its text cells escaped (a patient_id such as ``=HYPERLINK(...)`` is written
    ``'=HYPERLINK(...)``, so a spreadsheet shows it as text instead of running it). Rows end in CRLF (RFC 4180),
    so a cell holding a carriage return is quoted and stays one cell."""
    return csv_safe(scores).to_csv(index=False, float_format="%.6f", lineterminator="\r\n").encode()


def guarded(work: Callable[[], Any]) -> Any:
    """Run ``work``; a PfsError becomes an error box (None returned)."""
    try:
        return work()
    except PfsError as exc:
        show_error(exc)
        return None
