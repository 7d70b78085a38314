"""Read large scans onto a coarser working grid while reading, so memory follows the working grid.

A 512x512x600 CT holds 157 M voxels (629 MB as float32), and every later step (organ masks, lesion
delineation, the model grid) would hold arrays of that size. Nothing this product measures needs
sub-millimetre voxels: the PET is read at 2-5 mm and a CT lesion is counted from 5 mm up. So a volume
above :attr:`pfs_core.limits.Limits.max_working_voxels` is reduced by whole-number block factors while
it is read: intensities by the block mean (torch's average pooling), label maps by the
voxel at the block's centre (nearest neighbour). The reduced grid covers the same field of view; at most
``factor - 1`` edge voxels per axis are left out where the size is not a multiple of the factor.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Factors = tuple[int, int, int]
Reduce = Literal["mean", "nearest"]
#: Axes whose spacing is within this ratio of the finest one are reduced together (in-plane stays square).
SAME_SPACING = 1.1


def working_factors(shape: tuple[int, int, int], spacing_mm: tuple[float, float, float],
                    max_voxels: int) -> Factors:
    """Whole-number factors per axis that bring ``shape`` to at most ``max_voxels`` voxels.

    The finest axes (spacing in mm) are halved first, so the working voxels become closer to cubes;
    ``(1, 1, 1)`` when the volume already fits. An axis is never reduced below 8 voxels.
    """
    factors = [1, 1, 1]
    while int(np.prod([n // f for n, f in zip(shape, factors, strict=True)])) > max_voxels:
        current = [s * f for s, f in zip(spacing_mm, factors, strict=True)]
        open_axes = [a for a in range(3) if shape[a] // (factors[a] * 2) >= 8]
        if not open_axes:
            break
        finest = min(current[a] for a in open_axes)
        for axis in open_axes:
            if current[axis] <= SAME_SPACING * finest:
                factors[axis] *= 2
    return factors[0], factors[1], factors[2]


def reduced_shape(shape: tuple[int, int, int], factors: Factors) -> tuple[int, int, int]:
    """Voxels per axis of the working grid."""
    return shape[0] // factors[0], shape[1] // factors[1], shape[2] // factors[2]


def reduced_affine(affine: np.ndarray, factors: Factors) -> np.ndarray:
    """Affine (voxel → world mm) of the working grid: each voxel at the centre of its block.

    A label map's kept voxel (:func:`reduce_block` "nearest") lies within half a stored voxel of that
    centre, the error of any nearest-neighbour resampling; sharing the intensities' grid spares the
    masks of a CT a resampling onto it.
    """
    scale = np.eye(4)
    scale[:3, :3] = np.diag(np.asarray(factors, dtype=float))
    scale[:3, 3] = (np.asarray(factors, dtype=float) - 1) / 2
    return np.asarray(affine, dtype=np.float64) @ scale


def reduce_block(values: np.ndarray, factors: Factors, how: Reduce = "mean") -> np.ndarray:
    """``values`` (a slab whose third axis is a multiple of ``factors[2]``) on the working grid.

    "mean": float32 block means; "nearest": the voxel at each block's centre (for label maps).
    """
    fx, fy, fz = factors
    nx, ny, nz = values.shape[0] // fx * fx, values.shape[1] // fy * fy, values.shape[2] // fz * fz
    if how == "nearest":
        return np.ascontiguousarray(values[fx // 2:nx:fx, fy // 2:ny:fy, fz // 2:nz:fz])
    # torch's average pooling on the transposed (C-ordered) view of the Fortran-ordered slabs nibabel returns:
    # 0.14 s for a 512x512x300 CT where skimage's block_reduce took 0.56 s (benchmarks/bench_preprocess.py);
    # imported here because only a scan above the working-voxel limit needs it (the rest of io stays light)
    import torch

    cropped = np.asarray(values[:nx, :ny, :nz], dtype=np.float32).T
    pooled = torch.nn.functional.avg_pool3d(torch.from_numpy(cropped)[None], kernel_size=(fz, fy, fx))
    return np.asarray(pooled[0].numpy().T)


def reduce_profile(values: np.ndarray, factor: int) -> np.ndarray:
    """Per-slice values (e.g. a PET's SUV factors, one per stored slice) averaged over each block of
    ``factor`` slices, as the slices themselves were (the last ``len % factor`` are left out)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size // factor * factor
    return values[:n].reshape(-1, factor).mean(axis=1)


def expanded(labels: np.ndarray, factors: Factors, full_shape: tuple[int, int, int]) -> np.ndarray:
    """A label map of the working grid (``how="mean"`` blocks) on the stored grid ``full_shape``: each block's
    voxels take its label, the left-out edge voxels that of the nearest block."""
    out = labels
    for axis, factor in enumerate(factors):
        out = np.repeat(out, factor, axis=axis)
    pad = [(0, n - m) for n, m in zip(full_shape, out.shape, strict=True)]
    return np.pad(out, pad, mode="edge") if any(p[1] for p in pad) else out
