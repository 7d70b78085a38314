"""Read a NIfTI file (``.nii`` / ``.nii.gz``) into a float32 3D array and its RAS affine."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from io import BufferedIOBase
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip

from pfs_core.errors import InputError
from pfs_core.io.reduce import Factors, Reduce, reduce_block, reduced_affine, reduced_shape, working_factors
from pfs_core.io.validate import check_grid, squeeze_to_3d
from pfs_core.io.volume import voxel_spacing
from pfs_core.limits import describe, limits, refuse

FLOAT32_MAX = float(np.finfo(np.float32).max)
CHUNK_BYTES = 1 << 22  # stored voxels read and converted per step: small next to the volume, large per call
TRAILING_SLACK_BYTES = 1 << 20  # bytes after the voxels a file may hold (none in files we know of)
MAX_EXTENSION_BYTES = 64 << 20  # header extensions (label names, DICOM tags) are read whole by nibabel
_HEADERS = {348: nib.Nifti1Header, 540: nib.Nifti2Header}  # sizeof_hdr → header class


@dataclass(frozen=True)
class NiftiData:
    """What :func:`read_nifti_data` read.

    Attributes:
        data: float32 ``(I, J, K)`` as stored, scl_slope/scl_inter applied (nibabel's ``get_fdata``).
        affine: ``(4, 4)`` voxel → world mm (RAS).
        finite: True when no voxel can be NaN or infinite: stored as integers, with finite scale factors
            that keep every stored value within float32. False means "not known", not "not finite".
        value_range: ``(min, max)`` of the stored voxels when computed while reading (NaN if a voxel is
            NaN), else None.
        reduced_by: whole-number factors per axis of the working grid (:mod:`pfs_core.io.reduce`).
        full_shape: voxels per axis as stored in the file.
    """

    data: np.ndarray
    affine: np.ndarray
    finite: bool
    value_range: tuple[float, float] | None = None
    reduced_by: Factors = (1, 1, 1)
    full_shape: tuple[int, int, int] | None = None


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


def _open(path: Path, *, fast: bool = True) -> BufferedIOBase:
    """The decompressed byte stream of ``path``: for ``.gz`` ISA-L's gzip (1.3-1.5x faster than zlib), or
    without ``fast`` Python's, which decompresses in small steps (a damaged file fails only where it is
    damaged, as in nibabel)."""
    if path.suffix.lower() == ".gz":
        return igzip.open(path, "rb") if fast else gzip.open(path, "rb")
    return open(path, "rb")


def _skip(stream: BufferedIOBase, count: int) -> int:
    """Read and drop up to ``count`` bytes in bounded chunks; the number of bytes there were."""
    seen = 0
    while seen < count:
        got = len(stream.read(min(CHUNK_BYTES, count - seen)))
        if not got:
            break
        seen += got
    return seen


def _check_extensions(stream: BufferedIOBase, header: nib.Nifti1Header, offset: int, where: str) -> None:
    """Each header extension must fit between the header and ``offset`` (nibabel reads each one whole,
    and a size field of 0 would make it read the rest of the file); ``stream`` is past the 4 flag bytes."""
    position = len(header.binaryblock) + 4
    if offset - position > MAX_EXTENSION_BYTES:
        raise InputError(f"{where}: the header extensions take {offset - position} bytes (at most "
                         f"{MAX_EXTENSION_BYTES} read); the header is damaged: re-export the image")
    order = "<" if header.endianness == "<" else ">"
    while position + 16 <= offset:
        raw = stream.read(8)
        size = int(np.frombuffer(raw, dtype=f"{order}i4")[0]) if len(raw) == 8 else -1
        if size < 16 or position + size > offset:
            raise InputError(f"{where}: a header extension has an impossible size; the header is damaged: "
                             "re-export the image")
        _skip(stream, size - 8)
        position += size


def _check_header(path: Path, where: str) -> int:
    """Bytes of the stored voxels after the header's checks, read before nibabel allocates anything.

    Refused (InputError naming the limit): offset + voxel bytes beyond ``max_decompressed_bytes``; a
    ``.nii`` shorter than its header says; header extensions that do not fit before the data. More
    voxels than ``max_voxels`` is left to :func:`check_grid`, which runs on the header alone.
    """
    with _open(path, fast=False) as stream:
        raw = stream.read(540)
        sizes = {int.from_bytes(raw[:4], order) for order in ("little", "big")} if len(raw) >= 4 else set()
        known = sorted(sizes & set(_HEADERS))
        if not known or len(raw) < known[0] + 4:
            return 0  # not NIfTI: nib.load gives the message
        length = known[0]
        header = _HEADERS[length](raw[:length], check=False)
        shape = tuple(int(n) for n in header.get_data_shape())
        voxels = int(np.prod(shape, dtype=object)) if shape else 0
        offset = int(float(header["vox_offset"]))
        data_bytes = voxels * np.dtype(header.get_data_dtype()).itemsize
        if voxels > limits().max_voxels:
            pass  # refused by check_grid from the header, before any voxel is read, with the size rules
        elif offset < length and bytes(header["magic"]).rstrip(b"\0") in (b"n+1", b"n+2"):  # one file
            raise InputError(f"{where}: the header puts the voxels at byte {offset}, inside the header itself "
                             f"({length} bytes); the header is damaged: re-export the image")
        elif offset + data_bytes > limits().max_decompressed_bytes:
            raise refuse(where, f"the header describes {describe('max_decompressed_bytes', offset + data_bytes)} "
                         "of header and voxels once decompressed", "max_decompressed_bytes")
        if path.suffix.lower() != ".gz" and offset + data_bytes > path.stat().st_size:
            raise InputError(f"{where}: the image data cannot be read (truncated: the header describes "
                             f"{offset + data_bytes} bytes of header and voxels, the file has {path.stat().st_size}); "
                             "the file is truncated or damaged: copy or export it again")
        if raw[length:length + 1] not in (b"", b"\x00"):
            stream.seek(length + 4)
            _check_extensions(stream, header, offset, where)
    return data_bytes


def _read_voxels(img: nib.Nifti1Image, path: Path, shape: tuple[int, int, int], factors: Factors,
                 how: Reduce) -> tuple[np.ndarray, tuple[float, float]]:
    """The scaled float32 voxels on the working grid (Fortran order, as nibabel returns them) and the
    ``(min, max)`` of the stored voxels.

    nibabel reads the file from a stream: ISA-L's gzip (``isal``, 1.3-1.5x faster than the zlib that
    nibabel would use) for ``.nii.gz``. The slabs of ``img.dataobj[:, :, k0:k1]`` are the values
    ``get_fdata(dtype=np.float32)`` returns (the same scaling, then the same cast), but only one slab of
    stored voxels is held at a time, reduced by ``factors`` (:mod:`pfs_core.io.reduce`) before the next is
    read, and its minimum and maximum are taken while it is in cache (the whole ``get_fdata`` costs a copy
    of the decompressed file and ~25% more time on a 512x512x300 CT, measured).
    The stream is read to its end in bounded chunks, so the gzip trailer (CRC, length) is checked, and
    more than ``TRAILING_SLACK_BYTES`` after the voxels (a gzip bomb behind a small image) is refused.
    """
    reduced = factors != (1, 1, 1)
    with _open(path) as stream:
        proxy = type(img).from_stream(stream).dataobj
        out = np.empty(reduced_shape(shape, factors), dtype=np.float32, order="F")
        slice_bytes = shape[0] * shape[1] * np.dtype(img.get_data_dtype()).itemsize
        step = max(1, CHUNK_BYTES // slice_bytes // factors[2]) * factors[2]
        low, high = np.float32(np.inf), np.float32(-np.inf)
        for k in range(0, out.shape[2] * factors[2], step):
            part = np.asanyarray(proxy[:, :, k:k + step], dtype=np.float32)
            part = part.reshape(shape[:2] + (part.size // (shape[0] * shape[1]),))  # trailing 1-axes dropped
            low, high = np.minimum(low, part.min()), np.maximum(high, part.max())  # NaN propagates
            out[:, :, k // factors[2]:(k + part.shape[2]) // factors[2]] = \
                reduce_block(part, factors, how) if reduced else part
        allowed = TRAILING_SLACK_BYTES + (shape[2] % factors[2]) * slice_bytes  # + the slices a reduction leaves
        if _skip(stream, allowed + 1) > allowed:
            raise InputError(f"{path}: the file holds more data after the image than its header describes "
                             f"(over {TRAILING_SLACK_BYTES} bytes); re-export the image")
    return out, (float(low), float(high))


def read_nifti_data(path: Path, *, how: Reduce = "mean") -> NiftiData:
    """Read a NIfTI as :class:`NiftiData` (float32 ``(I, J, K)``, RAS affine, whether finite by construction).

    A volume above ``max_working_voxels`` (:mod:`pfs_core.limits`) is read onto a coarser working grid
    (:mod:`pfs_core.io.reduce`): ``how`` "mean" for intensities, "nearest" for label maps.
    """
    where = str(path)
    try:
        _check_header(path, where)
        img = nib.load(str(path))  # the header only: nothing is allocated from it before the checks below
    except InputError:
        raise
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
        factors = working_factors(shape, voxel_spacing(affine), limits().max_working_voxels)
        data, value_range = _read_voxels(img, path, shape, factors, how)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"{where}: the image data cannot be read ({_reason(exc)}); the file is truncated or damaged: "
            "copy or export it again"
        ) from exc
    proxy = img.dataobj  # its public slope and inter are the file's scaling (img.header's are reset on load)
    finite = _integers_stay_finite(np.dtype(img.get_data_dtype()), getattr(proxy, "slope", np.nan),
                                   getattr(proxy, "inter", np.nan))
    return NiftiData(data=data, affine=reduced_affine(affine, factors), finite=finite,
                     value_range=value_range, reduced_by=factors, full_shape=shape)
