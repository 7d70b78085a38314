"""Training of one registry model on one training set (a CV fold, or one fold of a bundle).

Everything a model sees comes from :class:`CohortData` (labs, outcome, and the
preprocessed PET/CT of :mod:`pfs_core.preprocess`). The lab transform is fitted on
the training rows given to :func:`fit_model` only; supervised fitting uses the
rows with a binary label (see :func:`pfs_core.metrics.short_pfs_label`).

Torch models: seeds fixed, AdamW, ``BCEWithLogitsLoss(pos_weight=n_neg/n_pos)``,
cosine learning-rate decay, a fixed number of epochs (no early stopping),
light augmentation (MONAI ``RandAffine``: rotations up to ``rotate_rad`` and shifts
up to ``translate_vox`` voxels, the same for PET and CT of a patient; intensity
scale jitter, plus an offset for CT; no left-right flip since anatomy is lateralised). CPU by
default with ``torch.set_num_threads(min(2, os.cpu_count()))``; CUDA when available.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pfs_core import schema
from pfs_core.config import PreprocessConfig
from pfs_core.errors import InputError
from pfs_core.metrics import short_pfs_label
from pfs_core.pretrain import PretrainConfig
from pfs_core.registry import SKLEARN, ModelSpec
from pfs_core.tabular import PET_FEATURE_COLUMNS, TabularParams, fit_lab_transform, pet_quantitative_features

if TYPE_CHECKING:
    import torch

    from pfs_core.nets import FusionNet


#: Model grid of the shipped models and the benchmark default: 12-mm voxels, 32×24×32 (384×288×384 mm,
#: the field of view of the 6-mm default), PET clipped at SUV 60 instead of 20 so that tumour-to-liver
#: ratios above ~3 (lesion SUV > 20 with a liver SUV of 5-9) are not flattened. Measured on the simulated
#: cohort: 8× fewer voxels than 64×48×64 lets the CNNs train 40 epochs within the time budget. The PET is
#: not smoothed again before the 12-mm grid: with the true lesion masks, the lesion-to-liver ratio read on the
#: grid keeps a Spearman correlation of 0.83 with the true one instead of 0.59 (docs/models.md).
MODEL_PREPROCESS = PreprocessConfig(spacing_mm=(12.0, 12.0, 12.0), shape=(32, 24, 32), pet_suv_max=60.0,
                                    pet_antialias=False)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of all models (stored in every bundle's config.json)."""

    epochs: int = 40
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-2
    channels: tuple[int, ...] = (8, 16, 32)
    strides: tuple[int, ...] = (2, 2, 2)
    embed_dim: int = 16
    hidden: int = 32
    dropout: float = 0.3
    modality_dropout: float = 0.2
    pet_quant: bool = True
    ct_quant: bool = True
    wide: bool = True
    wide_logistic: bool = True
    wide_search: bool = True
    validation_fraction: float = 0.2
    # A later epoch replaces epoch 0 (the logistic start) only if its held-out loss is this much lower
    # (nats): on ~15 held-out patients the lowest of 40 losses beats epoch 0 by chance (docs/models.md).
    min_improvement: float = 0.05
    # Stop after this many epochs without a kept one (0: train all epochs); later epochs only lost ranking
    # on the simulated cohorts (docs/models.md, benchmarks/epoch_selection.py).
    patience: int = 10
    augment: bool = True
    rotate_rad: float = 0.08
    translate_vox: float = 2.0
    intensity_jitter: float = 0.1
    pretrained_lr_factor: float = 0.3
    aux_weight: float = 0.5
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    rf_trees: int = 300
    rf_min_leaf: int = 3
    logistic_c: float = 0.3
    include_post_baseline: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
                                  if k != "pretrain"}
        return cls(**kwargs, pretrain=PretrainConfig(**data.get("pretrain", {})))

    def branch_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`pfs_core.nets.ImageBranch` (besides spatial_dims/in_channels)."""
        return {"channels": list(self.channels), "strides": list(self.strides), "embed_dim": self.embed_dim,
                "dropout": self.dropout}


# ----------------------------------------------------------------------------- data


@dataclass
class CohortData:
    """Model inputs and outcome of N patients (row i of every field is the same patient).

    ``pet``/``ct``: (N, D, H, W) float32 on the model grid in [0, 1] (PET = SUVbw /
    ``preprocess.pet_suv_max``; CT windowed), zeros where ``*_present`` is False;
    None when no model needs images. ``pet_suv_max_original`` (N,): SUVmax of the
    original PET before clipping (NaN without PET).
    """

    patient_ids: np.ndarray
    labs: pd.DataFrame
    time_months: np.ndarray
    event: np.ndarray
    preprocess: PreprocessConfig
    pet: np.ndarray | None = None
    ct: np.ndarray | None = None
    pet_present: np.ndarray | None = None
    ct_present: np.ndarray | None = None
    pet_suv_max_original: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.patient_ids)

    @property
    def label(self) -> np.ndarray:
        """(N,) 1.0 short PFS, 0.0 long, NaN censored at or before 12 months."""
        return short_pfs_label(self.time_months, self.event)

    def subset(self, index: Sequence[int] | np.ndarray) -> CohortData:
        idx = np.asarray(index, dtype=int)

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return CohortData(
            patient_ids=self.patient_ids[idx], labs=self.labs.iloc[idx].reset_index(drop=True),
            time_months=self.time_months[idx], event=self.event[idx], preprocess=self.preprocess,
            pet=take(self.pet), ct=take(self.ct), pet_present=take(self.pet_present), ct_present=take(self.ct_present),
            pet_suv_max_original=take(self.pet_suv_max_original),
        )

    def pet_features(self) -> pd.DataFrame:
        """(N, 5) quantitative PET features (:func:`pfs_core.tabular.pet_quantitative_features`)."""
        voxel_ml = self.preprocess.voxel_ml
        rows = []
        for i in range(len(self)):
            has_pet = self.pet is not None and self.pet_present is not None and bool(self.pet_present[i])
            original = self.pet_suv_max_original[i] if self.pet_suv_max_original is not None else None
            rows.append(pet_quantitative_features(
                self.pet[i] if has_pet else None,  # type: ignore[index]
                pet_suv_max=self.preprocess.pet_suv_max, voxel_ml=voxel_ml,
                suv_max_original=float(original) if original is not None and np.isfinite(original) else None))
        return pd.DataFrame(rows, columns=list(PET_FEATURE_COLUMNS))


def read_cohort(cohort_csv: str | Path, *, require_outcome: bool = True) -> pd.DataFrame:
    """Read and check a cohort table (columns of :data:`pfs_core.schema.COHORT_COLUMNS`).

    Without ``require_outcome`` (scoring new patients) pfs_months/progressed may be absent.
    """
    path = Path(cohort_csv)
    if not path.is_file():
        raise InputError(f"{path}: cohort file not found; pass the cohort.csv written by 'synth' or your own table")
    try:
        frame = pd.read_csv(path, dtype={schema.ID_COLUMN: str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: cannot read the cohort table ({exc}); give a UTF-8 CSV file") from None
    if not require_outcome:
        for column, default in ((schema.TIME_COLUMN, np.nan), (schema.EVENT_COLUMN, 0)):
            if column not in frame:
                frame[column] = default
        frame[schema.EVENT_COLUMN] = frame[schema.EVENT_COLUMN].fillna(0)
    required = [schema.ID_COLUMN, schema.TIME_COLUMN, schema.EVENT_COLUMN]
    missing = [c for c in required if c not in frame]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; the table needs {list(schema.COHORT_COLUMNS)}")
    if frame[schema.ID_COLUMN].duplicated().any():
        dup = frame.loc[frame[schema.ID_COLUMN].duplicated(), schema.ID_COLUMN].iloc[0]
        raise InputError(f"{path}: patient_id {dup!r} occurs more than once; make ids unique")
    bad = (frame[schema.TIME_COLUMN] < 0) | ~frame[schema.EVENT_COLUMN].isin([0, 1])
    if require_outcome:
        bad |= frame[schema.TIME_COLUMN].isna()
    if bad.any():
        row = frame.loc[bad, schema.ID_COLUMN].iloc[0]
        raise InputError(f"{path}: patient {row!r} needs pfs_months >= 0 and progressed 0 or 1; fix that row")
    for name in schema.LAB_COLUMNS:
        if name not in frame:
            frame[name] = np.nan
    return frame


def load_cohort_data(
    cohort_csv: str | Path,
    *,
    preprocess: PreprocessConfig,
    need_images: bool,
    cache_dir: Path | None = None,
    progress: bool = False,
    require_outcome: bool = True,
) -> CohortData:
    """Read the cohort table and, when ``need_images``, its preprocessed PET/CT (cached)."""
    frame = read_cohort(cohort_csv, require_outcome=require_outcome)
    data = CohortData(
        patient_ids=frame[schema.ID_COLUMN].to_numpy(dtype=str),
        labs=frame[list(schema.LAB_COLUMNS)].reset_index(drop=True),
        time_months=frame[schema.TIME_COLUMN].to_numpy(dtype=float),
        event=frame[schema.EVENT_COLUMN].to_numpy(dtype=int), preprocess=preprocess,
    )
    if need_images:
        _attach_images(data, frame, cohort_csv=Path(cohort_csv), cache_dir=cache_dir, progress=progress)
    return data


def _attach_images(data: CohortData, frame: pd.DataFrame, *, cohort_csv: Path, cache_dir: Path | None,
                   progress: bool) -> None:
    from pfs_core.preprocess import preprocess_cohort

    tensors = preprocess_cohort(cohort_csv, data.preprocess, cache_dir=cache_dir, progress=progress)
    position = {str(pid): i for i, pid in enumerate(tensors.patient_ids)}
    order = np.asarray([position[str(pid)] for pid in data.patient_ids], dtype=int)
    data.pet, data.ct = tensors.pet[order], tensors.ct[order]
    data.pet_present = np.asarray(tensors.has_pet, bool)[order]
    data.ct_present = np.asarray(tensors.has_ct, bool)[order]
    data.pet_suv_max_original = np.asarray(tensors.pet_suv_max, float)[order]


# ----------------------------------------------------------------------------- device / seeds


def cpu_threads() -> int:
    """CPU threads for torch: ``$PFS_CORE_THREADS`` if set, else ``min(2, os.cpu_count())``.

    On a machine whose cores are busy with other work, 1 thread can be several times
    faster than 2 (measured: a training step 0.65 s with 1 thread vs 2.5-11 s with 2
    at a load average of 3-4 on 2 cores).
    """
    env = os.environ.get("PFS_CORE_THREADS", "").strip()
    return max(1, int(env)) if env.isdigit() else min(2, os.cpu_count() or 1)


def resolve_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU (threads from :func:`cpu_threads`)."""
    import torch

    chosen = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if chosen.type == "cpu":
        torch.set_num_threads(cpu_threads())
    return chosen


