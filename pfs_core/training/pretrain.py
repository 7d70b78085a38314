"""Self-supervised pretraining of the CT branch (no labels, no download).

Task: **masked-patch denoising reconstruction**. Each training CT (B, 1, D, H, W),
windowed to [0, 1] on the model grid, is corrupted by blanking a random
``mask_fraction`` of non-overlapping cubes of ``patch`` voxels (default 8 voxels
= 48 mm at 6 mm spacing) and adding Gaussian noise (sd ``noise_sd``) to the rest;
the conv trunk (:attr:`pfs_core.models.nets.ImageBranch.features`) plus a small decoder
of transposed MONAI convolutions must reconstruct the clean volume (at half
the model-grid resolution, to keep it cheap on CPU). The loss is
the mean squared error on blanked voxels plus ``visible_weight`` × that on the
visible ones. The trunk thereby learns body outline, organ layout and local
density (e.g. hypodense liver lesions) of CT, which it must infer from context.

Data: only the CTs of the training fold at hand (in a bundle, of that fold's
training patients). No labels, outcomes, PET or lab values are used. The
trained trunk initialises the CT branch of ``lab_pet_ct_pretrained``, which is
then fine-tuned with the rest of the model (trunk learning rate scaled by
``TrainConfig.pretrained_lr_factor``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from monai.networks.blocks import Convolution
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from pfs_core.config import PretrainConfig
from pfs_core.models.nets import CtQuant, ImageBranch

TASK = "masked-patch denoising reconstruction of training-fold CT volumes (self-supervised; no labels)"


class CTReconstructor(nn.Module):
    """Trunk ``encoder`` (an :class:`ImageBranch` ``features``) + transposed-conv ``decoder``.

    (B, 1, D, H, W) → (B, 1, D/s0, H/s0, W/s0) in [0, 1], where s0 is the first
    stride: the decoder stops one level short of full resolution (cheaper on CPU),
    and the target is the clean CT average-pooled by s0.
    """

    def __init__(self, branch: ImageBranch, channels: Sequence[int], strides: Sequence[int]) -> None:
        super().__init__()
        self.encoder = branch.features
        self.quant = branch.quant  # the branch's liver window, if any: the trunk learns on the input it will get
        ups: list[nn.Module] = []
        widths = [*reversed(channels)]
        for width, out, stride in zip(widths[:-1], widths[1:], list(reversed(strides))[:-1], strict=True):
            ups.append(Convolution(3, width, out, strides=stride, is_transposed=True, norm="batch"))
        self.decoder = nn.Sequential(*ups, nn.Conv3d(widths[-1], 1, kernel_size=1))
        self.output_stride = int(strides[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x if self.quant is None else self.quant.channels(x))))


def corrupt(ct: torch.Tensor, *, config: PretrainConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Blank random cubes and add noise: (B, 1, D, H, W) → (corrupted, blanked mask as float)."""
    b, _, d, h, w = ct.shape
    p = config.patch
    grid = (-(-d // p), -(-h // p), -(-w // p))
    coarse = (torch.rand((b, 1, *grid), generator=generator) < config.mask_fraction).float()
    mask = F.interpolate(coarse, scale_factor=p, mode="nearest")[:, :, :d, :h, :w].to(ct.device)
    noise = torch.randn(ct.shape, generator=generator).to(ct.device) * config.noise_sd
    return (ct + noise).clamp(0, 1) * (1 - mask), mask


def pretrain_ct_trunk(
    ct: torch.Tensor,
    branch_kwargs: dict[str, Any],
    *,
    config: PretrainConfig,
    seed: int,
    device: torch.device,
    progress: bool = False,
    ct_quant: Sequence[float] | None = None,
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Pretrain an :class:`ImageBranch` trunk on CTs (N, 1, D, H, W) in [0, 1].

    ``ct_quant``: the CT branch's :class:`~pfs_core.models.nets.CtQuant` arguments, when it has one.
    Returns the trunk's state dict (keys of ``ImageBranch.features``, CPU tensors)
    and the mean loss per epoch.
    """

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    branch = ImageBranch(3, 1, **branch_kwargs, quant=CtQuant(*ct_quant) if ct_quant is not None else None)
    model = CTReconstructor(branch, branch_kwargs["channels"], branch_kwargs["strides"]).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    losses: list[float] = []
    model.train()
    for _ in tqdm(range(config.epochs), desc="pretrain CT", leave=False, disable=not progress):
        order = torch.randperm(len(ct), generator=generator)
        total = 0.0
        for start in range(0, len(ct), config.batch_size):
            clean = ct[order[start:start + config.batch_size]].to(device)
            if len(clean) < 2:
                continue
            noisy, mask = corrupt(clean, config=config, generator=generator)
            s0 = model.output_stride
            target = F.avg_pool3d(clean, s0) if s0 > 1 else clean
            mask = F.avg_pool3d(mask, s0) if s0 > 1 else mask
            err = (model(noisy) - target) ** 2
            loss = (err * mask).mean() + config.visible_weight * (err * (1 - mask)).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(clean)
        losses.append(total / len(ct))
    state = {k: v.detach().cpu().clone() for k, v in branch.features.state_dict().items()}
    return state, losses


def cache_key(patient_ids: Sequence[str], *, branch_kwargs: dict[str, Any], config: PretrainConfig,
              seed: int, preprocess_digest: str) -> str:
    """Stable key of one pretraining run (same training CTs and settings → same key)."""
    text = json.dumps({"ids": sorted(map(str, patient_ids)), "branch": branch_kwargs, "config": asdict(config),
                       "seed": seed, "preprocess": preprocess_digest}, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached_pretrain(
    ct: torch.Tensor,
    branch_kwargs: dict[str, Any],
    *,
    key: str,
    cache_dir: Path | None,
    config: PretrainConfig,
    seed: int,
    device: torch.device,
    progress: bool = False,
    ct_quant: Sequence[float] | None = None,
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """:func:`pretrain_ct_trunk`, reusing ``cache_dir/pretrain/<key>.safetensors`` when present."""

    path = cache_dir / "pretrain" / f"{key}.safetensors" if cache_dir is not None else None
    if path is not None and path.exists():
        meta = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else {}
        return load_file(str(path)), list(meta.get("losses", []))
    state, losses = pretrain_ct_trunk(ct, branch_kwargs, config=config, seed=seed, device=device, progress=progress,
                                      ct_quant=ct_quant)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        path.with_suffix(".json").write_text(json.dumps({"losses": losses}))
    return state, losses


def describe(config: PretrainConfig, *, n_volumes: int | None = None) -> dict[str, Any]:
    """JSON-able description of the pretraining for manifests and results."""
    out: dict[str, Any] = {"task": TASK, "data": "CT volumes of the training fold only (no labels)",
                           "config": asdict(config)}
    if n_volumes is not None:
        out["n_volumes"] = int(n_volumes)
    return out
