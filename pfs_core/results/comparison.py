"""Model comparison at cohort level: read benchmark outputs and put them beside the published figures.

Benchmark outputs are the folders written by ``python -m pfs_core benchmark --out``
(``results.json``, ``oof_predictions.csv``): the shipped ones under ``results/``
and those of background runs under ``runs/<id>/results`` (:mod:`pfs_core.jobs.runs`).
Curves use the out-of-fold (OOF) probability averaged over repeats, as the
benchmark's own figures do; the outcome per patient comes from the folder's
``outcomes.csv`` (the benchmark writes it; older outputs may lack it), else from
``oof_predictions.csv`` when it carries ``pfs_months``/``progressed``, else from the
cohort table named in ``results.json``.

Outputs of a simulated cohort also carry reference rows (``references``: fixed yardsticks such
as the true probability, :mod:`pfs_core.training.references`) and paired ΔAUROC intervals
(``paired_delta_auroc``); older outputs lack both keys and read as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pfs_core import schema
from pfs_core.errors import InputError, UsageError
from pfs_core.io.cohort import read_cohort
from pfs_core.jobs.runs import FINISHED, list_runs, run_status
from pfs_core.metrics import paired_auroc_bootstrap, rank_auroc, short_pfs_label
from pfs_core.results.published import published

METRIC_COLUMNS: dict[str, str] = {"auroc": "AUROC", "auprc": "AUPRC", "brier": "Brier", "c_index": "C-index"}
#: The benchmarked patients' outcomes in an output folder: the same name as
#: :data:`pfs_core.training.benchmark.OUTCOMES_FILE` (not imported: that would load the training stack).
OUTCOMES_FILE = "outcomes.csv"


@dataclass(frozen=True)
class ResultsSource:
    """A benchmark output folder on disk; ``origin`` is "shipped" or "run"."""

    folder: Path
    origin: str
    label: str


def find_results(shipped: Path, runs_dir: Path) -> list[ResultsSource]:
    """Shipped results (``shipped/results.json`` and ``shipped/*/results.json``), then finished runs, newest first."""

    found = []
    for doc in [shipped / "results.json", *sorted(shipped.glob("*/results.json"))]:
        if doc.is_file():
            name = doc.parent.name if doc.parent != shipped else shipped.name
            found.append(ResultsSource(doc.parent, "shipped", f"shipped: {name}"))
    for run in list_runs(runs_dir):
        if run.kind == "benchmark" and run_status(run) == FINISHED and (run.output / "results.json").is_file():
            source = Path(str(run.meta.get("cohort_source", ""))).name or "cohort"
            found.append(ResultsSource(run.output, "run", f"run {run.run_id} ({source})"))
    return found


@dataclass
class BenchmarkOutput:
    """One benchmark output folder, read back.

    ``oof``: columns patient_id, repeat, fold, model, probability (one row per patient,
    repeat and model); ``outcomes``: patient_id, pfs_months, progressed (None when not found,
    ``outcome_note`` says why).
    """

    folder: Path
    doc: dict[str, Any]
    oof: pd.DataFrame
    outcomes: pd.DataFrame | None
    outcome_note: str

    @property
    def models(self) -> list[str]:
        return list(self.doc.get("metrics", {}))

    @property
    def references(self) -> list[str]:
        """Reference rows of this output (none in outputs written before they existed)."""
        return list(self.doc.get("references") or {})

    @property
    def simulated(self) -> bool | None:
        return self.doc.get("simulated")

    @property
    def repeats(self) -> int | None:
        """Repeats of the cross-validation (settings.repeats, else the length of a metric's per-repeat list)."""
        value = (self.doc.get("settings") or {}).get("repeats")
        if isinstance(value, int) and value > 0:
            return value
        for metrics in self.doc.get("metrics", {}).values():
            for stat in metrics.values():
                if isinstance(stat, dict) and isinstance(stat.get("per_repeat"), list):
                    return len(stat["per_repeat"])
        return None


def load_results(folder: str | Path) -> BenchmarkOutput:
    """Read ``results.json`` and ``oof_predictions.csv`` of a benchmark output folder."""
    folder = Path(folder)
    try:
        doc = json.loads((folder / "results.json").read_text())
        oof = pd.read_csv(folder / "oof_predictions.csv", dtype={schema.ID_COLUMN: str})
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}: not a complete benchmark output (results.json + oof_predictions.csv): "
                         f"{exc}; rerun 'python -m pfs_core benchmark --out {folder}'") from None
    outcomes, note = _outcomes(folder, doc, oof)
    return BenchmarkOutput(folder=folder, doc=doc, oof=oof, outcomes=outcomes, outcome_note=note)