def seed_everything(seed: int) -> None:
    """Seed numpy and torch; deterministic cuDNN."""
    import torch

    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


# ----------------------------------------------------------------------------- fitted model


@dataclass
class FittedModel:
    """One trained model (a CV fold, or one member of a bundle ensemble)."""

    spec: ModelSpec
    config: TrainConfig
    tabular: TabularParams | None
    net: FusionNet | None = None
    estimator: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, data: CohortData, *, device: torch.device | None = None,
                      batch_size: int = 16) -> np.ndarray:
        """(N,) probability of short PFS for every row of ``data``."""
        if self.spec.kind == SKLEARN:
            return self.estimator.predict_proba(sklearn_features(self.spec, data, self.tabular))[:, 1]
        return _predict_torch(self, data, device=device or resolve_device(), batch_size=batch_size)


def sklearn_features(spec: ModelSpec, data: CohortData, tabular: TabularParams | None) -> np.ndarray:
    """(N, F) input of the scikit-learn models: prepared labs (+ log1p PET features for ``classic``)."""
    parts = [tabular.transform(data.labs)] if tabular is not None else []
    if spec.pet_features:
        parts.append(np.log1p(data.pet_features().to_numpy(dtype=np.float64)).astype(np.float32))
    return np.hstack(parts)


