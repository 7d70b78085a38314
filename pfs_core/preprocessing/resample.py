"""Grid-to-grid resampling through the world (RAS mm) coordinates of two affines.

Used to show a PET on the CT grid and to move masks and label maps between the CT and
PET grids for measurement (the model grid is :mod:`pfs_core.preprocessing.model_grid`'s job).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialResample

from pfs_core.io import Volume


def resample_array(data: np.ndarray, affine: np.ndarray, *, to_affine: np.ndarray, to_shape: tuple[int, int, int],
                   mode: Literal["bilinear", "nearest"] = "bilinear",
                   padding_mode: Literal["zeros", "border"] = "zeros") -> np.ndarray:
    """``data`` ``(I, J, K)`` on grid ``affine`` resampled onto ``to_affine``/``to_shape``: 0 outside, or the
    nearest edge value with ``padding_mode="border"``.

    ``"bilinear"`` is trilinear interpolation (float32 out); ``"nearest"`` keeps label values and dtype.
    """
    dtype = np.float32 if mode == "bilinear" else data.dtype
    image = MetaTensor(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[None],
                       affine=torch.as_tensor(affine, dtype=torch.float64))
    resample = SpatialResample(mode=mode, padding_mode=padding_mode, dtype=np.float32)
    out = resample(image, dst_affine=torch.as_tensor(to_affine, dtype=torch.float64), spatial_size=tuple(to_shape))
    result = np.asarray(out[0])
    return result.astype(dtype, copy=False) if mode == "bilinear" else np.rint(result).astype(dtype)


def resample_onto(volume: Volume, *, affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``volume`` resampled (trilinear, 0 outside its field of view) onto the grid ``affine``/``shape``.

    Returns float32 ``shape`` in the volume's units (SUV or HU).
    """
    return resample_array(volume.data, volume.affine, to_affine=affine, to_shape=shape)
