"""Read a NIfTI file (``.nii`` / ``.nii.gz``) into a float32 3D array and its RAS affine."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip

from pfs_core.errors import InputError
from pfs_core.imaging.validate import check_grid, squeeze_to_3d


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _with_data_in_memory(img: nib.spatialimages.SpatialImage, path: Path) -> nib.spatialimages.SpatialImage:
    """``img`` with a .gz file decompressed by ISA-L (``isal``), faster than Python's zlib (1.3-1.5x measured here)."""
    if path.suffix.lower() != ".gz" or not hasattr(type(img), "from_bytes"):
        return img
    return type(img).from_bytes(igzip.decompress(path.read_bytes()))


def read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(data, affine)``: float32 ``(I, J, K)`` as stored (scl_slope applied) and the 4x4 RAS affine (mm)."""
    where = str(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:
        raise InputError(
            f"{where}: not a readable NIfTI file ({_reason(exc)}); give a .nii/.nii.gz image, "
            "a DICOM series folder or a .zip of one"
        ) from exc
    if not isinstance(img, nib.spatialimages.SpatialImage):
        raise InputError(f"{where}: not a NIfTI image; give a .nii/.nii.gz image")
    shape = squeeze_to_3d(tuple(int(n) for n in img.shape), where)
    affine = np.asarray(img.affine, dtype=np.float64)
    check_grid(shape, affine, where)
    try:
        data = np.asarray(_with_data_in_memory(img, path).get_fdata(dtype=np.float32)).reshape(shape)
    except Exception as exc:
        raise InputError(
            f"{where}: the image data cannot be read ({_reason(exc)}); the file is truncated or damaged: "
            "copy or export it again"
        ) from exc
    return data, affine
