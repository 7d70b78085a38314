"""The epoch loop of the torch models: AdamW, weighted BCE, cosine decay, held-out epoch selection.

``BCEWithLogitsLoss(pos_weight=n_neg/n_pos)``, cosine learning-rate decay, light
augmentation (:class:`pfs_core.training.augment.Augmenter`). A fifth of the labelled
training rows is held out; a later epoch replaces epoch 0 (the logistic start) only
when its held-out loss is ``TrainConfig.min_improvement`` nats lower, and training
stops after ``TrainConfig.patience`` epochs without a kept one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pfs_core.dataset import CohortData
from pfs_core.models.fitted import FittedModel, torch_inputs, torch_logits
from pfs_core.models.precision import autocast
from pfs_core.training.augment import Augmenter


def train_loop(model: FittedModel, train: CohortData, groups: list[dict[str, Any]], *, seed: int,
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
    checks = [validation_loss(model, validation, loss_fn, device)] if validation is not None else []
    best = (checks[0] - config.min_improvement, 0, state_copy(net)) if checks else None
    bar = tqdm(range(config.epochs), desc=f"train {model.spec.name}", leave=False, disable=not progress)
    for epoch in bar:
        losses.append(train_epoch(model, train, optimiser, scheduler, loss_fn, y_all, augment=augment,
                                   generator=generator, device=device))
        bar.set_postfix(loss=losses[-1])
        if validation is None or best is None:
            continue
        checks.append(validation_loss(model, validation, loss_fn, device))
        if checks[-1] < best[0]:
            best = (checks[-1], epoch + 1, state_copy(net))
        elif config.patience and epoch + 1 - best[1] >= config.patience:
            break
    if best is None:
        return {"loss": losses, "validation_loss": [], "best_epoch": config.epochs}
    net.load_state_dict(best[2])
    return {"loss": losses, "validation_loss": [round(c, 5) for c in checks], "best_epoch": best[1]}


def train_epoch(model: FittedModel, train: CohortData, optimiser: Any, scheduler: Any, loss_fn: Any,
                 y_all: torch.Tensor, *, augment: Augmenter | None, generator: torch.Generator,
                 device: torch.device) -> float:
    """One pass over ``train`` in shuffled batches; returns the mean training loss."""

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
        # bfloat16 autocast on CUDA cards that have it (no GradScaler needed), float32 elsewhere; the
        # loss is computed in float32 on float32 logits (pfs_core.models.precision).
        with autocast(device, allow_float16=False):
            fused, branches = net.forward_with_branches(**inputs)
        loss = loss_fn(fused[:, 0].float(), target)
        if config.aux_weight > 0 and len(branches) > 1:
            aux = torch.stack([loss_fn(logit[:, 0].float(), target) for logit in branches.values()]).mean()
            loss = loss + config.aux_weight * aux
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()
        total += loss.item() * len(idx)
    return round(total / len(order), 5)


def state_copy(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def validation_loss(model: FittedModel, validation: CohortData, loss_fn: Any, device: torch.device) -> float:
    """Mean loss of the fused logit on the validation rows (eval mode, no augmentation; the precision of
    training: bfloat16 autocast on CUDA where the card has it, else float32)."""

    target = torch.from_numpy(validation.label.astype(np.float32)).to(device)
    logits = torch_logits(model, validation, device=device, batch_size=64, allow_float16=False)
    return float(loss_fn(logits, target))
