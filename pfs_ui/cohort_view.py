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
import math
import os
import tempfile
import time
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
    show_chart,
    show_error,
)

# Heavy imports (torch, MONAI, shap, pyvista, the models) sit inside the functions that need them, so a
# page paints before they load (pfs_ui.common warms them up in the background).

#: Seconds between two refreshes of the runs panel while a run is going.
POLL_S = 2.0
REPORT_KEY = "cohort_report"
SCORES_KEY = "batch_scores"
VALIDATION_KEY = "batch_validation"
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
    """Where the cohort table is: a path on this machine, or an uploaded CSV plus a zip of its images (or an image
    folder on this machine)."""

    path: Path | None
    upload: Any
    image_root: Path | None
    images_zip: Any = None

    @property
    def signature(self) -> tuple[str, ...]:
        """Identifies the input, so a report of another input is not shown for this one."""
        if self.upload is not None:
            archive = (self.images_zip.name, str(self.images_zip.size)) if self.images_zip is not None else ("", "")
            return ("upload", self.upload.name, str(self.upload.size), str(self.image_root), *archive)
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
    images = st.file_uploader("Images (.zip)", type=["zip"], key="cohort_images_zip",
                              help="A zip of the images the table names: relative paths in the pet/ct/organs columns "
                                   "(e.g. images/P001_pet.nii.gz) are read inside it. It is unpacked in a private "
                                   "temporary folder, deleted when scoring ends.")
    with st.expander("Images already on this machine instead of a zip"):
        root = st.text_input("Folder the image paths are relative to (on this machine)", key="image_root")
    return CohortSource(None, upload, _folder(root), images)


def _folder(text: str) -> Path | None:
    return Path(text.strip()).expanduser() if text.strip() else None


def _with_csv(source: CohortSource, work: Callable[[Path, Path | None], Any]) -> Any:
    """Call ``work(csv_path, image_root)``. An upload is written to a private temporary folder removed afterwards;
    its zip of images is unpacked there (within the zip limits of :mod:`pfs_core.limits`) and becomes the image
    root. A table alone whose image paths are relative, with no image folder given, is refused with a message
    asking for the zip (InputError)."""
    if source.upload is None:
        assert source.path is not None
        return work(source.path, source.image_root)
    with tempfile.TemporaryDirectory(prefix="pfs_cohort_upload_") as folder:
        path = Path(folder) / Path(source.upload.name).name
        path.write_bytes(source.upload.getvalue())
        if source.images_zip is None:
            if source.image_root is None:
                _need_zip(path)
            return work(path, source.image_root or Path(folder))
        from pfs_core.io.dicom import unzipped

        archive = Path(folder) / "images.zip"
        archive.write_bytes(source.images_zip.getvalue())
        try:
            with unzipped(archive) as images:
                archive.unlink()
                return work(path, zip_image_root(images, path))
        except InputError as exc:
            if "not a readable .zip" not in str(exc):
                raise
            raise InputError(f"{source.images_zip.name}: not a readable .zip file; zip the folder of the images "
                             "again (the table's relative paths are read inside it) and upload it") from None


def relative_image_cells(cohort_csv: Path) -> list[str]:
    """The non-empty relative paths of the pet/ct/organs columns of a table ([] when unreadable: the
    validator says why)."""
    import csv

    from pfs_core import schema

    try:
        with open(cohort_csv, newline="", encoding="utf-8-sig", errors="replace") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error):
        return []
    cells = [(row.get(c) or "").strip() for row in rows
             for c in (schema.PET_COLUMN, schema.CT_COLUMN, schema.ORGANS_COLUMN)]
    return [cell for cell in cells if cell and not Path(cell).expanduser().is_absolute()]


def _need_zip(cohort_csv: Path) -> None:
    """InputError when an uploaded table names images by relative paths and no zip came with it."""
    relative = relative_image_cells(cohort_csv)
    if relative:
        example = relative[0] if len(relative[0]) <= 60 else relative[0][:57] + "..."
        raise InputError(f"{cohort_csv.name}: {len(relative)} image path(s) are relative (e.g. {example}) and no "
                         "images came with the table; upload the zip of the images too (box 'Images (.zip)'): "
                         "the paths are read inside the zip")


