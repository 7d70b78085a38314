"""Model comparison at cohort level: read benchmark outputs, put them beside the published figures,
and explain a bundle over a cohort (modality contributions, fused-feature embedding).

Benchmark outputs are the folders written by ``python -m pfs_core benchmark --out``
(``results.json``, ``oof_predictions.csv``): the shipped ones under ``results/``
and those of background runs under ``runs/<id>/results`` (:mod:`pfs_core.runs`).
Curves use the out-of-fold (OOF) probability averaged over repeats, as the
benchmark's own figures do; the outcome per patient comes from
``oof_predictions.csv`` when it carries ``pfs_months``/``progressed``, else from the
cohort table named in ``results.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pfs_core import schema
from pfs_core.errors import InputError, UsageError
from pfs_core.metrics import short_pfs_label
from pfs_core.published import published

if TYPE_CHECKING:
    from pfs_core.bundle import Bundle
    from pfs_core.train import CohortData

METRIC_COLUMNS: dict[str, str] = {"auroc": "AUROC", "auprc": "AUPRC", "brier": "Brier", "c_index": "C-index"}
OUTCOME_LABELS: dict[float, str] = {1.0: "short PFS (≤ 12 months)", 0.0: "long PFS (> 12 months)"}
NO_LABEL = "censored ≤ 12 months (no label)"
#: Extra columns of ``modality_contributions(..., with_values=True)``: prediction with all / no modalities.
VALUE_COLUMNS: tuple[str, str] = ("probability", "reference_probability")


# ----------------------------------------------------------------------------- finding and reading results


@dataclass(frozen=True)
class ResultsSource:
    """A benchmark output folder on disk; ``origin`` is "shipped" or "run"."""

    folder: Path
    origin: str
    label: str


def find_results(shipped: Path, runs_dir: Path) -> list[ResultsSource]:
    """Shipped results (``shipped/results.json`` and ``shipped/*/results.json``), then finished runs, newest first."""
    from pfs_core.runs import FINISHED, list_runs, run_status

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
    def simulated(self) -> bool | None:
        return self.doc.get("simulated")


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
    bases = (Path.cwd(), folder.parent, folder.parent.parent, Path(__file__).resolve().parents[1])
    candidates = [Path(cohort)] if Path(cohort).is_absolute() else [base / cohort for base in bases]
    return next((path.resolve() for path in candidates if path.is_file()), None)


def _outcomes(folder: Path, doc: dict[str, Any], oof: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    columns = [schema.ID_COLUMN, schema.TIME_COLUMN, schema.EVENT_COLUMN]
    if {schema.TIME_COLUMN, schema.EVENT_COLUMN} <= set(oof.columns):
        return oof[columns].drop_duplicates(schema.ID_COLUMN).reset_index(drop=True), "oof_predictions.csv"
    path = _find_cohort(folder, doc)
    if path is not None:
        table = pd.read_csv(path, dtype={schema.ID_COLUMN: str})
        if set(columns) <= set(table.columns):
            return table[columns].reset_index(drop=True), str(path)
    return None, (f"outcomes not found: oof_predictions.csv has no {schema.TIME_COLUMN}/{schema.EVENT_COLUMN} "
                  f"columns and the cohort table {doc.get('cohort_csv') or '(not named)'} is not on this machine")


def metrics_table(output: BenchmarkOutput) -> pd.DataFrame:
    """One row per model: inputs, this benchmark's mean ± sd per metric, and the published AUROC/AUPRC."""
    rows = []
    for name, metrics in output.doc.get("metrics", {}).items():
        info = output.doc.get("models", {}).get(name, {})
        ref = published(name)
        row = {"model": name, "inputs": "+".join(info.get("inputs", []))}
        for key, label in METRIC_COLUMNS.items():
            row[label] = _fmt(metrics.get(key, {}))
        row["published AUROC"] = str(ref.auroc) if ref.auroc else "—"
        row["published AUPRC"] = str(ref.auprc) if ref.auprc else "—"
        row["published note"] = ref.note
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(stat: dict[str, Any]) -> str:
    mean, sd = stat.get("mean"), stat.get("sd")
    if mean is None or not np.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {sd or 0.0:.3f}"


# ----------------------------------------------------------------------------- curves from OOF predictions


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


# ----------------------------------------------------------------------------- a bundle over a cohort


def load_cohort_for_bundle(bundle: Bundle, cohort_csv: str | Path, *, cache_dir: Path | None = None,
                           image_root: Path | None = None) -> CohortData:
    """The usable rows of ``cohort_csv`` as model input for ``bundle`` (bad rows skipped; outcome optional)."""
    from pfs_core.cohort_check import good_cohort_csv, validate_cohort
    from pfs_core.train import load_cohort_data

    report = validate_cohort(cohort_csv, check_images=bundle.spec.uses_images, require_outcome=False,
                             image_root=image_root)
    with good_cohort_csv(report) as path:
        return load_cohort_data(path, preprocess=bundle.preprocess, need_images=bundle.spec.uses_images,
                                cache_dir=cache_dir, require_outcome=False)


def sample_rows(n_total: int, n_sample: int, *, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random sample of at most ``n_sample`` of ``n_total`` rows."""
    rng = np.random.default_rng(seed)
    if n_sample >= n_total:
        return np.arange(n_total)
    return np.sort(rng.choice(n_total, size=n_sample, replace=False))


def modality_contributions(bundle: Bundle, data: CohortData, *, n_sample: int = 30, seed: int = 0,
                           device: Any = None, with_values: bool = False) -> pd.DataFrame:
    """Exact modality Shapley values (probability space) of a seeded sample of patients.

    One row per sampled patient: ``patient_id`` and one column per modality of the
    model ("lab", "pet", "ct"); the cohort-level importance is the mean of the
    absolute values per column (:func:`mean_abs_contributions`). The game is that of
    :func:`pfs_core.explain.shapley.modality_shapley` (absent PET/CT = the learned
    "missing" embedding, absent labs = all labs missing, i.e. imputed). Fusion
    networks: each fold model embeds every patient's inputs once and only the
    fusion head is evaluated per coalition (same numbers, about 2^m times fewer
    image passes); scikit-learn models: :func:`modality_shapley` per patient.
    With ``with_values`` two more columns (:data:`VALUE_COLUMNS`): ``probability`` (every
    modality present: the model's prediction) and ``reference_probability`` (every
    modality absent); per row the contributions sum to their difference.
    """
    from pfs_core.explain.shapley import exact_shapley, modality_shapley
    from pfs_core.train import resolve_device

    torch_device = resolve_device(device)
    rows = sample_rows(len(data), n_sample, seed=seed)
    players = list(bundle.spec.modalities)
    if bundle.members[0].net is None:
        games = [modality_shapley(bundle, data.subset([i]), device=torch_device) for i in rows]
        values = [game.contributions for game in games]
        full, empty = [g.full_value for g in games], [g.empty_value for g in games]
    else:
        coalition_probs = _coalition_probabilities(bundle, data.subset(rows), torch_device)
        values = [exact_shapley(players, _patient_value(coalition_probs, j)) for j in range(len(rows))]
        full, empty = list(coalition_probs[frozenset(players)]), list(coalition_probs[frozenset()])
    table = pd.DataFrame(values, columns=players)
    table.insert(0, schema.ID_COLUMN, [str(data.patient_ids[i]) for i in rows])
    if with_values:
        table[VALUE_COLUMNS[0]], table[VALUE_COLUMNS[1]] = np.asarray(full, float), np.asarray(empty, float)
    return table


def _patient_value(coalition_probs: dict[frozenset[str], np.ndarray], j: int) -> Callable[[frozenset[str]], float]:
    """The value function of patient ``j``: coalition → ensemble probability."""
    return lambda coalition: float(coalition_probs[coalition][j])


def _coalition_probabilities(bundle: Bundle, data: CohortData, device: Any,
                             batch_size: int = 16) -> dict[frozenset[str], np.ndarray]:
    """Ensemble probability (N,) of every coalition of modalities, from one embedding pass per fold model."""
    from itertools import combinations

    import torch

    from pfs_core.train import torch_inputs

    players = list(bundle.spec.modalities)
    coalitions = [frozenset(c) for k in range(len(players) + 1) for c in combinations(players, k)]
    totals = {c: np.zeros(len(data)) for c in coalitions}
    absent_labs = pd.DataFrame([dict.fromkeys(data.labs.columns)], columns=data.labs.columns)
    for member in bundle.members:
        net = member.net.to(device).eval()  # type: ignore[union-attr]
        with torch.no_grad():
            absent: dict[str, Any] = {m: getattr(net, f"missing_{m}")[None, :] for m in ("pet", "ct") if m in players}
            absent_lab = None
            if "lab" in players:
                absent_lab = torch.from_numpy(member.tabular.transform(absent_labs)).to(device)  # type: ignore[union-attr]
                absent["lab"] = net.lab_branch(absent_lab)  # type: ignore[misc]
            for start in range(0, len(data), batch_size):
                idx = np.arange(start, min(start + batch_size, len(data)))
                inputs = torch_inputs(member, data, idx, device)
                present = net.embed(**inputs)
                for c in coalitions:
                    parts = {m: present[m] if m in c else absent[m].expand(len(idx), -1) for m in players}
                    lab = inputs["lab"] if "lab" in c else (
                        absent_lab.expand(len(idx), -1) if absent_lab is not None else None)
                    logits = net.fuse(parts, lab)[:, 0]
                    totals[c][idx] += torch.sigmoid(logits).cpu().numpy()
    return {c: total / len(bundle.members) for c, total in totals.items()}


def mean_abs_contributions(contributions: pd.DataFrame) -> dict[str, float]:
    """Mean |Shapley value| per modality column (probability points)."""
    skip = {schema.ID_COLUMN, *VALUE_COLUMNS}
    return {c: float(contributions[c].abs().mean()) for c in contributions.columns if c not in skip}


@dataclass
class Embedding:
    """2D map of the fused features: ``points`` (N, 2), ``labels`` (N,) outcome text, ``method``."""

    patient_ids: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    method: str
    n_features: int


def fused_features(bundle: Bundle, data: CohortData, *, device: Any = None, batch_size: int = 16) -> np.ndarray:
    """(N, K * m * embed_dim) concatenated branch embeddings (:meth:`FusionNet.embed`) of all K fold models."""
    import torch

    from pfs_core.train import resolve_device, torch_inputs

    if bundle.members[0].net is None:
        raise UsageError(f"model {bundle.name} is not a fusion network and has no fused features; "
                         "choose a bundle of a CNN or fusion model")
    torch_device = resolve_device(device)
    per_member = []
    for member in bundle.members:
        net = member.net.to(torch_device).eval()  # type: ignore[union-attr]
        chunks = []
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                idx = np.arange(start, min(start + batch_size, len(data)))
                parts = net.embed(**torch_inputs(member, data, idx, torch_device))
                chunks.append(torch.cat([parts[k] for k in ("lab", "pet", "ct") if k in parts], dim=1).cpu().numpy())
        per_member.append(np.concatenate(chunks))
    return np.concatenate(per_member, axis=1)


def outcome_labels(data: CohortData) -> np.ndarray:
    """(N,) text: short / long PFS, or no label (censored at or before 12 months, or outcome unknown)."""
    label = short_pfs_label(data.time_months, data.event)
    return np.array([OUTCOME_LABELS.get(float(v), NO_LABEL) for v in label])


def fused_embedding(bundle: Bundle, data: CohortData, *, method: str = "pca", seed: int = 0,
                    device: Any = None) -> Embedding:
    """2D PCA (default) or UMAP of the standardised fused features of every patient in ``data``."""
    from sklearn.preprocessing import StandardScaler

    if len(data) < 3:
        raise InputError("the embedding needs at least 3 patients")
    features = StandardScaler().fit_transform(fused_features(bundle, data, device=device))
    points = _project(features, method=method, seed=seed)
    return Embedding(patient_ids=np.asarray(data.patient_ids), points=points, labels=outcome_labels(data),
                     method=method, n_features=features.shape[1])


def _project(features: np.ndarray, *, method: str, seed: int) -> np.ndarray:
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(features)
    if method == "umap":
        import umap

        neighbours = max(2, min(15, len(features) - 1))
        return umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed).fit_transform(features)
    raise UsageError(f"unknown embedding method {method!r}; use 'pca' or 'umap'")
