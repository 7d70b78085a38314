"""Liver-pooled features of the organ network's frozen encoder: the candidate pretrained CT branch.

Issue 23 asks for a CT branch pretrained on something that matters: the encoder of the organ
segmentation network (:mod:`pfs_core.models.organ_seg`, a MONAI UNet trained on simulated CTs to
delineate liver, spleen, kidneys, bladder, pancreas and adrenals). This module reads that encoder,
frozen, as a feature extractor:

1. the CT (HU) is resampled onto an axis-aligned 4-mm grid (the network's own spacing and HU windows)
   over the liver's bounding box plus :data:`MARGIN_MM`, its size rounded up to a multiple of the
   encoder's total stride, so that memory stays bounded on whole-body CTs;
2. the encoder's stages run once over that crop (no sliding window: a liver crop is small);
3. each stage's feature maps are pooled over the liver (the liver mask average-pooled to the stage's
   grid gives each voxel its liver fraction as a weight): the weighted mean, and the maximum over voxels
   that are at least half liver, per channel.

The result is a fixed-length vector (:func:`feature_names`): what the frozen encoder "sees" in the liver,
at 8 to 64 mm. ``benchmarks/ct_encoder_ablation.py`` asks whether it adds anything to the lesion
measurements (docs/models.md, "The organ-network encoder as the CT branch").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.networks.layers import SkipConnection
from monai.networks.nets import UNet
from torch import nn
from torch.nn import functional as F

from pfs_core.io.organs import OrganMasks
from pfs_core.io.volume import Volume
from pfs_core.models.device import resolve_device
from pfs_core.models.organ_seg import OrganSegConfig, cached_organ_net, resample_channels, window_hu
from pfs_core.preprocessing.resample import resample_array

#: Context around the liver's bounding box (mm): one voxel of the deepest stage (16 × 4 mm).
MARGIN_MM = 64.0
#: Pooling statistics per stage and channel.
POOLS: tuple[str, ...] = ("mean", "max")


def encoder_stages(net: nn.Module) -> list[nn.Module]:
    """The contracting path of a MONAI ``UNet``: its down layers, outermost first, then the bottom layer."""
    stages: list[nn.Module] = []
    assert isinstance(net, UNet)
    block: nn.Module = net.model
    while True:
        assert isinstance(block, nn.Sequential) and isinstance(block[1], SkipConnection)
        stages.append(block[0])
        inner = block[1].submodule
        if isinstance(inner, nn.Sequential) and len(inner) == 3 and isinstance(inner[1], SkipConnection):
            block = inner
            continue
        stages.append(inner)
        return stages


def feature_names(config: OrganSegConfig) -> list[str]:
    """Names of :func:`encoder_features`' entries: ``enc{stage}_{pool}_{channel}``."""
    widths = [*config.channels]
    return [f"enc{stage}_{pool}_{c}" for stage, width in enumerate(widths) for pool in POOLS for c in range(width)]


def liver_crop(ct: Volume, liver: np.ndarray, config: OrganSegConfig) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Axis-aligned RAS grid (affine, shape) of ``config.spacing_mm`` voxels over the liver's box + margin,
    each side a multiple of the encoder's total stride."""
    affine = np.asarray(ct.affine, dtype=float)
    idx = np.argwhere(liver)
    lo, hi = idx.min(axis=0) - 0.5, idx.max(axis=0) + 0.5
    corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    world = (corners @ affine.T)[:, :3]
    low, high = world.min(axis=0) - MARGIN_MM, world.max(axis=0) + MARGIN_MM
    s, step = float(config.spacing_mm), int(np.prod(config.strides))
    shape = tuple(int(step * np.ceil((h - lo_) / s / step)) for lo_, h in zip(low, high, strict=True))
    grid = np.diag([s, s, s, 1.0])
    grid[:3, 3] = (low + high) / 2.0 - (np.asarray(shape) - 1) * s / 2.0
    return grid, shape  # type: ignore[return-value]


@torch.no_grad()
def encoder_features(ct: Volume, organs: OrganMasks, *, device: str | None = None,
                     bundle_dir: Path | None = None) -> np.ndarray:
    """(len(feature_names),) float32 liver-pooled encoder features of ``ct``; all NaN without a liver.

    Args:
        ct: CT :class:`Volume` in HU, any orientation.
        organs: organ masks on the CT's grid (provided or the organ network's); only the liver is used.
        device: torch device (default CUDA when available).
        bundle_dir: organ network bundle (default the shipped ``models/organ_seg/``).
    """
    chosen = resolve_device(device)
    net, config = cached_organ_net(bundle_dir, chosen)
    liver = organs.mask("liver")
    if not liver.any():
        return np.full(len(feature_names(config)), np.nan, np.float32)
    grid, shape = liver_crop(ct, liver, config)
    hu = resample_channels(torch.from_numpy(np.ascontiguousarray(ct.data, dtype=np.float32))[None],
                           np.asarray(ct.affine, dtype=float), grid, shape)
    weight = torch.from_numpy(resample_array(liver.astype(np.float32), np.asarray(ct.affine, dtype=float),
                                             to_affine=grid, to_shape=shape))[None, None].to(chosen)
    x = window_hu(hu, config)[None].to(chosen)
    pooled = []
    for stage in encoder_stages(net):
        x = stage(x)
        w = F.adaptive_avg_pool3d(weight, x.shape[2:]) if x.shape[2:] != weight.shape[2:] else weight
        pooled.append(_pool(x[0], w[0, 0]))
    return torch.cat(pooled).cpu().numpy().astype(np.float32)


def _pool(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(2C,) liver-weighted mean and maximum (over voxels at least half liver, else the most-liver voxel)."""
    flat = features.float().flatten(1)
    w = weight.flatten()
    mean = (flat * w).sum(dim=1) / w.sum().clamp_min(1e-6)
    inside = w >= min(0.5, float(w.max()))
    return torch.cat([mean, flat[:, inside].max(dim=1).values])
