"""Repeated stratified cross-validation: the study's model comparison.

Splits: scikit-learn ``RepeatedStratifiedKFold`` with a fixed seed over *all*
patients, stratified by short PFS / long PFS / censored at or before 12 months,
so every patient gets one out-of-fold (OOF) prediction per repeat and all models
see the same splits. Censored-early patients never enter binary training (no
label) but are scored and count in the C-index. Metrics per repeat are computed
on that repeat's pooled OOF predictions; the summary is mean ± sd over repeats.

Each model fitted on one split is one task of :mod:`pfs_core.execution` (:func:`fit_fold`), run in this
process, in local worker processes (``--jobs N``) or on Ray (``--backend ray``). A task's seed is a
function of the run seed and its split only (:func:`task_seed`), and every random draw of a fit is
seeded from it, so the out-of-fold predictions do not depend on where or in which order the tasks run.
Workers get the cohort once: local worker processes load it from its table and cache (:class:`CohortSource`)
or, for a cohort that exists only in memory, get it once when they start; on Ray it goes once into the object
store (:class:`~pfs_core.execution.InMemory`).
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.model_selection import RepeatedStratifiedKFold
from tqdm.auto import tqdm

from pfs_core.config import PreprocessConfig, TrainConfig, digest
from pfs_core.dataset import CohortData
from pfs_core.errors import InputError, UsageError
from pfs_core.execution import Execution, InMemory, Shared, Task, describe_tasks
from pfs_core.measure.features import load_cohort_with_lesions
from pfs_core.measure.settings import settings_of
from pfs_core.metrics import ALL_METRICS, all_metrics, mean_sd
from pfs_core.models.fitted import FittedModel
from pfs_core.models.registry import SKLEARN, ModelSpec
from pfs_core.progress import emit
from pfs_core.training.fit import fit_model

if TYPE_CHECKING:
    import torch


OOF_COLUMNS: tuple[str, ...] = ("patient_id", "repeat", "fold", "model", "probability")


@dataclass(frozen=True)
class Split:
    """One train/test split: row indices into the cohort."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray

    @property
    def seed_offset(self) -> int:
        """Offset added to the run seed for models fitted on this split (same for every model)."""
        return 1000 * self.repeat + self.fold


def strata(data: CohortData) -> np.ndarray:
    """(N,) int: 1 short PFS, 0 long PFS, 2 censored at or before 12 months (no binary label)."""
    label = data.label
    return np.where(np.isnan(label), 2, np.nan_to_num(label)).astype(int)