def torch_inputs(model: FittedModel, data: CohortData, idx: np.ndarray,
                  device: torch.device) -> dict[str, torch.Tensor | None]:
    import torch

    spec = model.spec
    out: dict[str, torch.Tensor | None] = {"pet": None, "ct": None, "lab": None}
    if spec.use_lab and model.tabular is not None:
        out["lab"] = torch.from_numpy(model.tabular.transform(data.labs.iloc[idx])).to(device)
    for name in ("pet", "ct"):
        if getattr(spec, f"use_{name}"):
            volumes, present = getattr(data, name), getattr(data, f"{name}_present")
            if volumes is None or present is None:
                raise InputError(f"model {spec.name} needs {name.upper()} volumes; the cohort data has none")
            out[name] = torch.from_numpy(np.ascontiguousarray(volumes[idx][:, None])).to(device)
            out[f"{name}_present"] = torch.from_numpy(present[idx].astype(bool)).to(device)
    return out


def _predict_torch(model: FittedModel, data: CohortData, *, device: torch.device, batch_size: int) -> np.ndarray:
    import torch

    return torch.sigmoid(_torch_logits(model, data, device=device, batch_size=batch_size)).cpu().numpy().astype(float)


def _torch_logits(model: FittedModel, data: CohortData, *, device: torch.device, batch_size: int) -> torch.Tensor:
    """(N,) short-PFS logits of the network for every row of ``data`` (eval mode, batched)."""
    import torch

    assert model.net is not None
    net = model.net.to(device).eval()
    with torch.no_grad():
        logits = [net(**torch_inputs(model, data, np.arange(start, min(start + batch_size, len(data))), device))[:, 0]
                  for start in range(0, len(data), batch_size)]
    return torch.cat(logits) if logits else torch.zeros(0, device=device)


