"""Read a NIfTI file (``.nii`` / ``.nii.gz``) into a float32 3D array and its RAS affine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip

from pfs_core.errors import InputError
from pfs_core.io.validate import check_grid, squeeze_to_3d

FLOAT32_MAX = float(np.finfo(np.float32).max)
CHUNK_BYTES = 1 << 22  # stored voxels read and converted per step: small next to the volume, large per call


@dataclass(frozen=True)
class NiftiData:
    """What :func:`read_nifti_data` read.

    Attributes:
        data: float32 ``(I, J, K)`` as stored, scl_slope/scl_inter applied (nibabel's ``get_fdata``).
        affine: ``(4, 4)`` voxel → world mm (RAS).
        finite: True when no voxel can be NaN or infinite: stored as integers, with finite scale factors
            that keep every stored value within float32. False means "not known", not "not finite".
        value_range: ``(min, max)`` of ``data`` when it was computed while reading (NaN if a voxel is NaN),
            else None.
    """

    data: np.ndarray
    affine: np.ndarray
    finite: bool
    value_range: tuple[float, float] | None = None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _integers_stay_finite(dtype: np.dtype, slope: float, inter: float) -> bool:
    """Whether every value of integer ``dtype`` times ``slope`` plus ``inter`` is a finite float32."""
    if dtype.kind not in "iu" or not (np.isfinite(slope) and np.isfinite(inter)):
        return False
    info = np.iinfo(dtype)
    largest = abs(float(slope)) * max(abs(int(info.min)), int(info.max)) + abs(float(inter))
    return largest < 0.5 * FLOAT32_MAX


def _read_voxels(img: nib.Nifti1Image, path: Path,
                 shape: tuple[int, int, int]) -> tuple[np.ndarray, tuple[float, float]]:
    """The scaled float32 voxels (Fortran order, as nibabel returns them) and their ``(min, max)``.

    nibabel reads the file from a stream: ISA-L's gzip (``isal``, 1.3-1.5x faster than the zlib that
    nibabel would use) for ``.nii.gz``. The slabs of ``img.dataobj[:, :, k0:k1]`` are the values
    ``get_fdata(dtype=np.float32)`` returns (the same scaling, then the same cast), but only one slab of
    stored voxels is held at a time, and its minimum and maximum are taken while it is in cache (the whole
    ``get_fdata`` costs a copy of the decompressed file and ~25% more time on a 512x512x300 CT, measured).
    The stream is read to its end, so the gzip trailer (CRC, length) is checked.
    """
    opener = igzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as stream:
        proxy = type(img).from_stream(stream).dataobj
        out = np.empty(shape, dtype=np.float32, order="F")
        slice_bytes = shape[0] * shape[1] * np.dtype(img.get_data_dtype()).itemsize
        step = max(1, CHUNK_BYTES // slice_bytes)
        low, high = np.float32(np.inf), np.float32(-np.inf)
        for k in range(0, shape[2], step):
            part = out[:, :, k:k + step]
            part[...] = np.asanyarray(proxy[:, :, k:k + step]).reshape(part.shape)  # trailing 1-axes dropped
            low, high = np.minimum(low, part.min()), np.maximum(high, part.max())  # NaN propagates
        stream.read()
    return out, (float(low), float(high))


def read_nifti_data(path: Path) -> NiftiData:
    """Read a NIfTI as :class:`NiftiData` (float32 ``(I, J, K)``, RAS affine, whether finite by construction)."""
    where = str(path)
    try:
        img = nib.load(str(path))  # the header only: nothing is allocated from it before the checks below
    except Exception as exc:
        raise InputError(
            f"{where}: not a readable NIfTI file ({_reason(exc)}); give a .nii/.nii.gz image, "
            "a DICOM series folder or a .zip of one"
        ) from exc
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is one too
        raise InputError(f"{where}: not a NIfTI image; give a .nii/.nii.gz image")
    shape = squeeze_to_3d(tuple(int(n) for n in img.shape), where)
    affine = np.asarray(img.affine, dtype=np.float64)
    check_grid(shape, affine, where)
    try:
        data, value_range = _read_voxels(img, path, shape)
    except Exception as exc:
        raise InputError(
            f"{where}: the image data cannot be read ({_reason(exc)}); the file is truncated or damaged: "
            "copy or export it again"
        ) from exc
    proxy = img.dataobj  # its public slope and inter are the file's scaling (img.header's are reset on load)
    finite = _integers_stay_finite(np.dtype(img.get_data_dtype()), getattr(proxy, "slope", np.nan),
                                   getattr(proxy, "inter", np.nan))
    return NiftiData(data=data, affine=affine, finite=finite, value_range=value_range)
