"""The study's model comparison on one cohort: run it and write its results.

``run_benchmark`` cross-validates the chosen models on the same repeated
stratified splits (:mod:`pfs_core.training.cv`), adds the reference rows of
:mod:`pfs_core.training.references` on those splits when the simulator's ground truth
is given, and the paired ΔAUROC of every model against each reference and the best
single-modality model (patient bootstrap, :func:`pfs_core.metrics.paired_auroc_bootstrap`);
``write_results`` writes
``results.json``, ``results.md``, ``oof_predictions.csv``, ``outcomes.csv`` (the
cohort's patient_id, pfs_months, progressed, so that the folder alone redraws
its curves) and standalone plotly HTML figures (ROC, PR, calibration,
Kaplan–Meier by predicted risk group) into the output folder.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pfs_core import DISCLAIMER, schema
from pfs_core.config import TrainConfig, to_dict
from pfs_core.dataset import CohortData
from pfs_core.execution import Execution, Shared
from pfs_core.io.outputs import atomic_write, atomic_write_text, write_csv
from pfs_core.measure.case import measurement_record
from pfs_core.metrics import ALL_METRICS, logrank_p, paired_auroc_bootstrap
from pfs_core.models.device import resolve_device
from pfs_core.models.provenance import runtime_info
from pfs_core.models.registry import ModelSpec
from pfs_core.training.cv import (
    CrossValidation,
    cross_validate,
    make_splits,
    mean_oof,
    repeat_metrics,
    summarise,
)
from pfs_core.training.pretrain import describe
from pfs_core.training.references import ReferenceRun, run_references
from pfs_core.viz import curves

METRIC_LABELS = {"auroc": "AUROC", "auprc": "AUPRC", "brier": "Brier", "c_index": "C-index"}
#: Outcome of every benchmarked patient, next to oof_predictions.csv (read by :mod:`pfs_core.results.comparison`).
OUTCOMES_FILE = "outcomes.csv"
#: Patient-bootstrap resamples of the paired ΔAUROC intervals.
N_BOOT = 2000
#: Added to the run seed for the bootstrap draws: not the seed of the splits (the run seed) nor of any
#: fold model (run seed + 1000 · repeat + fold).
BOOTSTRAP_SEED_OFFSET = 1_000_000


@dataclass
class BenchmarkResult:
    """Everything ``write_results`` needs."""

    data: CohortData
    specs: tuple[ModelSpec, ...]
    cv: CrossValidation
    per_repeat: pd.DataFrame
    summary: dict[str, dict[str, dict[str, Any]]]
    settings: dict[str, Any]
    wall_time_s: float
    meta: dict[str, Any] = field(default_factory=dict)
    references: ReferenceRun | None = None
    reference_summary: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    best_single: str | None = None
    paired: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    bootstrap: dict[str, Any] = field(default_factory=dict)


def cohort_summary(data: CohortData) -> dict[str, Any]:
    """Counts of the cohort: labelled, short PFS, censored at or before 12 months."""
    label = data.label
    labelled = ~np.isnan(label)
    return {
        "n": len(data), "n_labelled": int(labelled.sum()), "n_short_pfs": int(np.nansum(label)),
        "n_long_pfs": int((label == 0).sum()), "n_censored_before_12_months": int((~labelled).sum()),
        "prevalence_short_pfs": float(np.nanmean(label)) if labelled.any() else float("nan"),
        "n_events": int(data.event.sum()),
        "n_pet_missing": int((~data.pet_present).sum()) if data.pet_present is not None else None,
        "n_ct_missing": int((~data.ct_present).sum()) if data.ct_present is not None else None,
    }


def run_benchmark(
    data: CohortData,
    specs: Sequence[ModelSpec],
    *,
    folds: int,
    repeats: int,
    seed: int,
    config: TrainConfig,
    device: str | None = None,
    progress: bool = False,
    cache_dir: Path | None = None,
    truth: pd.DataFrame | None = None,
    n_boot: int = N_BOOT,
    execution: Execution | None = None,
    source: Shared | None = None,
    cancel: Any = None,
) -> BenchmarkResult:
    """Cross-validate ``specs`` on ``data`` (same splits for all) and summarise per repeat.

    ``execution``, ``source``, ``cancel``: where the fold fits run and how workers get the cohort
    (:func:`pfs_core.training.cv.cross_validate`); the metrics do not depend on them.

    ``truth``: the simulator's ground truth (:func:`pfs_core.training.references.read_ground_truth`);
    with it, the reference rows are fitted first on the same splits (seconds, and a broken
    file fails before hours of training).
    """

    started = time.perf_counter()
    torch_device = resolve_device(device)
    splits = make_splits(data, folds=folds, repeats=repeats, seed=seed)
    fit = partial(cross_validate, data, specs, splits, config=config, seed=seed, device=torch_device,
                  progress=progress, cache_dir=cache_dir, execution=execution, source=source)
    if truth is None:
        references, cv = None, fit(cancel=cancel)
    elif execution is None or execution.in_process:
        references = run_references(data, splits, truth, config=config)
        cv = fit(cancel=cancel)
    else:  # the reference rows are fitted here while the workers start and take the first fold fits
        references, cv = _references_beside(fit, lambda: run_references(data, splits, truth, config=config),
                                            cancel=cancel)
    per_repeat = repeat_metrics(data, cv.oof)
    summary = summarise(per_repeat, [s.name for s in specs])
    settings = {"folds": folds, "repeats": repeats, "seed": seed, "device": str(torch_device),
                "include_post_baseline": config.include_post_baseline}
    result = BenchmarkResult(data=data, specs=tuple(specs), cv=cv, per_repeat=per_repeat, summary=summary,
                             settings=settings, wall_time_s=0.0, references=references)
    if references is not None and references.references:
        result.reference_summary = summarise(repeat_metrics(data, references.oof), references.names)
    add_paired_deltas(result, n_boot=n_boot, seed=seed + BOOTSTRAP_SEED_OFFSET)
    result.wall_time_s = time.perf_counter() - started
    return result


def _references_beside(fit: Callable[..., CrossValidation], references: Callable[[], ReferenceRun], *,
                       cancel: Any) -> tuple[ReferenceRun, CrossValidation]:
    """(references(), fit(cancel=...)): the cross-validation's driver in a thread, the references here; an error
    or interrupt here cancels the cross-validation (its workers stop) before it is raised."""
    stop = threading.Event()
    user = (cancel.is_set if hasattr(cancel, "is_set") else cancel) if cancel is not None else (lambda: False)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cross-validation") as side:
        running = side.submit(fit, cancel=lambda: stop.is_set() or bool(user()))
        try:
            return references(), running.result()
        except BaseException:
            stop.set()
            raise


def best_single_modality(specs: Sequence[ModelSpec], summary: dict[str, dict[str, dict[str, Any]]]) -> str | None:
    """The model with one input modality and the highest mean AUROC over repeats (None without one)."""
    single = [s.name for s in specs if len(s.modalities) == 1 and np.isfinite(summary[s.name]["auroc"]["mean"])]
    return max(single, key=lambda name: summary[name]["auroc"]["mean"], default=None)


def add_paired_deltas(result: BenchmarkResult, *, n_boot: int, seed: int) -> None:
    """Paired ΔAUROC of every model against each reference and the best single-modality model.

    Scored on the repeat-averaged OOF probability of the labelled patients (as the figures);
    every pair uses the same ``seed``, hence the same resampled patients.
    """
    started = time.perf_counter()
    result.best_single = best_single_modality(result.specs, result.summary)
    oof = result.cv.oof if result.references is None else pd.concat([result.cv.oof, result.references.oof])
    comparators = [*(result.references.names if result.references else []),
                   *([result.best_single] if result.best_single else [])]
    probs = {name: mean_oof(oof, name).reindex(result.data.patient_ids).to_numpy(float)
             for name in {*comparators, *(s.name for s in result.specs)}}
    label = result.data.label
    result.paired = {spec.name: {other: paired_auroc_bootstrap(label, probs[spec.name], probs[other], n_boot=n_boot,
                                                               seed=seed)
                                 for other in comparators if other != spec.name}
                     for spec in result.specs}
    result.bootstrap = {"n_boot": n_boot, "seed": seed, "level": 0.95, "n_patients": int((~np.isnan(label)).sum()),
                        "seconds": round(time.perf_counter() - started, 2)}


# ----------------------------------------------------------------------------- outputs


def risk_groups(data: CohortData, result: BenchmarkResult) -> dict[str, dict[str, Any]]:
    """Per model: median split of the repeat-averaged OOF probability and the log-rank p."""
    out = {}
    for spec in result.specs:
        prob = mean_oof(result.cv.oof, spec.name).reindex(data.patient_ids).to_numpy(float)
        threshold = float(np.median(prob))
        group = np.where(prob >= threshold, "high", "low")
        out[spec.name] = {"threshold": threshold, "n_high": int((group == "high").sum()),
                          "logrank_p": logrank_p(data.time_months, data.event, group)}
    return out


def write_figures(result: BenchmarkResult, out_dir: Path) -> tuple[list[str], str]:
    """Standalone plotly HTML figures via :mod:`pfs_core.viz.curves`; returns (files, note)."""
    data = result.data
    label = data.label
    keep = ~np.isnan(label)
    probs = {s.name: mean_oof(result.cv.oof, s.name).reindex(data.patient_ids).to_numpy(float) for s in result.specs}
    pairs = {name: (label[keep].astype(int), p[keep]) for name, p in probs.items()}
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures = {"roc.html": curves.roc_figure(pairs), "pr.html": curves.pr_figure(pairs),
               "calibration.html": curves.calibration_figure(pairs, n_bins=5),
               "decision_curve.html": curves.decision_curve_figure(pairs)}
    for name, prob in probs.items():
        group = np.where(prob >= np.median(prob), "high", "low").tolist()
        fig, _ = curves.km_figure(data.time_months, data.event, group, highlight="high",
                                  title=f"{name}: PFS by predicted risk group (median split of OOF probability)")
        figures[f"km_{name}.html"] = fig
    written = []
    for filename, fig in figures.items():
        atomic_write(fig_dir / filename, partial(fig.write_html, include_plotlyjs="directory", full_html=True))
        written.append(f"figures/{filename}")
    return written, "figures use the OOF probability averaged over repeats (labelled patients for ROC/PR/calibration)"


def results_json(result: BenchmarkResult, *, groups: dict[str, Any], figures: list[str], note: str) -> dict[str, Any]:
    """The JSON document of ``results.json``."""
    return {
        "disclaimer": DISCLAIMER,
        **result.meta,
        "settings": result.settings,
        "cohort": cohort_summary(result.data),
        "models": {s.name: {"label": s.label, "description": s.description, "inputs": list(s.modalities)}
                   for s in result.specs},
        "metrics": result.summary,
        "risk_groups": groups,
        "fit_seconds": {k: round(v, 1) for k, v in result.cv.seconds.items()},
        "wall_time_s": round(result.wall_time_s, 1),
        "execution": result.cv.execution,
        "figures": figures,
        "figures_note": note,
        **evaluation_json(result),
    }


def evaluation_json(result: BenchmarkResult) -> dict[str, Any]:
    """The keys of results.json beyond the model rows: references, paired ΔAUROC, kept epochs."""
    references = result.references
    notes = references.notes if references is not None else [
        f"none: no {schema.TRUTH_FILE} beside the cohort (not a simulated cohort)"]
    return {
        "references": {r.name: {**r.to_dict(), "metrics": result.reference_summary[r.name]}
                       for r in (references.references if references is not None else ())},
        "references_note": "; ".join(notes),
        "reference_fit_seconds": {k: round(v, 2) for k, v in (references.seconds if references else {}).items()},
        "best_single_modality": result.best_single,
        "paired_delta_auroc": result.paired,
        "paired_delta_auroc_method": {
            **result.bootstrap, "what": "AUROC(model) - AUROC(comparator) on the OOF probability averaged over "
            "repeats; interval: 2.5/97.5 percentiles of patient-bootstrap resamples of the labelled patients; "
            "p_le_0: share of resamples with a difference <= 0"},
        "best_epoch": {s.name: result.cv.best_epoch(s.name) for s in result.specs},
    }


def _fmt(stat: dict[str, float]) -> str:
    return "n/a" if not np.isfinite(stat["mean"]) else f"{stat['mean']:.3f} ± {stat['sd']:.3f}"


def results_markdown(doc: dict[str, Any]) -> str:
    """Human-readable ``results.md`` from the ``results.json`` document."""
    s, c = doc["settings"], doc["cohort"]
    lines = [
        "# Model comparison (repeated stratified cross-validation)", "",
        f"> {doc['disclaimer']}", "",
        f"- Command: `{doc.get('command', '')}`",
        f"- Cohort: `{doc.get('cohort_csv', '')}` — {c['n']} patients; {c['n_labelled']} with a binary label "
        f"({c['n_short_pfs']} short PFS ≤ 12 months, {c['n_long_pfs']} long); "
        f"{c['n_censored_before_12_months']} censored at or before 12 months (excluded from AUROC/AUPRC/Brier "
        "and from binary training, included in the C-index)."
        + (" **Simulated cohort.**" if doc.get("simulated") else ""),
        f"- Splits: {s['folds']} folds × {s['repeats']} repeats (RepeatedStratifiedKFold, seed {s['seed']}), "
        "the same splits for all models; metrics per repeat on pooled OOF predictions, mean ± sd over repeats.",
        f"- Post-baseline variable `prrt_cycles`: **{'INCLUDED (--include-post-baseline)' if s['include_post_baseline'] else 'excluded'}**.",
        f"- Device: {s['device']}; machine: {doc.get('machine', {}).get('summary', '')}; "
        f"wall time {doc['wall_time_s'] / 60:.1f} min ({doc['wall_time_s']:.0f} s); started {doc.get('started', '')}"
        + _execution_text(doc.get("execution") or {}) + ".",
        "",
        "| model | inputs | " + " | ".join(METRIC_LABELS[m] for m in ALL_METRICS) + " | KM log-rank p | fit time (s) |",
        "|---|---|" + "---|" * len(ALL_METRICS) + "---|---|",
    ]
    for name, metrics in doc["metrics"].items():
        inputs = "+".join(doc["models"][name]["inputs"])
        cells = " | ".join(_fmt(metrics[m]) for m in ALL_METRICS)
        p = doc["risk_groups"][name]["logrank_p"]
        lines.append(f"| `{name}` | {inputs} | {cells} | {p:.3g} | {doc['fit_seconds'].get(name, 0):.0f} |")
    lines += ["", "Brier: lower is better. KM: median split of the repeat-averaged OOF probability.", ""]
    sim = doc.get("simulator")
    if sim and sim.get("bayes_auroc") is not None:
        lines += [f"- Simulated cohort (synth seed {sim.get('seed')}, n {sim.get('n')}, signal {sim.get('signal')}): "
                  f"Bayes AUROC of the true risk on this cohort = {sim['bayes_auroc']:.3f} (the ceiling of any model).",
                  ""]
    pretrain = doc.get("pretraining")
    if pretrain:
        lines += [f"- CT pretraining (`lab_pet_ct_pretrained`): {pretrain['task']}; data: {pretrain['data']}.", ""]
    lines += reference_markdown(doc) + paired_markdown(doc)
    if doc["figures"]:
        lines += ["## Figures", "", *[f"- [{f}]({f})" for f in doc["figures"]], ""]
    lines += [f"_{doc['figures_note']}_", "", "## Environment", "", "```",
              json.dumps(doc.get("versions", {}), indent=1), "```", ""]
    return "\n".join(lines)


def _execution_text(execution: dict[str, Any]) -> str:
    """"; 48 fold fits as 2 local processes" (empty for results written before the execution layer)."""
    if not execution.get("backend"):
        return ""
    where = ("in one process" if execution["backend"] == "local" and execution.get("jobs") == 1
             else f"as {execution.get('jobs')} local processes" if execution["backend"] == "local"
             else "on a Ray cluster" if execution.get("ray_cluster") else f"on a local Ray instance of {execution.get('jobs')} CPUs")
    return f"; {execution.get('tasks', '?')} fold fits {where}"


def reference_markdown(doc: dict[str, Any]) -> list[str]:
    """The reference rows of ``results.md`` (metrics as for the models), or a line saying why there are none."""
    references = doc.get("references") or {}
    lines = ["## Reference rows", ""]
    if not references:
        return lines + [f"_{doc.get('references_note') or 'none'}_", ""]
    lines += ["Not models of the study: fixed yardsticks fitted on the same splits (simulated cohort only).", "",
              "| reference | inputs | " + " | ".join(METRIC_LABELS[m] for m in ALL_METRICS) + " | fit time (s) |",
              "|---|---|" + "---|" * len(ALL_METRICS) + "---|"]
    for name, ref in references.items():
        inputs = "+".join(ref["inputs"])
        cells = " | ".join(_fmt(ref["metrics"][m]) for m in ALL_METRICS)
        lines.append(f"| `{name}` | {inputs} | {cells} | {doc.get('reference_fit_seconds', {}).get(name, 0):.1f} |")
    lines += ["", *[f"- `{name}`: {ref['description']}"
                    + (f" Columns: {', '.join(ref['features'])}." if ref.get("features") else "")
                    + (f" Not in this cohort's truth: {', '.join(ref['missing_columns'])}."
                       if ref.get("missing_columns") else "") for name, ref in references.items()]]
    if doc.get("references_note"):
        lines.append(f"- {doc['references_note']}")
    return [*lines, ""]


def paired_markdown(doc: dict[str, Any]) -> list[str]:
    """The paired ΔAUROC table of ``results.md``: model × comparator, Δ [2.5 %, 97.5 %]."""
    paired = doc.get("paired_delta_auroc") or {}
    comparators = list(dict.fromkeys(c for row in paired.values() for c in row))
    if not comparators:
        return []
    method = doc.get("paired_delta_auroc_method", {})
    lines = ["## Paired ΔAUROC (model − comparator)", "",
             f"OOF probability averaged over repeats, {method.get('n_patients', '?')} labelled patients; 95 % "
             f"interval from {method.get('n_boot', '?')} patient-bootstrap resamples (seed {method.get('seed', '?')}). "
             f"Best single-modality model: `{doc.get('best_single_modality')}`.", "",
             "| model | " + " | ".join(f"vs `{c}`" for c in comparators) + " |", "|---|" + "---|" * len(comparators)]
    for model, row in paired.items():
        cells = [_fmt_delta(row[c]) if c in row else "—" for c in comparators]
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return [*lines, "", "Δ > 0: the model ranks patients better than the comparator.", ""]


def _fmt_delta(stat: dict[str, Any]) -> str:
    values = [stat.get(k) for k in ("delta", "low", "high")]
    if any(v is None or not np.isfinite(v) for v in values):
        return "n/a"
    return f"{values[0]:+.3f} [{values[1]:+.3f}, {values[2]:+.3f}]"


def outcomes_table(data: CohortData) -> pd.DataFrame:
    """patient_id, pfs_months, progressed of the benchmarked cohort (the content of ``outcomes.csv``)."""
    return pd.DataFrame({schema.ID_COLUMN: data.patient_ids, schema.TIME_COLUMN: data.time_months,
                         schema.EVENT_COLUMN: np.asarray(data.event).astype(int)})


def write_results(result: BenchmarkResult, out_dir: Path) -> dict[str, Any]:
    """Write results.json, results.md, oof_predictions.csv, outcomes.csv and figures/ into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Reference rows go into the same file (model column = reference name), so that the folder alone
    # recomputes their metrics too.
    oof = result.cv.oof if result.references is None else pd.concat([result.cv.oof, result.references.oof],
                                                                     ignore_index=True)
    oof = oof.copy()
    oof["include_post_baseline"] = result.settings["include_post_baseline"]
    # Full precision: probabilities of weak models can differ only past the sixth decimal, and metrics
    # recomputed from this file must equal those of results.json.
    write_csv(oof, out_dir / "oof_predictions.csv")
    write_csv(outcomes_table(result.data), out_dir / OUTCOMES_FILE)
    groups = risk_groups(result.data, result)
    figures, note = write_figures(result, out_dir)
    doc = results_json(result, groups=groups, figures=figures, note=note)
    atomic_write_text(out_dir / "results.json", json.dumps(clean_json(doc), indent=2, default=_json_default))
    atomic_write_text(out_dir / "results.md", results_markdown(doc))
    return doc


def benchmark_meta(*, command: str, cohort_csv: str, config: TrainConfig, preprocess: Any,
                   device: str, simulated: bool | None) -> dict[str, Any]:
    """Provenance block of results.json: command, config, environment, time stamps."""

    return {"command": command, "cohort_csv": cohort_csv, "simulated": simulated,
            "simulator": simulator_summary(cohort_csv),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "train_config": to_dict(config), "preprocess": to_dict(preprocess),
            "pretraining": describe(config.pretrain),
            "measurement": measurement_record(config.measurement) if config.lesion_features else None,
            **runtime_info(device)}


def simulator_summary(cohort_csv: str | Path) -> dict[str, Any] | None:
    """Seed, size, signal and Bayes AUROC from the simulator's ``summary.json`` next to the cohort, if any."""
    path = Path(cohort_csv).parent / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    keys = ("simulator_version", "n", "seed", "signal", "strength", "bayes_auroc", "observed_prevalence")
    return {k: summary.get(k) for k in keys} if isinstance(summary, dict) else None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def clean_json(value: Any) -> Any:
    """NaN/inf floats → None (strict JSON), recursively."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value