# ----------------------------------------------------------------------------- fitting


def fit_model(
    spec: ModelSpec,
    data: CohortData,
    *,
    config: TrainConfig,
    seed: int,
    device: torch.device | None = None,
    progress: bool = False,
    cache_dir: Path | None = None,
) -> FittedModel:
    """Fit ``spec`` on the training rows ``data`` (lab transform fitted on these rows only)."""
    started = time.perf_counter()
    tabular = fit_lab_transform(data.labs, include_post_baseline=config.include_post_baseline) \
        if spec.use_lab else None
    labelled = np.flatnonzero(~np.isnan(data.label))
    y = data.label[labelled]
    if len(np.unique(y)) < 2:
        raise InputError(f"model {spec.name}: the training set needs short- and long-PFS patients "
                         f"(has {int(y.sum())} short of {len(y)} labelled); use more patients or fewer folds")
    if spec.kind == SKLEARN:
        model = _fit_sklearn(spec, data.subset(labelled), tabular, config=config, seed=seed)
    else:
        model = _fit_torch(spec, data, labelled, tabular, config=config, seed=seed,
                           device=device or resolve_device(), progress=progress, cache_dir=cache_dir)
    model.info.update(n_train_rows=len(data), n_labelled=len(labelled), n_short=int(y.sum()),
                      fit_seconds=round(time.perf_counter() - started, 2))
    return model


def _fit_sklearn(spec: ModelSpec, data: CohortData, tabular: TabularParams | None, *, config: TrainConfig,
                 seed: int) -> FittedModel:
    from sklearn.ensemble import RandomForestClassifier

    x = sklearn_features(spec, data, tabular)
    y = data.label.astype(int)
    info: dict[str, Any] = {"n_features": int(x.shape[1])}
    if spec.pet_features:
        estimator, info["logistic"] = _classic_logistic(x, y, n_lab=tabular.n_features if tabular else 0,
                                                        config=config, seed=seed)
    else:
        estimator = RandomForestClassifier(
            n_estimators=config.rf_trees, min_samples_leaf=config.rf_min_leaf, max_features="sqrt",
            class_weight="balanced_subsample", random_state=seed % (2**31), n_jobs=1).fit(x, y)
    return FittedModel(spec=spec, config=config, tabular=tabular, estimator=estimator, info=info)


