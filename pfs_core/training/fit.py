"""Training of one registry model on one training set (a CV fold, or one fold of a bundle).

Everything a model sees comes from :class:`~pfs_core.dataset.CohortData` (labs,
outcome, and the preprocessed PET/CT of :mod:`pfs_core.preprocessing.model_grid`).
The lab transform is fitted on the training rows given to :func:`fit_model` only;
supervised fitting uses the rows with a binary label (see
:func:`pfs_core.metrics.short_pfs_label`).

Scikit-learn models (``lab_rf``, ``classic``) are fitted here directly. Torch
models start from a logistic fit of their wide path (:func:`_fit_wide`), then the
network is trained by :func:`pfs_core.training.loop.train_loop`; the CT trunk of
``lab_pet_ct_pretrained`` is first pretrained (:mod:`pfs_core.training.pretrain`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pfs_core.config import PreprocessConfig, TrainConfig, digest
from pfs_core.dataset import CohortData
from pfs_core.errors import InputError
from pfs_core.features.lesions import FEATURE_BLOCKS
from pfs_core.features.tabular import TabularParams, fit_lab_transform
from pfs_core.models.block_logistic import fit_block_logistic
from pfs_core.models.device import resolve_device, seed_everything
from pfs_core.models.fitted import FittedModel, sklearn_features, torch_inputs
from pfs_core.models.nets import FusionNet
from pfs_core.models.registry import SKLEARN, ModelSpec
from pfs_core.training.loop import train_loop
from pfs_core.training.pretrain import cache_key, cached_pretrain, describe


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
    x = sklearn_features(spec, data, tabular, config)
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

    n_branches = len(spec.modalities)
    return FusionNet(
        3, use_lab=spec.use_lab, use_pet=spec.use_pet, use_ct=spec.use_ct,
        n_lab_features=tabular.n_features if tabular is not None else 0,
        channels=config.channels, strides=config.strides, embed_dim=config.embed_dim, hidden=config.hidden,
        dropout=config.dropout, modality_dropout=config.modality_dropout if n_branches > 1 else 0.0,
        pet_quant=(preprocess.pet_suv_max, voxel_ml) if config.pet_quant and spec.use_pet else None,
        ct_quant=(*preprocess.ct_window_hu, voxel_ml) if config.ct_quant and spec.use_ct else None,
        wide=config.wide,
        pet_given=len(FEATURE_BLOCKS["pet"]) if config.lesion_features and spec.use_pet else 0,
        ct_given=len(FEATURE_BLOCKS["ct"]) if config.lesion_features and spec.use_ct else 0,
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
    groups: list[dict[str, Any]] = [{"params": list(net.parameters()), "lr": config.lr}]
    if spec.pretrained_ct and config.epochs == 0:
        info["pretrain"] = {"skipped": "no CNN residual is trained (epochs 0): a pretrained CT trunk would be unused"}
    elif spec.pretrained_ct:
        # The global random state after this point must not depend on whether the pretraining ran here or came
        # from the cache (another run, another worker): dropout and the rest draw from it.
        numpy_state = np.random.get_state()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            info["pretrain"] = _pretrain_ct(net, data, config=config, seed=seed, device=device, progress=progress,
                                            cache_dir=cache_dir)
        np.random.set_state(numpy_state)
        assert net.ct_branch is not None
        trunk = {id(p) for p in net.ct_branch.features.parameters()}
        groups = [{"params": [p for p in net.parameters() if id(p) not in trunk], "lr": config.lr},
                  {"params": list(net.ct_branch.features.parameters()), "lr": config.lr * config.pretrained_lr_factor}]
    model = FittedModel(spec=spec, config=config, tabular=tabular, net=net.to(device), info=info)
    train = data.subset(labelled)
    # Rows are held out only to choose an epoch; with no epoch to train there is nothing to choose.
    fraction = config.validation_fraction if config.epochs > 0 else 0.0
    fit_rows, check_rows = _validation_split(train.label, fraction, seed=seed)
    fitting = train.subset(fit_rows)
    if net.wide is not None and config.wide_logistic:
        # Fitted without the rows that choose the epoch: otherwise epoch 0's held-out loss is in-sample.
        info["wide"] = _fit_wide(model, fitting, seed=seed, device=device)
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    validation = train.subset(check_rows) if len(check_rows) else None
    info.update(train_loop(model, fitting, groups, seed=seed, device=device, progress=progress,
                            validation=validation))
    net.eval()
    return model


def _validation_split(label: np.ndarray, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows) of a labelled training set: a stratified ``fraction`` held out
    for choosing the epoch, none when ``fraction`` is 0 or a class has fewer than 5 patients."""

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
    inner cross-validation (:mod:`pfs_core.models.block_logistic`); otherwise one penalty,
    C = ``config.logistic_c``. Trained jointly from random weights, the wide path lagged
    a plain logistic regression on the same inputs by 0.06-0.2 AUROC at 116-400
    patients (docs/models.md).
    """

    net = model.net
    assert net is not None and net.wide is not None
    inputs = torch_inputs(model, train, np.arange(len(train)), device)
    readouts = net.fit_readout_scaling(inputs["pet"], inputs["ct"], pet_present=inputs.get("pet_present"),
                                       ct_present=inputs.get("ct_present"), pet_given=inputs.get("pet_given"),
                                       ct_given=inputs.get("ct_given"))
    blocks = ({"labs": inputs["lab"]} if net.lab_branch is not None and inputs["lab"] is not None else {}) | readouts
    design = torch.cat(list(blocks.values()), dim=1).cpu().numpy().astype(np.float64)
    coef, intercept, info = _wide_logistic(design, train.label, tuple(b.shape[1] for b in blocks.values()),
                                           config=model.config, seed=seed)
    with torch.no_grad():
        net.wide.weight.copy_(torch.from_numpy(coef.astype(np.float32))[None])
        net.wide.bias.fill_(intercept)
        last = net.head.mlp[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.zero_()
        last.bias.zero_()
    net.wide.requires_grad_(False)
    return {**info, "blocks": list(blocks), "inputs": int(design.shape[1])}


def _wide_logistic(design: np.ndarray, label: np.ndarray, sizes: tuple[int, ...], *, config: TrainConfig,
                   seed: int) -> tuple[np.ndarray, float, dict[str, Any]]:
    """(coefficients, intercept, description) of the wide path's logistic model."""


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