def cohort_table_path(output: BenchmarkOutput) -> Path | None:
    """The cohort table named in results.json when it is on this machine (absolute, or relative to the
    working folder, the output's parents or the repository), else None."""
    return _find_cohort(output.folder, output.doc)


def _find_cohort(folder: Path, doc: dict[str, Any]) -> Path | None:
    cohort = str(doc.get("cohort_csv") or "")
    if not cohort:
        return None
    bases = (Path.cwd(), folder.parent, folder.parent.parent, Path(__file__).resolve().parents[2])
    candidates = [Path(cohort)] if Path(cohort).is_absolute() else [base / cohort for base in bases]
    return next((path.resolve() for path in candidates if path.is_file()), None)


def _outcomes(folder: Path, doc: dict[str, Any], oof: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    columns = [schema.ID_COLUMN, schema.TIME_COLUMN, schema.EVENT_COLUMN]
    shipped = folder / OUTCOMES_FILE
    if shipped.is_file():
        try:
            table = pd.read_csv(shipped, dtype={schema.ID_COLUMN: str})
        except (OSError, ValueError) as exc:
            return None, f"outcomes not readable: {shipped}: {exc}"
        if not set(columns) <= set(table.columns):
            return None, f"outcomes not readable: {shipped} lacks one of the columns {', '.join(columns)}"
        return table[columns].drop_duplicates(schema.ID_COLUMN).reset_index(drop=True), OUTCOMES_FILE
    if {schema.TIME_COLUMN, schema.EVENT_COLUMN} <= set(oof.columns):
        return oof[columns].drop_duplicates(schema.ID_COLUMN).reset_index(drop=True), "oof_predictions.csv"
    path = _find_cohort(folder, doc)
    if path is not None:
        try:
            table = read_cohort(path)
        except InputError as exc:
            return None, f"outcomes not readable: {exc}"
        return table[columns].reset_index(drop=True), str(path)
    return None, (f"outcomes not found: no {OUTCOMES_FILE} in {folder}, oof_predictions.csv has no "
                  f"{schema.TIME_COLUMN}/{schema.EVENT_COLUMN} columns and the cohort table "
                  f"{doc.get('cohort_csv') or '(not named)'} is not on this machine")


#: ``kind`` of a row of :func:`metrics_table`.
MODEL_ROW, REFERENCE_ROW = "model", "reference"


def metrics_table(output: BenchmarkOutput) -> pd.DataFrame:
    """One row per model: inputs, this benchmark's mean ± sd per metric, and the published AUROC/AUPRC;
    then one row per reference (``kind`` "reference", its description as the note). With one repeat
    there is no spread: the cells hold the value alone (see :attr:`BenchmarkOutput.repeats`)."""
    rows = []
    spread = output.repeats != 1
    for name, metrics in output.doc.get("metrics", {}).items():
        info = output.doc.get("models", {}).get(name, {})
        ref = published(name)
        row = {"kind": MODEL_ROW, "model": name, "inputs": "+".join(info.get("inputs", [])), **_cells(metrics, spread=spread)}
        row["published AUROC"] = str(ref.auroc) if ref.auroc else "—"
        row["published AUPRC"] = str(ref.auprc) if ref.auprc else "—"
        row["published note"] = ref.note
        rows.append(row)
    for name, info in (output.doc.get("references") or {}).items():
        rows.append({"kind": REFERENCE_ROW, "model": name, "inputs": "+".join(info.get("inputs", [])),
                     **_cells(info.get("metrics", {}), spread=spread), "published AUROC": "—", "published AUPRC": "—",
                     "published note": f"reference, not a model: {info.get('description', '')}"})
    return pd.DataFrame(rows)


def _cells(metrics: dict[str, Any], *, spread: bool = True) -> dict[str, str]:
    return {label: _fmt(metrics.get(key, {}), spread=spread) for key, label in METRIC_COLUMNS.items()}


PAIRED_COLUMNS = ("model", "comparator", "delta", "low", "high", "p_le_0")


def paired_delta_table(output: BenchmarkOutput) -> pd.DataFrame:
    """One row per (model, comparator) of ``paired_delta_auroc``: columns :data:`PAIRED_COLUMNS`
    (empty for outputs written before the paired intervals; missing values NaN)."""
    rows = [{"model": model, "comparator": comparator,
             **{k: _number(stat.get(k)) for k in ("delta", "low", "high", "p_le_0")}}
            for model, row in (output.doc.get("paired_delta_auroc") or {}).items()
            for comparator, stat in row.items()]
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _fmt(stat: dict[str, Any], *, spread: bool = True) -> str:
    """"0.712 ± 0.013" (mean ± sd over repeats); "0.712" with ``spread`` False (one repeat) or when the
    per-repeat list has a single value; "n/a" without a finite mean."""
    mean, sd = stat.get("mean"), stat.get("sd")
    if mean is None or not np.isfinite(mean):
        return "n/a"
    per_repeat = stat.get("per_repeat")
    if not spread or (isinstance(per_repeat, list) and len(per_repeat) == 1):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {sd or 0.0:.3f}"


def mean_oof_probability(output: BenchmarkOutput) -> pd.DataFrame:
    """(patients × models) OOF probability averaged over repeats."""
    return output.oof.pivot_table(index=schema.ID_COLUMN, columns="model", values="probability", aggfunc="mean")


def _need_outcomes(output: BenchmarkOutput) -> pd.DataFrame:
    if output.outcomes is None:
        raise InputError(output.outcome_note)
    return output.outcomes.set_index(schema.ID_COLUMN)


def curve_inputs(output: BenchmarkOutput) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per model ``(y_true, y_score)`` over the labelled patients (1 = short PFS), for ROC/PR/calibration."""
    probs = mean_oof_probability(output)
    outcomes = _need_outcomes(output).reindex(probs.index)
    label = short_pfs_label(outcomes[schema.TIME_COLUMN].to_numpy(float), outcomes[schema.EVENT_COLUMN].to_numpy())
    keep = ~np.isnan(label)
    return {m: (label[keep].astype(int), probs[m].to_numpy(float)[keep]) for m in output.models if m in probs}


def risk_groups(output: BenchmarkOutput, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pfs_months, progressed, group "high"/"low") with the median split of the repeat-averaged OOF probability."""
    probs = mean_oof_probability(output)
    if model not in probs:
        raise UsageError(f"model {model!r} is not in this benchmark; choose one of {', '.join(probs.columns)}")
    outcomes = _need_outcomes(output).reindex(probs.index)
    prob = probs[model].to_numpy(float)
    group = np.where(prob >= np.median(prob), "high", "low")
    return outcomes[schema.TIME_COLUMN].to_numpy(float), outcomes[schema.EVENT_COLUMN].to_numpy(int), group


RUN_DIFFERENCE_COLUMNS = ("model", "auroc_a", "auroc_b", "delta", "low", "high", "p_le_0", "n_patients")


def same_patients(a: BenchmarkOutput, b: BenchmarkOutput) -> bool:
    """True when both outputs predicted the same set of patients (ids) and both have outcomes."""
    if a.outcomes is None or b.outcomes is None:
        return False
    return set(a.oof[schema.ID_COLUMN].astype(str)) == set(b.oof[schema.ID_COLUMN].astype(str))


def run_difference(a: BenchmarkOutput, b: BenchmarkOutput, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paired AUROC difference (run a − run b) per model both runs benchmarked, on the same patients.

    Probabilities are the OOF ones averaged over repeats (as the curves); labels those of run a's outcomes;
    interval: 95 % patient bootstrap (:func:`pfs_core.metrics.paired_auroc_bootstrap`, ``seed``). Columns
    :data:`RUN_DIFFERENCE_COLUMNS`; empty when the runs did not use the same patients (:func:`same_patients`)
    or share no model.
    """
    if not same_patients(a, b):
        return pd.DataFrame(columns=list(RUN_DIFFERENCE_COLUMNS))
    probs_a, probs_b = mean_oof_probability(a), mean_oof_probability(b)
    probs_b = probs_b.reindex(probs_a.index)
    outcomes = _need_outcomes(a).reindex(probs_a.index)
    label = short_pfs_label(outcomes[schema.TIME_COLUMN].to_numpy(float), outcomes[schema.EVENT_COLUMN].to_numpy())
    keep = ~np.isnan(label)
    rows = []
    for model in [m for m in a.models if m in probs_a and m in b.models and m in probs_b]:
        pa, pb = probs_a[model].to_numpy(float), probs_b[model].to_numpy(float)
        stat = paired_auroc_bootstrap(label, pa, pb, n_boot=n_boot, seed=seed)
        y = label[keep].astype(int)
        rows.append({"model": model, "auroc_a": float(rank_auroc(y, pa[keep])), "auroc_b": float(rank_auroc(y, pb[keep])),
                     **stat, "n_patients": int(keep.sum())})
    return pd.DataFrame(rows, columns=list(RUN_DIFFERENCE_COLUMNS))