def _classic_logistic(x: np.ndarray, y: np.ndarray, *, n_lab: int, config: TrainConfig,
                      seed: int) -> tuple[Any, dict[str, Any]]:
    """The ``classic`` model: median imputation, then a logistic model of the labs and PET blocks.

    With ``config.wide_search`` the labs and the PET features get their own penalty
    weights (as the networks' wide path); the result is folded into a plain
    scikit-learn ``LogisticRegression`` so the bundle's skops file needs no custom type.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from pfs_core.block_logistic import fit_block_logistic

    impute = SimpleImputer(strategy="median", keep_empty_features=True).fit(x)
    if not config.wide_search:
        logistic = LogisticRegression(C=config.logistic_c, class_weight="balanced", max_iter=5000)
        pipeline = Pipeline([("impute", impute), ("scale", StandardScaler()), ("logistic", logistic)]).fit(x, y)
        return pipeline, {"kind": "L2 logistic regression", "C": config.logistic_c}
    sizes = tuple(n for n in (n_lab, x.shape[1] - n_lab) if n)
    fit = fit_block_logistic(impute.transform(x), y, sizes, seed=seed)
    return Pipeline([("impute", impute), ("logistic", fit.to_sklearn())]), {
        "kind": "L2 logistic regression, labs and PET penalty weights and C by inner 5-fold CV",
        "C": fit.c, "block_weights": list(fit.weights), "blocks": ["labs", "pet"][-len(sizes):]}


def build_fusion_net(spec: ModelSpec, config: TrainConfig, tabular: TabularParams | None,
                     preprocess: PreprocessConfig) -> FusionNet:
    """A fresh :class:`FusionNet` for ``spec`` on the grid of ``preprocess`` (modality dropout only with more
    than one branch; liver-referenced read-outs with ``config.pet_quant`` / ``config.ct_quant``)."""
    voxel_ml = preprocess.voxel_ml
    from pfs_core.nets import FusionNet

    n_branches = len(spec.modalities)
    return FusionNet(
        3, use_lab=spec.use_lab, use_pet=spec.use_pet, use_ct=spec.use_ct,
        n_lab_features=tabular.n_features if tabular is not None else 0,
        channels=config.channels, strides=config.strides, embed_dim=config.embed_dim, hidden=config.hidden,
        dropout=config.dropout, modality_dropout=config.modality_dropout if n_branches > 1 else 0.0,
        pet_quant=(preprocess.pet_suv_max, voxel_ml) if config.pet_quant and spec.use_pet else None,
        ct_quant=(*preprocess.ct_window_hu, voxel_ml) if config.ct_quant and spec.use_ct else None,
        wide=config.wide,
    )


def _fit_torch(
    spec: ModelSpec,
    data: CohortData,
    labelled: np.ndarray,
    tabular: TabularParams | None,
    *,
    config: TrainConfig,
    seed: int,
    device: torch.device,
    progress: bool,
    cache_dir: Path | None,
) -> FittedModel:

    seed_everything(seed)
    net = build_fusion_net(spec, config, tabular, data.preprocess)
    info: dict[str, Any] = {}
    groups = [{"params": list(net.parameters()), "lr": config.lr}]
    if spec.pretrained_ct:
        info["pretrain"] = _pretrain_ct(net, data, config=config, seed=seed, device=device, progress=progress,
                                        cache_dir=cache_dir)
        assert net.ct_branch is not None
        trunk = {id(p) for p in net.ct_branch.features.parameters()}
        groups = [{"params": [p for p in net.parameters() if id(p) not in trunk], "lr": config.lr},
                  {"params": list(net.ct_branch.features.parameters()), "lr": config.lr * config.pretrained_lr_factor}]
    model = FittedModel(spec=spec, config=config, tabular=tabular, net=net.to(device), info=info)
    train = data.subset(labelled)
    if net.wide is not None and config.wide_logistic:
        info["wide"] = _fit_wide(model, train, seed=seed, device=device)
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    fit_rows, check_rows = _validation_split(train.label, config.validation_fraction, seed=seed)
    validation = train.subset(check_rows) if len(check_rows) else None
    info.update(_train_loop(model, train.subset(fit_rows), groups, seed=seed, device=device, progress=progress,
                            validation=validation))
    net.eval()
    return model


def _validation_split(label: np.ndarray, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows) of a labelled training set: a stratified ``fraction`` held out
    for choosing the epoch, none when ``fraction`` is 0 or a class has fewer than 5 patients."""
    from sklearn.model_selection import StratifiedShuffleSplit

    rows = np.arange(len(label))
    if fraction <= 0 or min(np.bincount(label.astype(int), minlength=2)) < 5:
        return rows, rows[:0]
    split = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    fit, check = next(split.split(rows, label))
    return np.sort(fit), np.sort(check)