def zip_image_root(folder: Path, cohort_csv: Path) -> Path:
    """Where the table's relative paths point inside an unpacked zip: ``folder``, or its one top-level
    sub-folder when the zip holds the whole cohort folder (``my_cohort/images/...``) and the paths start below it."""
    relative = relative_image_cells(cohort_csv)
    if not relative or (folder / relative[0]).exists():
        return folder
    subfolders = [p for p in folder.iterdir() if p.is_dir()]
    if len(subfolders) == 1 and (subfolders[0] / relative[0]).exists():
        return subfolders[0]
    return folder


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
        if path is None:
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
        report = _with_csv(source, lambda path, root: validate_cohort(
            path, check_images=check_images, require_outcome=require_outcome, image_root=root,
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
    jobs: int = 1


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
        cores = os.cpu_count() or 1
        jobs = int(st.number_input("Worker processes (fold fits, and preprocessing and lesion measurement of "
                                   "cases not yet cached, run side by side)", 1, cores, min(2, cores),
                                   key="run_jobs"))
    return RunOptions(kind, models, folds, repeats, seed, epochs or None, post, pre.strip(), train.strip(), jobs)


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
    if options.jobs > 1:
        args += ["--jobs", str(options.jobs)]
    return args


def start_background_run(report: Any, options: RunOptions) -> Any:
    """Start the run on the report's usable rows; returns its RunInfo."""
    from pfs_core.jobs.runs import start_run

    if not options.models:
        raise UsageError("choose at least one model")
    args = run_args(options, cache=shared_cache_for(report.source))
    return start_run(options.kind, args, runs_dir=runs_dir(), cohort=report)  # type: ignore[arg-type]


def small_cohort_confirmed(report: Any, options: RunOptions) -> bool:
    """Warn before a run on too few patients or events (:func:`pfs_core.jobs.preflight.small_cohort_warnings`);
    True when there is nothing to warn about or the user ticked the confirmation (key ``confirm_small``)."""
    from pfs_core import schema
    from pfs_core.jobs.preflight import (
        MIN_EVENTS,
        MIN_PATIENTS,
        MIN_PER_CLASS_PER_FOLD,
        small_cohort_warnings,
    )

    good = report.good
    warnings = small_cohort_warnings(good[schema.TIME_COLUMN].to_numpy(float), good[schema.EVENT_COLUMN].to_numpy(float),
                                     folds=options.folds, repeats=options.repeats, n_models=max(len(options.models), 1))
    if not warnings:
        return True
    st.warning("**Small cohort.** " + "; ".join(w[0].upper() + w[1:] for w in warnings) + ". "
               f"Advised: at least {MIN_PATIENTS} labelled patients, {MIN_PER_CLASS_PER_FOLD} of the rarer outcome "
               f"per test fold and {MIN_EVENTS} progressions. Fewer folds or repeats, or fewer models, make the "
               "run shorter.", icon=":material/warning:")
    return bool(st.checkbox("I understand: start anyway", key="confirm_small"))


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
            step = smoothed_progress(run.run_id, progress(run))
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


def smoothed_progress(run_id: str, step: Any, *, now: float | None = None) -> Any:
    """``step`` with its time left smoothed over this session's earlier readings of the same run and stage
    (:func:`pfs_core.jobs.eta.smooth`), so a new progress line moves the figure gradually."""
    import dataclasses

    from pfs_core.jobs.eta import smooth

    now = time.time() if now is None else now
    key = f"eta_{run_id}"
    stored = session_value(key)
    previous = stored[1] if stored is not None and stored[0] == (step.stage, step.total) else None
    value = smooth(previous, step.remaining_s, now)
    set_session_value(key, ((step.stage, step.total), (value, now) if value is not None else None))
    return dataclasses.replace(step, remaining_s=value)


def compare_runs_panel() -> None:
    """Two finished benchmarks side by side: metrics tables, ROC and calibration figures in two columns, and the
    paired AUROC difference per model when both used the same patients (keys compare_a, compare_b)."""
    from pfs_core.results.comparison import find_results, load_results, metrics_table, run_difference

    sources = find_results(results_dir(), runs_dir())
    if len(sources) < 2:
        st.caption("Two finished benchmark runs are needed to compare them side by side.")
        return
    labels = {str(s.folder): s.label for s in sources}
    folders = list(labels)
    pick_a, pick_b = st.columns(2)
    a = str(pick_a.selectbox("Run A", folders, index=0, format_func=lambda f: labels[f], key="compare_a"))
    b = str(pick_b.selectbox("Run B", folders, index=1, format_func=lambda f: labels[f], key="compare_b"))
    if a == b:
        st.info("Choose two different runs.")
        return
    outputs = []
    for column, folder in zip(st.columns(2), (a, b), strict=True):
        with column:
            try:
                output = load_results(folder)
            except PfsError as exc:
                show_error(exc)
                return
            outputs.append(output)
            st.markdown(f"**{labels[folder]}**")
            # three metrics, so that the table fits half of a 1280 px page (mean ± sd strings are wide);
            # AUPRC is on the Model comparison page
            table = metrics_table(output)[["model", "AUROC", "Brier", "C-index"]]
            st.dataframe(table, hide_index=True, key=f"compare_table_{len(outputs)}",
                         column_config={"model": st.column_config.TextColumn("model", width=160, pinned=True)})
            _run_curves(output, index=len(outputs))
    diff = run_difference(outputs[0], outputs[1])
    if diff.empty:
        st.caption("No paired difference: the two runs did not score the same patients (or have no outcomes).")
        return
    st.markdown("**Paired difference, run A − run B** (same patients; OOF probability averaged over repeats)")
    config = {c: st.column_config.NumberColumn(c, format="%+.3f" if c in ("delta", "low", "high") else "%.3f")
              for c in ("auroc_a", "auroc_b", "delta", "low", "high", "p_le_0")}
    st.dataframe(diff, hide_index=True, column_config=config, key="compare_difference")
    st.caption(f"Δ AUROC with a 95 % interval of 1000 patient-bootstrap resamples ({int(diff['n_patients'].iloc[0])} "
               "labelled patients); P(Δ ≤ 0): share of resamples where run A did not rank better.")


def _run_curves(output: Any, *, index: int) -> None:
    """ROC and calibration of one benchmark (every model), or why not."""
    from pfs_core.results.comparison import curve_inputs
    from pfs_core.viz import curves
    from pfs_core.viz.validation import legend_below

    try:
        pairs = curve_inputs(output)
        show_chart(st, legend_below(curves.roc_figure(pairs, title="ROC")), key=f"compare_roc_{index}",
                   name=f"roc_run_{index}")
        show_chart(st, legend_below(curves.calibration_figure(pairs, n_bins=5)), key=f"compare_cal_{index}",
                   name=f"calibration_run_{index}")
    except (PfsError, ValueError) as exc:
        st.warning(f"Figures not drawn: {exc}")


# ----------------------------------------------------------------------------- batch scoring


def score_source(bundle: Any, source: CohortSource) -> None:
    """Validate + score the usable rows (in a slot of the server's fair queue); keep (scores, report) in session
    state, and, when the table has outcomes (pfs_months/progressed), their external validation
    (:func:`pfs_core.results.validation.external_validation`). Only a shipped simulated cohort reads and fills
    the shared cache (:func:`shared_cache_for`)."""
    from pfs_core.inference import score_cohort
    from pfs_core.io.cohort import validate_cohort

    check_typed_paths(source)
    update = _progress_bar("Checking images")
    cache = shared_cache_for(source.path) if source.upload is None else None

    def score(path: Path, root: Path | None) -> Any:
        try:
            return score_cohort(bundle, path, image_root=root, cache_dir=cache, progress=update)
        except InputError as exc:
            if "no usable row" not in str(exc):
                raise
            # every row has a problem: list them here (the library's message names the validate command)
            return validate_cohort(path, check_images=bundle.spec.uses_images, require_outcome=False,
                                   image_root=root)

    with compute_slot(), st.spinner("Scoring the usable rows..."):
        result = _with_csv(source, score)
    if not hasattr(result, "scores"):
        set_session_value(SCORES_KEY, None)
        render_report(result)
        raise InputError("no row can be scored: each row has a problem, listed above with its row number; fix the "
                         "table (or upload the zip of the images it names) and score again")
    validation = None
    from pfs_core.results.validation import attach_outcomes, external_validation, has_outcomes

    table = attach_outcomes(result.scores, result.report.good)
    if has_outcomes(table):
        with st.spinner("Validating against the outcomes (1000 bootstrap resamples)..."):
            validation = external_validation(table["probability"].to_numpy(float),
                                              table["pfs_months"].to_numpy(float),
                                              table["progressed"].to_numpy(float), model=bundle.name)
    set_session_value(SCORES_KEY, (source.signature, bundle.sha256, result))
    set_session_value(VALIDATION_KEY, (source.signature, bundle.sha256, validation))


def render_scores(bundle: Any, source: CohortSource) -> None:
    """The score table, its download, the rows left out, and the validation against the outcomes (when this
    input was scored in this session)."""
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
    validation = session_value(VALIDATION_KEY)
    if validation is not None and validation[:2] == stored[:2]:
        render_validation(validation[2], bundle)


def render_validation(result: Any, bundle: Any) -> None:
    """External validation: AUROC, C-index, calibration, Brier with 95 % bootstrap intervals; ROC, calibration
    and decision-curve figures; CSV and JSON downloads. ``result`` None: the table has no outcomes."""
    from pfs_core.viz.validation import (
        validation_calibration_figure,
        validation_decision_figure,
        validation_roc_figure,
    )

    st.subheader("Validation against the outcomes")
    if result is None:
        st.caption("The table has no pfs_months/progressed: add them to validate the model against what happened "
                   "(AUROC, C-index, calibration, decision curve).")
        return
    counts = result.counts
    st.caption(f"{counts['n_with_outcome']} scored patients with an outcome; the short-PFS label (PFS ≤ 12 months "
               f"with progression) is known for {counts['n_labelled']} ({counts['n_short_pfs']} short, "
               f"{counts['n_long_pfs']} long PFS; {counts['n_censored_before_12_months']} censored ≤ 12 months are "
               f"left out of AUROC, calibration, Brier and the decision curve, kept in the C-index). Intervals: 95 % "
               f"percentile of {result.n_boot} patient-bootstrap resamples (seed {result.seed}).")
    cells = st.columns(3)
    for cell, key in zip(cells, ("auroc", "c_index", "calibration_slope"), strict=True):
        value, low, high = result.value(key)
        cell.metric(result.metrics.set_index("key").loc[key, "metric"],
                    "n/a" if math.isnan(value) else f"{value:.2f}",
                    help=result.summary(key), delta=None)
        cell.caption(_interval_caption(low, high))
    for note in result.notes:
        st.warning(note, icon=":material/info:")
    table = result.metrics.drop(columns=["key"])
    config = {"value": st.column_config.NumberColumn("value", format="%.3f"),
              "low": st.column_config.NumberColumn("95 % CI low", format="%.3f"),
              "high": st.column_config.NumberColumn("95 % CI high", format="%.3f"),
              "n_resamples": st.column_config.NumberColumn("resamples used"),
              "metric": st.column_config.TextColumn("metric", width=170, pinned=True)}
    st.dataframe(table, hide_index=True, column_config=config, key="validation_table")
    left, right = st.columns(2)
    if len(result.y) and len(set(result.y.tolist())) == 2:
        show_chart(left, validation_roc_figure(result.y, result.p, model=bundle.name, auroc=result.value("auroc")),
                   key="validation_roc", name=f"roc_{bundle.name}")
        show_chart(right, validation_calibration_figure(
            result.y, result.p, model=bundle.name, intercept=result.value("calibration_intercept")[0],
            slope=result.value("calibration_slope")[0], line_intercept=result.line_intercept),
            key="validation_calibration", name=f"calibration_{bundle.name}")
        left, right = st.columns(2)
        show_chart(left, validation_decision_figure(result.y, result.p, model=bundle.name,
                                                    band=result.decision_band),
                   key="validation_decision", name=f"decision_curve_{bundle.name}")
        right.markdown("**Net benefit** (true positives per patient; treat all for comparison)")
        right.dataframe(result.decision, hide_index=True, key="decision_table",
                        column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                       for c in ("threshold", "net_benefit", "low", "high", "treat_all")})
    down_left, down_right = st.columns(2)
    down_left.download_button("Download validation metrics (CSV)", scores_csv(result.metrics),
                              file_name=f"validation_{bundle.name}.csv", mime="text/csv", key="download_validation_csv",
                              icon=":material/download:")
    down_right.download_button("Download validation (JSON)", result.to_json().encode(),
                               file_name=f"validation_{bundle.name}.json", mime="application/json",
                               key="download_validation_json", icon=":material/download:")


def _interval_caption(low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return "95 % CI: too few resamples with both outcomes"
    return f"95 % CI {low:.2f}–{high:.2f}"


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
