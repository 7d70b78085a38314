"""Training augmentation of PET/CT batches (MONAI ``RandAffine`` + intensity jitter).

Rotations up to ``rotate_rad`` and shifts up to ``translate_vox`` voxels, the same
for PET and CT of a patient; an intensity scale for both and an offset for CT only;
no left-right flip, since anatomy is lateralised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import RandAffine
from monai.utils import convert_to_tensor

from pfs_core.config import TrainConfig


class Augmenter:
    """Light training augmentation of a batch (MONAI ``RandAffine`` + intensity jitter).

    The same random rotation/shift is applied to PET and CT of a patient (they are
    stacked as channels); no flips. Intensities: a random scale for PET and CT, an
    additive offset for CT only.
    """

    def __init__(self, config: TrainConfig, *, seed: int, shape: Sequence[int] | None = None) -> None:
        r, t = config.rotate_rad, config.translate_vox
        self.affine = RandAffine(prob=1.0, rotate_range=(r, r, r), translate_range=(t, t, t),
                                 padding_mode="zeros", mode="bilinear",
                                 spatial_size=tuple(shape) if shape is not None else None,
                                 cache_grid=shape is not None)
        self.affine.set_random_state(seed)
        self.rng = np.random.default_rng(seed)
        self.jitter = config.intensity_jitter

    def __call__(self, inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
        names = [n for n in ("pet", "ct") if inputs.get(n) is not None]
        if not names:
            return inputs
        stacked = torch.cat([inputs[n] for n in names], dim=1)  # type: ignore[misc]  # (B, C, D, H, W)
        # RandAffine returns MetaTensors; plain tensors keep MONAI's per-operation overhead out of the training step.
        moved = torch.stack([convert_to_tensor(self.affine(v.cpu()), track_meta=False) for v in stacked])
        moved = moved.to(stacked.device)
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