def _fit_wide(model: FittedModel, train: CohortData, *, seed: int, device: torch.device) -> dict[str, Any]:
    """Start the network as a logistic model and let its deep part learn only what that leaves.

    The read-outs are standardised on the training rows; the wide path is fitted as an
    L2 logistic regression on the prepared labs and those read-outs (balanced classes,
    like the pos-weighted training loss), then frozen; the head's last layer starts at 0.
    With ``config.wide_search`` each modality's penalty weight and C are chosen by
    inner cross-validation (:mod:`pfs_core.block_logistic`); otherwise one penalty,
    C = ``config.logistic_c``. Trained jointly from random weights, the wide path lagged
    a plain logistic regression on the same inputs by 0.06-0.2 AUROC at 116-400
    patients (docs/models.md).
    """
    import torch

    net = model.net
    assert net is not None and net.wide is not None
    inputs = torch_inputs(model, train, np.arange(len(train)), device)
    readouts = net.fit_readout_scaling(inputs["pet"], inputs["ct"], pet_present=inputs.get("pet_present"),
                                       ct_present=inputs.get("ct_present"))
    blocks = ({"labs": inputs["lab"]} if net.lab_branch is not None and inputs["lab"] is not None else {}) | readouts
    design = torch.cat(list(blocks.values()), dim=1).cpu().numpy().astype(np.float64)
    coef, intercept, info = _wide_logistic(design, train.label, tuple(b.shape[1] for b in blocks.values()),
                                           config=model.config, seed=seed)
    with torch.no_grad():
        net.wide.weight.copy_(torch.from_numpy(coef.astype(np.float32))[None])
        net.wide.bias.fill_(intercept)
        net.head.mlp[-1].weight.zero_()
        net.head.mlp[-1].bias.zero_()
    net.wide.requires_grad_(False)
    return {**info, "blocks": list(blocks), "inputs": int(design.shape[1])}


def _wide_logistic(design: np.ndarray, label: np.ndarray, sizes: tuple[int, ...], *, config: TrainConfig,
                   seed: int) -> tuple[np.ndarray, float, dict[str, Any]]:
    """(coefficients, intercept, description) of the wide path's logistic model."""
    from sklearn.linear_model import LogisticRegression

    from pfs_core.block_logistic import fit_block_logistic

    if config.wide_search:
        fit = fit_block_logistic(design, label, sizes, seed=seed)
        return fit.coef, fit.intercept, {"kind": "L2 logistic regression, modality penalty weights and C by inner "
                                                 "5-fold CV, frozen", "C": fit.c, "block_weights": list(fit.weights)}
    plain = LogisticRegression(C=config.logistic_c, class_weight="balanced", max_iter=5000).fit(design, label)
    return plain.coef_[0], float(plain.intercept_[0]), {"kind": "L2 logistic regression, frozen",
                                                        "C": config.logistic_c}


