"""Display-space helpers: bring a PET onto the CT grid so slices and MIPs can share one overlay.

Used only for showing images (the model grid is :mod:`pfs_core.preprocessing.model_grid`'s job).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialResample

from pfs_core.io import Volume


def resample_onto(volume: Volume, *, affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``volume`` resampled (trilinear, 0 outside its field of view) onto the grid ``affine``/``shape``.

    Returns float32 ``shape`` in the volume's units (SUV or HU).
    """
    image = MetaTensor(torch.from_numpy(np.ascontiguousarray(volume.data, dtype=np.float32))[None],
                       affine=torch.as_tensor(volume.affine, dtype=torch.float64))
    resample = SpatialResample(mode="bilinear", padding_mode="zeros", dtype=np.float32)
    out = resample(image, dst_affine=torch.as_tensor(affine, dtype=torch.float64), spatial_size=tuple(shape))
    return np.asarray(out[0], dtype=np.float32)
