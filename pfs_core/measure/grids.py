"""Bounding boxes, and resampling limited to the voxels a box can reach.

A clinical CT holds ~80 M voxels and a PET ~3 M, while an organ or a lesion covers a small part of
either: measuring works inside boxes (tuples of slices, voxel indices) and leaves the rest zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import ndimage

from pfs_core.preprocessing.resample import resample_array

Box = tuple[slice, ...]


def bounding_box(mask: np.ndarray) -> Box | None:
    """Smallest box holding every True voxel of the boolean ``mask`` (``None`` when there is none)."""
    found = ndimage.find_objects(np.asarray(mask, dtype=bool).view(np.uint8))  # a view: no full-size copy
    return found[0] if found else None


def grow(box: Box, by: int | Sequence[int], shape: Sequence[int]) -> Box:
    """``box`` grown by ``by`` voxels on each side (one number, or one per axis), clipped to ``shape``."""
    pad = [by] * len(box) if isinstance(by, int) else list(by)
    return tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(box, pad, shape, strict=True))


def intersect(a: Box, b: Box) -> Box | None:
    """The voxels two boxes of one grid share (``None`` when none)."""
    both = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b, strict=True))
    return both if all(s.stop > s.start for s in both) else None


def relative(box: Box, to: Box) -> Box:
    """``box`` in the indices of the array that holds the box ``to`` (``box`` lies inside ``to``)."""
    return tuple(slice(s.start - t.start, s.stop - t.start) for s, t in zip(box, to, strict=True))


def shifted(affine: np.ndarray, box: Box) -> np.ndarray:
    """Affine of the grid that starts at ``box``'s first voxel (index → world mm)."""
    shift = np.eye(4)
    shift[:3, 3] = [s.start for s in box]
    return np.asarray(affine, dtype=float) @ shift


def _reach(box: Box, affine: np.ndarray, to_affine: np.ndarray, to_shape: Sequence[int], margin: float) -> Box | None:
    """Voxels of the grid ``to_affine``/``to_shape`` whose centres lie within ``margin`` voxels of the centres of
    ``box``'s voxels (grid ``affine``), one more voxel of the target grid each side for rounding; ``None``
    when there are none.
    """
    edges = [(s.start - margin, s.stop - 1 + margin) for s in box]
    corners = np.array([[a, b, c, 1.0] for a in edges[0] for b in edges[1] for c in edges[2]])
    at = (corners @ (np.linalg.inv(to_affine) @ affine).T)[:, :3]
    lo = np.clip(np.floor(at.min(axis=0)).astype(int) - 1, 0, to_shape)
    hi = np.clip(np.ceil(at.max(axis=0)).astype(int) + 2, 0, to_shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def resample_box(values: np.ndarray, box: Box, affine: np.ndarray, *, to_affine: np.ndarray,
                 to_shape: Sequence[int], mode: Literal["bilinear", "nearest"] = "bilinear",
                 reach: Box | None = None) -> tuple[Box, np.ndarray] | None:
    """``values`` (the voxels of ``box`` on grid ``affine``, zero elsewhere) resampled onto the grid
    ``to_affine``/``to_shape``, computed only over the target box that the voxels of ``reach`` (a box inside
    ``box``; all of it by default) can reach.

    A trilinear sample reads voxels within one voxel of it (1.5 is taken), a nearest one the voxel within
    half a voxel. Returns the target box and the values on it (as :func:`resample_array`), or ``None``
    when there is no such target voxel; further out a sample reads no voxel of ``reach``.
    """
    target = _reach(reach if reach is not None else box, affine, to_affine, to_shape,
                    margin=1.5 if mode == "bilinear" else 0.5)
    if target is None:
        return None
    shape = tuple(s.stop - s.start for s in target)
    return target, resample_array(values, shifted(affine, box), to_affine=shifted(to_affine, target),
                                  to_shape=shape, mode=mode)  # type: ignore[arg-type]


def resample_full(values: np.ndarray, box: Box, affine: np.ndarray, *, to_affine: np.ndarray,
                  to_shape: Sequence[int], mode: Literal["bilinear", "nearest"] = "bilinear") -> np.ndarray:
    """As :func:`resample_box`, pasted into a zero array of the whole target grid."""
    dtype = np.float32 if mode == "bilinear" else values.dtype
    out = np.zeros(tuple(to_shape), dtype=dtype)
    found = resample_box(values, box, affine, to_affine=to_affine, to_shape=to_shape, mode=mode)
    if found is not None:
        out[found[0]] = found[1]
    return out


def world_of(index: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) ``(N, 3)`` of voxel indices ``index`` ``(N, 3)`` on grid ``affine``."""
    return (np.c_[index, np.ones(len(index))] @ np.asarray(affine).T)[:, :3]


def sample_at(data: np.ndarray, affine: np.ndarray, world: np.ndarray, *, order: int) -> np.ndarray:
    """Values of ``data`` (grid ``affine``) at world points ``(N, 3)`` (spline ``order``: 0 nearest, 1
    trilinear); 0 outside."""
    at = (np.c_[world, np.ones(len(world))] @ np.linalg.inv(affine).T)[:, :3]
    return ndimage.map_coordinates(data, at.T, order=order, mode="constant", cval=0.0)