def _pretrain_ct(net: FusionNet, data: CohortData, *, config: TrainConfig, seed: int, device: torch.device,
                 progress: bool, cache_dir: Path | None) -> dict[str, Any]:
    """Pretrain ``net.ct_branch.features`` on the CTs of all training rows (no labels) and load it."""
    import torch

    from pfs_core.config import digest
    from pfs_core.pretrain import cache_key, cached_pretrain, describe

    if data.ct is None or data.ct_present is None or not data.ct_present.any():
        raise InputError("lab_pet_ct_pretrained needs CT volumes in the training data for its pretraining")
    rows = np.flatnonzero(data.ct_present)
    ct = torch.from_numpy(np.ascontiguousarray(data.ct[rows][:, None]))
    kwargs = config.branch_kwargs()
    ct_quant = net.config.get("ct_quant")
    key = cache_key(data.patient_ids[rows].tolist(), branch_kwargs={**kwargs, "ct_quant": ct_quant},
                    config=config.pretrain, seed=seed, preprocess_digest=digest(data.preprocess))
    state, losses = cached_pretrain(ct, kwargs, key=key, cache_dir=cache_dir, config=config.pretrain, seed=seed,
                                    device=device, progress=progress, ct_quant=ct_quant)
    assert net.ct_branch is not None
    net.ct_branch.features.load_state_dict(state, strict=True)
    return {**describe(config.pretrain, n_volumes=len(rows)), "final_loss": losses[-1] if losses else None}


