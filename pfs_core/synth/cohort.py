"""Cohort orchestration: tables, images, summary; the API behind ``python -m pfs_core synth``.

Every patient ``i`` has three independent random streams,
``SeedSequence(seed).spawn(n)[i].spawn(3)`` = (attributes, outcome, images), so
patient ``i`` is the same whatever ``n``, ``--jobs``, ``--backend`` or ``--no-images``.

The tables are written here; the images are rendered by tasks of a few patients each on the project's
execution layer (:mod:`pfs_core.execution`: in this process, in local spawned processes or on Ray). Each
task gets the patients' ids and seed sequences (a few hundred bytes), redraws their attributes and writes
their files into the staging folder, so the output is the same whatever runs it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pfs_core.errors import UsageError
from pfs_core.execution import Execution, Task, ray_instance
from pfs_core.progress import emit
from pfs_core.schema import (
    COHORT_COLUMNS,
    CT_COLUMN,
    EVENT_COLUMN,
    ID_COLUMN,
    ORGANS_COLUMN,
    PET_COLUMN,
    TIME_COLUMN,
)
from pfs_core.synth.constants import ORGAN_LABELS, SIMULATOR_VERSION
from pfs_core.synth.imaging import write_images
from pfs_core.synth.labs import DECIMALS, MISSING_RATE
from pfs_core.synth.options import SimOptions
from pfs_core.synth.organ_masks import ORGAN_MASKS_SUFFIX
from pfs_core.synth.patient import PatientAttributes, draw_attributes, patient_streams
from pfs_core.synth.reference import contributions, reference_summary
from pfs_core.synth.survival import (
    TARGET_PREVALENCE,
    WEIBULL_SHAPE,
    Outcome,
    Signal,
    draw_outcome,
    p_short_pfs,
)

DEFAULT_STRENGTH = 0.785  # calibrated: expected Bayes AUROC 0.78 at signal labs=1,pet=1,ct=1 (benchmarks/synth_calibration.py)
GROUND_TRUTH_COLUMNS = (
    "patient_id", "p_short_pfs_true", "risk_score_true", "risk_lab", "risk_pet", "risk_ct", "n_lesions",
    "n_sstr_negative", "tumour_volume_ml", "liver_tumour_fraction", "mean_tumour_suv", "short_pfs_observed",
    "sstr_negative_volume_ml", "tumour_to_liver_ratio", "liver_suv", "sstr_positive_volume_ml", "necrotic_fraction",
    "ct_visible_volume_ml", "liver_volume_ml", "n_liver_lesions", "ppi_use",
)
LESION_COLUMNS = (
    "patient_id", "lesion_label", "site", "centre_x_mm", "centre_y_mm", "centre_z_mm", "volume_ml", "suv_mean",
    "sstr_negative", "tlr", "necrotic_fraction", "ct_visible",
)


def default_workers() -> int:
    """Jobs of ``synth`` when none are given: min(2, CPUs)."""
    return max(1, min(2, os.cpu_count() or 1))


def patient_id(index: int, n: int) -> str:
    """``SIM0001`` style identifier (at least 4 digits)."""
    return f"SIM{index + 1:0{max(4, len(str(n)))}d}"


def _fmt(value: float | int | None, decimals: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if decimals == 0:
        return str(int(round(value)))
    text = f"{value:.{decimals}f}"
    return "0." + "0" * decimals if text == "-0." + "0" * decimals else text


#: Columns of the simulated cohort.csv: the required ones and the organ masks a research group would bring.
SYNTH_COHORT_COLUMNS = (*COHORT_COLUMNS, ORGANS_COLUMN)


def _csv_text(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


#: Patients rendered by one task at most (about 0.6 CPU-seconds each): a progress step every few seconds.
PATIENTS_PER_TASK = 4
#: Tasks per job at least, when there are enough patients: no worker idles long while the last ones finish.
TASKS_PER_JOB = 4
#: Memory one render task needs at most: a worker with numpy, scipy and nibabel loaded (~220 MB) plus one
#: patient's volumes (peak ~340 MB measured; the patients of a task render one after the other).
RENDER_MEMORY_MB = 512
#: Stage name of the render steps in the progress file (:func:`pfs_core.progress.emit`; done/total in patients).
RENDER_STAGE = "simulating images"


def render_patients(patients: Sequence[tuple[str, np.random.SeedSequence, np.random.SeedSequence]],
                    images_dir: str, options: SimOptions) -> int:
    """Write the images of ``patients`` ((id, attribute seed, image seed) each) into ``images_dir``; returns how
    many (a render task of :func:`render_tasks`, run wherever the execution layer puts it)."""
    for pid, attr_seed, image_seed in patients:
        write_images(draw_attributes(attr_seed, options), image_seed, Path(images_dir), pid,
                     contrast=options.contrast)
    return len(patients)


def patients_per_task(n: int, jobs: int) -> int:
    """Patients of one render task: at most :data:`PATIENTS_PER_TASK`, fewer when that leaves fewer than
    :data:`TASKS_PER_JOB` tasks per job (the files do not depend on it)."""
    return max(1, min(PATIENTS_PER_TASK, math.ceil(n / (TASKS_PER_JOB * max(1, jobs)))))


def render_tasks(streams: Sequence[tuple[np.random.SeedSequence, ...]], images_dir: Path, options: SimOptions,
                 jobs: int) -> list[Task]:
    """The render tasks of a cohort, in patient order: a few patients each, small arguments (ids and seed
    sequences; every task redraws its patients' attributes), ``images_dir`` absolute (a worker's working
    folder may differ)."""
    n = len(streams)
    size = patients_per_task(n, jobs)
    folder = str(Path(images_dir).resolve())
    tasks = []
    for start in range(0, n, size):
        batch = [(patient_id(i, n), streams[i][0], streams[i][2]) for i in range(start, min(n, start + size))]
        first, last = batch[0][0], batch[-1][0]
        label = f"images of patient {first}" if first == last else f"images of patients {first}–{last}"
        tasks.append(Task("pfs_core.synth.cohort:render_patients", (batch, folder, options), label=label,
                          info={"patients": len(batch)}, cpus=1, memory_mb=RENDER_MEMORY_MB,
                          cost=float(len(batch))))
    return tasks


def _render(tasks: Sequence[Task], n: int, execution: Execution) -> None:
    """Run the render tasks; one progress line (stage :data:`RENDER_STAGE`, done/total in patients) at the start
    and after each task."""
    sizes = {task.label: int(task.info["patients"]) for task in tasks}
    done = 0
    emit(RENDER_STAGE, 0, n)

    def step(_done: int, _total: int, label: str) -> None:
        nonlocal done
        done += sizes[label]
        emit(RENDER_STAGE, done, n)

    execution.run(tasks, progress=step)


@contextmanager
def _ray_session(execution: Execution, needed: bool) -> Iterator[None]:
    """With Ray and work for it: one Ray connection (or local instance) for the reference and the images."""
    if execution.backend != "ray" or not needed:
        yield
        return
    with ray_instance(address=execution.address, jobs=execution.jobs):
        yield


def resolve_execution(execution: Execution | None, workers: int | None) -> Execution:
    """Where the images render: ``execution``, or ``workers`` local jobs (default :func:`default_workers`);
    UsageError for a bad ``workers`` or one that differs from ``execution.jobs``."""
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1:
            raise UsageError(f"--workers must be a whole number >= 1 (got {workers!r}); e.g. --workers 2")
        if execution is not None and int(workers) != execution.jobs:
            raise UsageError(f"--workers is another name for --jobs: give one of them (got --workers {workers} "
                             f"and --jobs {execution.jobs})")
    if execution is not None:
        return execution
    return Execution(jobs=default_workers() if workers is None else int(workers))


#: One simulated cohort at most (a larger --n was a typo or would fill the disk for hours).
MAX_PATIENTS = 20_000


def _check_args(n: int, strength: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise UsageError(f"--n must be a whole number of patients >= 1 (got {n!r}); e.g. --n 116")
    if n > MAX_PATIENTS:
        raise UsageError(f"--n {n} is more than {MAX_PATIENTS} patients (about 2 MB of images and 1.5 CPU-seconds "
                         "each); simulate several cohorts with different --seed values instead")
    if not math.isfinite(strength) or strength < 0:
        raise UsageError(f"--strength must be a finite number >= 0 (got {strength!r}); default {DEFAULT_STRENGTH}")


def _prepare_output(out: Path, force: bool) -> Path:
    """Validate ``out`` and create an empty staging folder beside it; return the staging path."""
    from pfs_core.io.outputs import check_output_folder

    check_output_folder(out, command="synth", force=force)  # the one guard of every command's --out
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        probe = staging / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"--out {out}: cannot write there ({exc.strerror or exc}); choose a folder you can write to"
        ) from None
    return staging


def _rows(
    n: int, attrs: list[PatientAttributes], outcomes: list[Outcome], parts: np.ndarray, eta: np.ndarray,
    p_true: np.ndarray,
) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    cohort_rows, truth_rows, lesion_rows = [], [], []
    for i, (a, o) in enumerate(zip(attrs, outcomes, strict=True)):
        pid = patient_id(i, n)
        values: dict[str, str] = {
            ID_COLUMN: pid,
            PET_COLUMN: f"images/{pid}_pet.nii.gz",
            CT_COLUMN: f"images/{pid}_ct.nii.gz",
            ORGANS_COLUMN: f"images/{pid}{ORGAN_MASKS_SUFFIX}",
            "sex": a.sex,
            "primary_site": a.primary_site,
            "prrt_cycles": str(o.prrt_cycles),
            TIME_COLUMN: _fmt(o.pfs_months, 2),
            EVENT_COLUMN: str(o.progressed),
        }
        for name, value in a.labs.items():
            values[name] = "" if name in o.missing else _fmt(value, DECIMALS[name])
        cohort_rows.append([values[c] for c in SYNTH_COHORT_COLUMNS])
        b = a.burden
        truth_rows.append([
            pid, _fmt(float(p_true[i]), 6), _fmt(float(eta[i]), 6), _fmt(float(parts[i, 0]), 6),
            _fmt(float(parts[i, 1]), 6), _fmt(float(parts[i, 2]), 6), str(b.n_lesions), str(b.n_sstr_negative),
            _fmt(b.volume_ml, 2), _fmt(b.liver_tumour_fraction, 4), _fmt(b.mean_suv, 2),
            "" if o.short_pfs_observed is None else str(o.short_pfs_observed),
            _fmt(b.negative_volume_ml, 2), _fmt(b.positive_tlr, 3), _fmt(a.anatomy.suv_of("liver"), 2),
            _fmt(b.positive_volume_ml, 2), _fmt(b.necrotic_fraction, 4), _fmt(b.ct_visible_volume_ml, 2),
            _fmt(a.anatomy.liver_volume_ml, 1), str(b.n_liver_lesions), str(int(a.ppi)),
        ])
        off = np.asarray(a.anatomy.offset)
        for les in a.lesions:
            c = np.asarray(les.centre) + off
            lesion_rows.append([
                pid, str(les.label), les.site, _fmt(float(c[0]), 2), _fmt(float(c[1]), 2), _fmt(float(c[2]), 2),
                _fmt(les.volume_ml, 3), _fmt(les.suv_mean, 2), str(int(les.sstr_negative)), _fmt(les.tlr, 3),
                _fmt(les.necrotic_fraction, 4), str(int(les.ct_visible)),
            ])
    return cohort_rows, truth_rows, lesion_rows


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round(v) for v in value]
    return value


def simulate_cohort(
    n: int,
    seed: int,
    *,
    out_dir: str | Path,
    signal: Signal | None = None,
    strength: float = DEFAULT_STRENGTH,
    images: bool = True,
    workers: int | None = None,
    force: bool = False,
    options: SimOptions | None = None,
    execution: Execution | None = None,
) -> dict[str, Any]:
    """Simulate ``n`` patients with ``seed`` and write them to ``out_dir``.

    Writes ``cohort.csv``, ``ground_truth.csv``, ``lesions.csv``, ``summary.json``
    and (with ``images``) ``images/<id>_{ct,pet,lesions,organs}.nii.gz``. Output
    is byte-identical for the same arguments whatever ``execution``/``workers``; an existing
    non-empty ``out_dir`` is replaced only with ``force``. Returns the summary
    (as written to summary.json) plus ``wall_time_s``. Raises UsageError on bad input.

    ``execution``: where the images render and the reference population is drawn (:mod:`pfs_core.execution`:
    backend, jobs, Ray address); ``workers=N``: the same as ``Execution(jobs=N)`` (local processes). Neither:
    :func:`default_workers` local processes. On a Ray cluster (``address``) the workers write the images into
    ``out_dir``'s staging folder beside it, so it must be on a file system every node sees.
    """
    from pfs_core.io.outputs import write_marker  # here: render workers import this module

    t0 = time.perf_counter()
    signal = signal or Signal()
    options = options or SimOptions()
    _check_args(n, float(strength))
    execution = resolve_execution(execution, workers)
    seed = int(seed)
    if seed < 0:
        raise UsageError(f"--seed must be >= 0 (got {seed}); e.g. --seed 2026")
    n = int(n)
    out = Path(out_dir)
    staging = _prepare_output(out, force)
    try:
        with _ray_session(execution, needed=images):
            summary = _write_cohort(staging, n, seed, signal, float(strength), images, options, execution)
        write_marker(staging, command="synth")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**summary, "wall_time_s": time.perf_counter() - t0}


def _write_cohort(staging: Path, n: int, seed: int, signal: Signal, strength: float, images: bool,
                  options: SimOptions, execution: Execution) -> dict[str, Any]:
    """Write the tables, summary.json and (with ``images``) the images into ``staging``; return the summary."""
    ref = reference_summary(signal, strength, options=options, execution=execution)
    streams = patient_streams(seed, n)
    attrs = [draw_attributes(s[0], options) for s in streams]
    raw = np.array([a.raw for a in attrs], dtype=float).reshape(n, 3)
    z = (raw - ref["mean"]) / ref["sd"]
    parts = contributions(z, signal, strength)
    eta = ref["intercept"] + parts.sum(axis=1)
    p_true = np.asarray(p_short_pfs(eta), dtype=float)
    outcomes = [draw_outcome(np.random.default_rng(s[1]), float(e), MISSING_RATE) for s, e in zip(streams, eta, strict=True)]
    cohort_rows, truth_rows, lesion_rows = _rows(n, attrs, outcomes, parts, eta, p_true)
    (staging / "cohort.csv").write_text(_csv_text(SYNTH_COHORT_COLUMNS, cohort_rows), encoding="utf-8")
    (staging / "ground_truth.csv").write_text(_csv_text(GROUND_TRUTH_COLUMNS, truth_rows), encoding="utf-8")
    (staging / "lesions.csv").write_text(_csv_text(LESION_COLUMNS, lesion_rows), encoding="utf-8")
    summary = _summary(n, seed, signal, strength, ref, attrs, outcomes, p_true, images, options)
    (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if images:
        img_dir = staging / "images"
        img_dir.mkdir()
        _render(render_tasks(streams, img_dir, options, execution.jobs), n, execution)
    return summary


def _summary(
    n: int, seed: int, signal: Signal, strength: float, ref: dict[str, Any], attrs: list[PatientAttributes],
    outcomes: list[Outcome], p_true: np.ndarray, images: bool, options: SimOptions,
) -> dict[str, Any]:
    labels = np.array([-1 if o.short_pfs_observed is None else o.short_pfs_observed for o in outcomes])
    defined = labels >= 0
    y = labels[defined]
    bayes = None
    if defined.any() and 0 < y.sum() < len(y):
        from sklearn.metrics import roc_auc_score  # here: render workers import this package without sklearn

        bayes = float(roc_auc_score(y, p_true[defined]))  # None when only one class is labelled
    return _round({
        "simulator_version": SIMULATOR_VERSION,
        "n": n,
        "seed": seed,
        "images": images,
        "signal": signal.as_dict(),
        "strength": strength,
        "default_strength": DEFAULT_STRENGTH,
        "intercept": ref["intercept"],
        "weibull_shape": WEIBULL_SHAPE,
        "target_prevalence": TARGET_PREVALENCE,
        "expected_prevalence": float(p_true.mean()),
        "observed_prevalence": float(y.mean()) if len(y) else None,
        "n_label_defined": int(defined.sum()),
        "censored_fraction": float(np.mean([o.progressed == 0 for o in outcomes])),
        "censored_before_12_months_fraction": float(np.mean(~defined)),
        "bayes_auroc": bayes,
        "reference_expected_bayes_auroc": ref["expected_bayes_auroc"],
        "options": options.as_dict(),
        **physiology_summary(attrs),
        "standardisation": {"mean": [float(v) for v in ref["mean"]], "sd": [float(v) for v in ref["sd"]]},
        "organ_labels": {str(k): v for k, v in ORGAN_LABELS.items()},
    })


def _quantiles(values: list[float], qs: dict[str, float]) -> dict[str, float | None]:
    arr = np.asarray(values, dtype=float)
    return {k: (float(np.quantile(arr, q)) if len(arr) else None) for k, q in qs.items()}


def physiology_summary(attrs: list[PatientAttributes]) -> dict[str, Any]:
    """Disease figures a reader checks against treated PRRT cohorts (docs/simulator.md)."""
    burden = [a.burden for a in attrs]
    negative = [b for b in burden if b.n_sstr_negative > 0]
    positive_tlr = [les.tlr for a in attrs for les in a.lesions if not les.sstr_negative]
    return {
        "patients_with_sstr_negative_fraction": float(np.mean([b.n_sstr_negative > 0 for b in burden])),
        "sstr_negative_lesions_per_affected_patient": _quantiles([b.n_sstr_negative for b in negative],
                                                                 {"median": 0.5, "max": 1.0}),
        "sstr_negative_volume_ml_affected": _quantiles([b.negative_volume_ml for b in negative],
                                                       {"median": 0.5, "p90": 0.9}),
        "mean_lesions_per_patient": float(np.mean([b.n_lesions for b in burden])),
        "patients_with_liver_lesions_fraction": float(np.mean([b.n_liver_lesions > 0 for b in burden])),
        "liver_tumour_fraction": _quantiles([b.liver_tumour_fraction for b in burden],
                                            {"median": 0.5, "p75": 0.75, "p95": 0.95, "max": 1.0}),
        "liver_volume_ml": _quantiles([a.anatomy.liver_volume_ml for a in attrs], {"p5": 0.05, "median": 0.5, "p95": 0.95}),
        "lesion_tumour_to_liver_ratio": _quantiles(positive_tlr, {"median": 0.5, "p90": 0.9, "p99": 0.99, "max": 1.0}),
        "patients_with_necrotic_lesion_fraction": float(np.mean([b.necrotic_fraction > 0 for b in burden])),
        "ct_occult_lesion_fraction": float(np.mean([not les.ct_visible for a in attrs for les in a.lesions])),
        "ppi_fraction": float(np.mean([a.ppi for a in attrs])),
    }