def make_splits(data: CohortData, *, folds: int, repeats: int, seed: int) -> list[Split]:
    """Repeated stratified k-fold splits over all patients (fixed ``seed``)."""

    y = strata(data)
    counts = np.bincount(y, minlength=3)
    if folds < 2 or repeats < 1:
        raise UsageError("--folds must be >= 2 and --repeats >= 1")
    if min(counts[0], counts[1]) < folds:
        raise UsageError(f"{folds} folds need at least {folds} short-PFS and {folds} long-PFS patients "
                         f"(cohort has {counts[1]} short, {counts[0]} long); use fewer folds or more patients")
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    with warnings.catch_warnings():  # fewer censored-early patients than folds is fine
        warnings.filterwarnings("ignore", message="The least populated class")
        pairs = list(splitter.split(np.zeros(len(y)), y))
    return [Split(i // folds, i % folds, train, test) for i, (train, test) in enumerate(pairs)]


def task_seed(seed: int, split: Split) -> int:
    """Seed of every model fitted on ``split``: the run seed + :attr:`Split.seed_offset`.

    A function of the task's identity only (run seed, repeat, fold), never of the process or the order the
    tasks run in; each fit seeds all its random draws from it (numpy, torch, scikit-learn, the validation
    split, augmentation), so local, ``--jobs N`` and Ray give the same out-of-fold predictions.
    """
    return seed + split.seed_offset


#: Fraction of one GPU a torch fold task declares on a CUDA device (four small fold networks share a card).
#: Not yet measured on a GPU (issue 26, item 3).
TORCH_GPU_FRACTION = 0.25


@dataclass(frozen=True)
class CohortSource:
    """A cohort that each worker loads itself from its table and the filled cache (a
    :class:`~pfs_core.execution.Shared` input): what :func:`pfs_core.commands.options.load_training_data`
    loaded in the driver, read again from ``cache_dir`` (preprocessed volumes, lesion measurements).

    ``ids_digest``: sha256 of the driver's patient ids, checked after loading (a cohort table changed since
    the driver read it fails the task instead of fitting on other patients).
    """

    cohort_csv: str
    preprocess: PreprocessConfig
    need_images: bool
    lesion_features: bool
    cache_dir: str
    ids_digest: str
    measurement: str  # TrainConfig.measurement

    @classmethod
    def of(cls, data: CohortData, cohort_csv: str | Path, *, need_images: bool, lesion_features: bool,
           cache_dir: Path | None, measurement: str) -> CohortSource | None:
        """The source of ``data`` read from ``cohort_csv``; None without a cache (workers would preprocess
        the whole cohort again: the data then travels once per worker instead)."""
        if cache_dir is None:
            return None
        return cls(str(Path(cohort_csv).resolve()), data.preprocess, need_images, lesion_features and need_images,
                   str(Path(cache_dir).resolve()), ids_digest(data.patient_ids), measurement)

    def key(self) -> str:
        return (f"cohort:{self.cohort_csv}|{digest(self.preprocess)}|images={self.need_images}"
                f"|lesions={self.lesion_features}|{self.measurement}|{self.cache_dir}|{self.ids_digest}")

    def load(self) -> CohortData:
        data = load_cohort_with_lesions(self.cohort_csv, preprocess=self.preprocess, need_images=self.need_images,
                                        lesions=self.lesion_features, cache_dir=Path(self.cache_dir),
                                        settings=settings_of(self.measurement))
        if ids_digest(data.patient_ids) != self.ids_digest:
            raise InputError(f"{self.cohort_csv}: the cohort table changed while the run was going on "
                             "(a worker read other patients); run the command again")
        return data


def ids_digest(patient_ids: Sequence[Any] | np.ndarray) -> str:
    """sha256 of the patient ids in order (what a worker's cohort must match)."""
    return hashlib.sha256("\n".join(str(p) for p in patient_ids).encode()).hexdigest()


_current: tuple[Execution, Shared | None] = (Execution(), None)


@contextmanager
def executing(execution: Execution, source: Shared | None = None) -> Iterator[None]:
    """Run the :func:`cross_validate` calls inside the ``with`` block (that pass no ``execution``) on
    ``execution``, the workers loading the cohort from ``source`` (e.g. ``train`` → ``train_bundle``)."""
    global _current
    previous = _current
    _current = (execution, source)
    try:
        yield
    finally:
        _current = previous


@dataclass
class CrossValidation:
    """OOF predictions (columns :data:`OOF_COLUMNS`) and, when kept, the fitted fold models.

    ``epochs``: per model, the epoch each split's network kept (:attr:`FittedModel.best_epoch`),
    keyed by (repeat, fold); None for a scikit-learn model. ``task_seconds``: seconds of each task (one
    model fitted on one split and predicting its test rows), in task order; ``execution``: where they ran.
    """

    oof: pd.DataFrame
    models: dict[str, list[FittedModel]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    epochs: dict[str, dict[tuple[int, int], int | None]] = field(default_factory=dict)
    task_seconds: list[float] = field(default_factory=list)
    execution: dict[str, Any] = field(default_factory=dict)

    def best_epoch(self, model: str) -> list[list[int | None]] | None:
        """[[kept epoch per fold] per repeat] of ``model``; None for a model without epochs."""
        kept = self.epochs.get(model, {})
        if all(epoch is None for epoch in kept.values()):
            return None
        repeats = sorted({repeat for repeat, _ in kept})
        return [[kept[(repeat, fold)] for fold in sorted(f for r, f in kept if r == repeat)] for repeat in repeats]


def fit_fold(data: CohortData, spec: ModelSpec, train_rows: np.ndarray, test_rows: np.ndarray, *,
             config: TrainConfig, seed: int, device: Any, progress: bool, cache_dir: str | None,
             keep_model: bool) -> dict[str, Any]:
    """One task: fit ``spec`` on ``train_rows`` of ``data`` and predict ``test_rows``.

    Returns {"probability": (n_test,) float, "seconds": wall seconds, "best_epoch", "model": the fitted model
    when ``keep_model``, else None}. ``device``: a torch device or its name (None: the default).
    """
    started = time.perf_counter()
    if isinstance(device, str):
        import torch

        device = torch.device(device)
    train, test = data.subset(train_rows), data.subset(test_rows)
    model = fit_model(spec, train, config=config, seed=seed, device=device, progress=progress,
                      cache_dir=Path(cache_dir) if cache_dir is not None else None)
    prob = np.asarray(model.predict_proba(test, device=device), dtype=float)
    return {"probability": prob, "seconds": time.perf_counter() - started, "best_epoch": model.best_epoch,
            "model": model if keep_model else None}


def fold_tasks(data: Any, specs: Sequence[ModelSpec], splits: Sequence[Split], *, config: TrainConfig, seed: int,
               device: torch.device | None, progress: bool, cache_dir: Path | None, keep_models: bool,
               in_process: bool, image_bytes: int) -> list[Task]:
    """One :class:`~pfs_core.execution.Task` per split × model (splits outer, models inner).

    ``data``: the cohort itself (in process) or a :class:`~pfs_core.execution.Shared` the workers load.
    Declared: 1 CPU; on CUDA a torch model also :data:`TORCH_GPU_FRACTION` of a GPU; memory (what Ray schedules
    by; the cohort itself sits once per node in its object store): the training subset's volumes, at most the
    cohort's, plus 800 MB for the libraries (a worker of the 116-patient benchmark peaked at 0.7-0.8 GB).
    """
    on_gpu = device is not None and device.type == "cuda"
    memory_mb = int(image_bytes / 2**20) + 800
    tasks = []
    for split in splits:
        for spec in specs:
            info = {"model": spec.name, "repeat": split.repeat, "fold": split.fold}
            tasks.append(Task(
                fit_fold, (data, spec, split.train, split.test),
                {"config": config, "seed": task_seed(seed, split),
                 "device": device if in_process else (str(device) if device is not None else None),
                 "progress": progress and in_process, "cache_dir": str(cache_dir) if cache_dir is not None else None,
                 "keep_model": keep_models},
                label=f"model {spec.name}, repeat {split.repeat}, fold {split.fold}", info=info, cpus=1.0,
                gpu=TORCH_GPU_FRACTION if on_gpu and spec.kind != SKLEARN else 0.0, memory_mb=memory_mb,
                cost=expected_cost(spec)))
    return tasks


def expected_cost(spec: ModelSpec) -> float:
    """Rough run time of one fold fit of ``spec`` relative to ``lab_rf`` (the order workers take tasks in).

    From the fit seconds of results/sim116 (one process): a network costs about the square of its input
    modalities (pet_cnn 1, lab_pet 3, lab_pet_ct 9 times lab_rf); the pretrained CT trunk as much again as
    its fusion network when not cached; ``classic`` with its penalty search about 3.
    """
    n = len(spec.modalities)
    if spec.kind == SKLEARN:
        return 3.0 if spec.pet_features else 1.0
    return float(n * n) + (1.0 if spec.pretrained_ct else 0.0)


def cross_validate(
    data: CohortData,
    specs: Sequence[ModelSpec],
    splits: Sequence[Split],
    *,
    config: TrainConfig,
    seed: int,
    device: torch.device | None = None,
    progress: bool = False,
    cache_dir: Path | None = None,
    keep_models: bool = False,
    execution: Execution | None = None,
    source: Shared | None = None,
    cancel: Any = None,
) -> CrossValidation:
    """Fit every model on every split's training rows and predict its test rows.

    ``execution``: where the tasks run (default: the one of :func:`executing`, else one after the other in
    this process); ``source``: how local worker processes get the cohort (a :class:`CohortSource`; default:
    ``data`` itself, shipped once per worker; on Ray always through the object store); ``cancel``: a ``threading.Event`` or callable (:func:`pfs_core.execution.run_tasks`).
    ``progress``: a tqdm bar on stderr. Independently, one :func:`pfs_core.progress.emit` line per
    task (stage "cross-validation"; the keys name the first task not yet finished) goes to the progress
    file when one is open.
    """
    if execution is None:
        execution, source = _current if source is None else (_current[0], source)
    in_process = execution.in_process
    # Ray: once into the object store (one copy per node, read by its workers without copying; the nodes need
    # not see the cohort's files). Local processes: each loads it from the cache (``source``), else gets it once.
    shared: Any = data if in_process else InMemory(data, f"cohort-{ids_digest(data.patient_ids)}") \
        if execution.backend == "ray" or source is None else source
    image_bytes = sum(a.nbytes for a in (data.pet, data.ct) if a is not None)
    tasks = fold_tasks(shared, specs, splits, config=config, seed=seed, device=device, progress=progress,
                       cache_dir=cache_dir, keep_models=keep_models, in_process=in_process,
                       image_bytes=image_bytes)
    total = len(tasks)
    finished: set[int] = set()
    labels = {task.label: i for i, task in enumerate(tasks)}
    bar = tqdm(total=total, desc="cross-validation", disable=not progress)

    def announce(done: int) -> None:
        """The progress line after ``done`` tasks: it names the first task still to finish."""
        following = next((t for i, t in enumerate(tasks) if i not in finished), None)
        if following is not None:
            bar.set_postfix(**following.info)
            emit("cross-validation", done, total, **following.info)
        else:
            emit("cross-validation", done, total)

    def step(done: int, _total: int, label: str) -> None:
        finished.add(labels[label])
        bar.update(1)
        announce(done)

    announce(0)
    outputs = execution.run(tasks, progress=step, cancel=cancel)
    bar.close()
    result = CrossValidation(oof=pd.DataFrame(columns=list(OOF_COLUMNS)))
    rows: list[pd.DataFrame] = []
    for task, out in zip(tasks, outputs, strict=True):
        name, repeat, fold = task.info["model"], task.info["repeat"], task.info["fold"]
        test = splits[[(s.repeat, s.fold) for s in splits].index((repeat, fold))].test
        result.seconds[name] = result.seconds.get(name, 0.0) + out["seconds"]
        result.task_seconds.append(out["seconds"])
        result.epochs.setdefault(name, {})[(repeat, fold)] = out["best_epoch"]
        rows.append(pd.DataFrame({"patient_id": data.patient_ids[test], "repeat": repeat, "fold": fold,
                                  "model": name, "probability": out["probability"]}))
        if keep_models:
            result.models.setdefault(name, []).append(out["model"])
    result.oof = pd.concat(rows, ignore_index=True) if rows else result.oof
    result.execution = {**execution.describe(), **describe_tasks(result.task_seconds)}
    return result


def repeat_metrics(data: CohortData, oof: pd.DataFrame) -> pd.DataFrame:
    """Metrics per (model, repeat) on that repeat's pooled OOF predictions (one row each)."""
    position = {pid: i for i, pid in enumerate(data.patient_ids)}
    records = []
    for (model, repeat), group in oof.groupby(["model", "repeat"], sort=False):
        idx = group["patient_id"].map(position).to_numpy(dtype=int)
        metrics = all_metrics(data.time_months[idx], data.event[idx], group["probability"].to_numpy(float))
        records.append({"model": model, "repeat": int(repeat), **metrics})
    return pd.DataFrame.from_records(records)


def summarise(per_repeat: pd.DataFrame, model_order: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{model: {metric: {"mean", "sd", "per_repeat"}}} over repeats."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in model_order:
        rows = per_repeat[per_repeat["model"] == name].sort_values("repeat")
        out[name] = {m: {**mean_sd(rows[m].to_list()), "per_repeat": [float(v) for v in rows[m]]}
                     for m in ALL_METRICS}
    return out


def mean_oof(oof: pd.DataFrame, model: str) -> pd.Series:
    """Per-patient OOF probability of ``model`` averaged over repeats (index patient_id)."""
    return oof[oof["model"] == model].groupby("patient_id", sort=False)["probability"].mean()


def training_oof_table(data: CohortData, oof: pd.DataFrame, *, threshold: float) -> pd.DataFrame:
    """Per training patient: fold, OOF probability, outcome, label and risk group (stored in a bundle)."""
    table = pd.DataFrame({"patient_id": oof["patient_id"].to_numpy(), "fold": oof["fold"].to_numpy(),
                          "oof_probability": oof["probability"].to_numpy(float)})
    position = {pid: i for i, pid in enumerate(data.patient_ids)}
    idx = table["patient_id"].map(position).to_numpy(int)
    table["pfs_months"] = data.time_months[idx]
    table["progressed"] = data.event[idx]
    table["short_pfs"] = data.label[idx]
    table["risk_group"] = np.where(table["oof_probability"] >= threshold, "high", "low")
    return table.sort_values("patient_id").reset_index(drop=True)