def _train_loop(model: FittedModel, train: CohortData, groups: list[dict[str, Any]], *, seed: int,
                device: torch.device, progress: bool, validation: CohortData | None = None) -> dict[str, Any]:
    """AdamW training with pos-weighted BCE.

    With ``validation``, the weights after the epoch with the lowest validation loss
    are kept if that loss is at least ``config.min_improvement`` below epoch 0's (the
    network before training), else those of epoch 0, so the deep part stays only where
    it clearly helps held-out patients; training stops after ``config.patience`` epochs
    without a new kept epoch. Without validation, all epochs run and the last is kept.
    Returns ``loss`` (mean training loss per epoch run), ``validation_loss`` (per epoch
    from 0; empty without validation) and ``best_epoch`` (the one kept).
    """
    import torch
    from tqdm.auto import tqdm

    config, net = model.config, model.net
    assert net is not None
    y_all = torch.from_numpy(train.label.astype(np.float32))
    n_pos = float(y_all.sum())
    pos_weight = torch.tensor([(len(y_all) - n_pos) / max(n_pos, 1.0)], device=device)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimiser = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    steps = config.epochs * max(1, -(-len(train) // config.batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(steps, 1))
    augment = Augmenter(config, seed=seed, shape=train.preprocess.shape) if config.augment else None
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    checks = [_validation_loss(model, validation, loss_fn, device)] if validation is not None else []
    best = (checks[0] - config.min_improvement, 0, _state_copy(net)) if checks else None
    bar = tqdm(range(config.epochs), desc=f"train {model.spec.name}", leave=False, disable=not progress)
    for epoch in bar:
        losses.append(_train_epoch(model, train, optimiser, scheduler, loss_fn, y_all, augment=augment,
                                   generator=generator, device=device))
        bar.set_postfix(loss=losses[-1])
        if validation is None or best is None:
            continue
        checks.append(_validation_loss(model, validation, loss_fn, device))
        if checks[-1] < best[0]:
            best = (checks[-1], epoch + 1, _state_copy(net))
        elif config.patience and epoch + 1 - best[1] >= config.patience:
            break
    if best is None:
        return {"loss": losses, "validation_loss": [], "best_epoch": config.epochs}
    net.load_state_dict(best[2])
    return {"loss": losses, "validation_loss": [round(c, 5) for c in checks], "best_epoch": best[1]}


def _train_epoch(model: FittedModel, train: CohortData, optimiser: Any, scheduler: Any, loss_fn: Any,
                 y_all: torch.Tensor, *, augment: Augmenter | None, generator: torch.Generator,
                 device: torch.device) -> float:
    """One pass over ``train`` in shuffled batches; returns the mean training loss."""
    import torch

    config, net = model.config, model.net
    assert net is not None
    net.train()
    order = torch.randperm(len(train), generator=generator).numpy()
    total = 0.0
    for start in range(0, len(order), config.batch_size):
        idx = order[start:start + config.batch_size]
        if len(idx) < 2:  # batch norm needs two samples
            continue
        inputs = torch_inputs(model, train, idx, device)
        if augment is not None:
            inputs = augment(inputs)
        target = y_all[idx].to(device)
        fused, branches = net.forward_with_branches(**inputs)
        loss = loss_fn(fused[:, 0], target)
        if config.aux_weight > 0 and len(branches) > 1:
            aux = torch.stack([loss_fn(logit[:, 0], target) for logit in branches.values()]).mean()
            loss = loss + config.aux_weight * aux
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()
        total += loss.item() * len(idx)
    return round(total / len(order), 5)


def _state_copy(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _validation_loss(model: FittedModel, validation: CohortData, loss_fn: Any, device: torch.device) -> float:
    """Mean loss of the fused logit on the validation rows (eval mode, no augmentation)."""
    import torch

    target = torch.from_numpy(validation.label.astype(np.float32)).to(device)
    return float(loss_fn(_torch_logits(model, validation, device=device, batch_size=64), target))


class Augmenter:
    """Light training augmentation of a batch (MONAI ``RandAffine`` + intensity jitter).

    The same random rotation/shift is applied to PET and CT of a patient (they are
    stacked as channels); no flips. Intensities: a random scale for PET and CT, an
    additive offset for CT only.
    """

    def __init__(self, config: TrainConfig, *, seed: int, shape: Sequence[int] | None = None) -> None:
        from monai.transforms import RandAffine

        r, t = config.rotate_rad, config.translate_vox
        self.affine = RandAffine(prob=1.0, rotate_range=(r, r, r), translate_range=(t, t, t),
                                 padding_mode="zeros", mode="bilinear",
                                 spatial_size=tuple(shape) if shape is not None else None,
                                 cache_grid=shape is not None)
        self.affine.set_random_state(seed)
        self.rng = np.random.default_rng(seed)
        self.jitter = config.intensity_jitter

    def __call__(self, inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
        import torch

        names = [n for n in ("pet", "ct") if inputs.get(n) is not None]
        if not names:
            return inputs
        stacked = torch.cat([inputs[n] for n in names], dim=1)  # type: ignore[misc]  # (B, C, D, H, W)
        moved = torch.stack([torch.as_tensor(self.affine(v.cpu())) for v in stacked]).to(stacked.device)
        scale = torch.as_tensor(self.rng.uniform(1 - self.jitter, 1 + self.jitter, moved.shape[:2]),
                                dtype=moved.dtype, device=moved.device)
        shift = torch.as_tensor(self.rng.uniform(-self.jitter / 5, self.jitter / 5, moved.shape[:2]),
                                dtype=moved.dtype, device=moved.device)
        # PET is quantitative: calibration scales it, nothing shifts its background; a CT may be offset.
        shift = shift * torch.tensor([n == "ct" for n in names], dtype=moved.dtype, device=moved.device)
        moved = (moved * scale[..., None, None, None] + shift[..., None, None, None]).clamp(min=0.0)
        out = dict(inputs)
        for i, name in enumerate(names):
            out[name] = moved[:, i:i + 1].contiguous()
        return out


# ----------------------------------------------------------------------------- provenance

VERSIONED_PACKAGES: tuple[str, ...] = (
    "torch", "monai", "numpy", "pandas", "scikit-learn", "skops", "safetensors", "lifelines", "nibabel", "plotly",
)


def runtime_info(device: str | None = None) -> dict[str, Any]:
    """Package versions, machine and device (for results.json and bundle manifests)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import pfs_core

    versions: dict[str, str | None] = {"python": platform.python_version(), "pfs_core": pfs_core.__version__}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    threads = None
    try:
        import torch

        threads = torch.get_num_threads()
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a hard dependency
        gpu = None
    cpus = os.cpu_count()
    machine = {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": cpus,
               "torch_threads": threads, "gpu": gpu,
               "summary": f"{platform.machine()}, {cpus} CPU cores visible, torch threads {threads}"
                          + (f", GPU {gpu}" if gpu else "")}
    return {"versions": versions, "machine": machine, "device": device}


def is_simulated(cohort_csv: str | Path) -> bool:
    """True when the cohort folder holds the simulator's ``ground_truth.csv``."""
    return (Path(cohort_csv).parent / "ground_truth.csv").is_file()
