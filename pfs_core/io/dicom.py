"""Read one DICOM image series (a folder, possibly in a .zip) into a float32 array with a RAS affine.

Slices are ordered by ``ImagePositionPatient`` projected on the slice normal (never by
file name), ``RescaleSlope``/``RescaleIntercept`` are applied per slice, and the
affine comes from ``ImageOrientationPatient``, ``PixelSpacing`` and the slice
positions, converted from DICOM LPS to RAS. Files that are not DICOM images
(RTSTRUCT, SR, text...) are skipped.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from pfs_core.errors import InputError
from pfs_core.io.reduce import Factors, reduce_block, reduced_affine, reduced_shape, working_factors
from pfs_core.io.validate import check_grid
from pfs_core.io.volume import LPS_TO_RAS, voxel_spacing
from pfs_core.limits import describe, limits, refuse

CHUNK_BYTES = 1 << 20  # bytes of one zip member decompressed per step
_IMAGE_CLASSES = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.128"}  # CT / PET Image Storage
_GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")


@dataclass
class DicomSeries:
    """A sorted DICOM series: ``data`` float32 ``(I=columns, J=rows, K=slices)`` after rescale, RAS ``affine`` (mm),
    and the slice headers in the same order as the stored slices. A series above ``max_working_voxels`` is
    read onto a coarser working grid (:mod:`pfs_core.io.reduce`): ``reduced_by`` gives its factors, and
    slice ``k`` of ``data`` is the mean of stored slices ``k * reduced_by[2]`` onwards."""

    data: np.ndarray
    affine: np.ndarray
    headers: list[Dataset]
    reduced_by: Factors = (1, 1, 1)


@contextmanager
def unzipped(path: Path) -> Iterator[Path]:
    """Extract a .zip into a temporary folder that is removed afterwards.

    Bounded by :mod:`pfs_core.limits`: at most ``max_zip_members`` members, each at most
    ``max_zip_member_bytes`` and all together at most ``max_zip_bytes`` uncompressed, counted while
    writing (the sizes a zip declares are not trusted). Member names lose ``..``, empty and absolute parts
    (``/`` and ``\\`` both separate folders), so nothing lands outside the folder; every member is written
    as a plain file (no links are made, none followed).
    """
    with tempfile.TemporaryDirectory(prefix="pfs_unzip_") as tmp:
        try:
            with zipfile.ZipFile(path) as archive:
                _extract(archive, Path(tmp), str(path))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError, ValueError,
                RuntimeError) as exc:
            raise InputError(f"{path}: not a readable .zip file ({type(exc).__name__}: {exc}); "
                             "zip the DICOM series folder again") from exc
        yield Path(tmp)


def member_target(folder: Path, name: str) -> Path | None:
    """Where member ``name`` is written below ``folder``: ``..``, ``.``, empty and drive parts dropped; None
    for a folder entry or a name with nothing left."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..") and not p.endswith(":")]
    if not parts or name.endswith(("/", "\\")):
        return None
    return folder.joinpath(*parts)


def _extract(archive: zipfile.ZipFile, folder: Path, where: str) -> None:
    """Write every file member below ``folder`` within the zip limits (see :func:`unzipped`)."""
    bounds = limits()
    members = archive.infolist()
    if len(members) > bounds.max_zip_members:
        raise refuse(where, f"the zip holds {len(members)} members", "max_zip_members")
    declared = sum(info.file_size for info in members)  # zipfile never gives more than declared: refuse early
    if declared > bounds.max_zip_bytes:
        raise refuse(where, f"the zip unpacks to {describe('max_zip_bytes', declared)}", "max_zip_bytes")
    total = 0
    for info in members:
        target = member_target(folder, info.filename)
        if target is None:
            continue
        if info.file_size > bounds.max_zip_member_bytes:
            raise refuse(where, f"member {target.name} unpacks to {describe('max_zip_member_bytes', info.file_size)}",
                         "max_zip_member_bytes")
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, open(target, "wb") as sink:
            written = 0
            while chunk := source.read(CHUNK_BYTES):
                written += len(chunk)
                total += len(chunk)
                if written > bounds.max_zip_member_bytes:
                    raise refuse(where, f"member {target.name} unpacks to more than its limit",
                                 "max_zip_member_bytes")
                if total > bounds.max_zip_bytes:
                    raise refuse(where, "the zip unpacks to more than its limit", "max_zip_bytes")
                sink.write(chunk)


def _sop_class(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else ""))


def _has_dicom_magic(file: Path) -> bool:
    with open(file, "rb") as handle:
        return handle.read(132)[128:] == b"DICM"


def regular_files(folder: Path, where: str) -> Iterator[Path]:
    """Every regular file below ``folder``, by name within each folder, folders after files.

    Links, FIFOs, devices and sockets are skipped (a FIFO would block the reader; a link could lead
    anywhere). More than ``max_dicom_files`` files or folders nested deeper than ``max_dicom_depth``
    levels are refused with the limit's name: a folder like ``/`` is not walked to its end.
    """
    bounds = limits()
    seen = 0
    pending = [(folder, 0)]
    while pending:
        current, depth = pending.pop()
        with os.scandir(current) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        folders = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                seen += 1
                if seen > bounds.max_dicom_files:
                    raise refuse(where, "the folder holds more files than a DICOM series has", "max_dicom_files")
                yield Path(entry.path)
        if folders and depth + 1 > bounds.max_dicom_depth:
            raise refuse(where, "the folder has sub-folders nested too deep for a DICOM export", "max_dicom_depth")
        pending.extend((f, depth + 1) for f in reversed(folders))


def _headers(folder: Path, where: str) -> list[tuple[Path, Dataset]]:
    """Headers of every DICOM *image* file below ``folder`` (other files are skipped)."""
    found: list[tuple[Path, Dataset]] = []
    for file in regular_files(folder, where):
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except Exception as exc:
            if _has_dicom_magic(file):
                raise InputError(f"{where}: {file.name} is a damaged DICOM file ({type(exc).__name__}); "
                                 "copy or export the series again") from exc
            continue  # not DICOM: README, DICOMDIR-less junk, thumbnails...
        if int(ds.get("NumberOfFrames", 1) or 1) > 1 and str(ds.get("Modality", "")).upper() in ("CT", "PT"):
            raise InputError(f"{where}: {file.name} is a multi-frame (enhanced) DICOM image, which is not "
                             "supported; export classic single-frame images or convert to NIfTI")
        if all(tag in ds for tag in _GEOMETRY_TAGS):
            found.append((file, ds))
        elif _sop_class(ds) in _IMAGE_CLASSES:
            raise InputError(f"{where}: {file.name} is a CT/PET image without its geometry tags (damaged or "
                             "truncated); copy or export the series again")
    return found


def _describe(items: list[tuple[Path, Dataset]]) -> str:
    ds = items[0][1]
    return f"{ds.get('Modality', '?')} '{ds.get('SeriesDescription', '')}' ({len(items)} images)"


def _prefer_attenuation_corrected(series: list[list[tuple[Path, Dataset]]]) -> list[list[tuple[Path, Dataset]]]:
    corrected = [s for s in series if "ATTN" in list(s[0][1].get("CorrectedImage", []) or [])]
    return corrected if len(corrected) == 1 else series


def choose_series(folder: Path, modality: str, where: str) -> list[tuple[Path, Dataset]]:
    """The files of the one series of ``modality`` ("CT" or "PT") in ``folder``; clear errors otherwise."""
    groups: dict[tuple[str, str], list[tuple[Path, Dataset]]] = {}
    for file, ds in _headers(folder, where):
        key = (str(ds.get("SeriesInstanceUID", "")), str(ds.get("Modality", "")).upper())
        groups.setdefault(key, []).append((file, ds))
    if not groups:
        raise InputError(
            f"{where}: no DICOM image files found (RTSTRUCT and other non-image files are ignored); "
            "give the folder of one CT or PET series, a .zip of it, or a NIfTI file"
        )
    matching = [items for (_uid, mod), items in groups.items() if mod == modality]
    if modality == "PT":
        matching = _prefer_attenuation_corrected(matching)
    found = "; ".join(_describe(items) for items in groups.values())
    if not matching:
        other = "--pet" if modality == "CT" else "--ct"
        raise InputError(
            f"{where}: no {modality} series in this folder (found: {found}); if this is the other image, pass it as {other}"
        )
    if len(matching) > 1:
        raise InputError(
            f"{where}: {len(matching)} {modality} series in one folder ({found}); "
            "give the folder (or zip) of exactly one series"
        )
    return matching[0]


def _slice_affine(headers: list[Dataset], where: str) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of the slices and the LPS affine (mm) of the sorted series."""
    iop = np.array(headers[0].ImageOrientationPatient, dtype=float)
    for ds in headers:
        if not np.allclose(np.array(ds.ImageOrientationPatient, dtype=float), iop, atol=1e-4) or (
            ds.Rows, ds.Columns) != (headers[0].Rows, headers[0].Columns):
            raise InputError(f"{where}: slices differ in orientation or size (a localizer mixed in?); "
                             "give one series with identical slices")
    row, col = iop[:3], iop[3:]
    positions = np.array([ds.ImagePositionPatient for ds in headers], dtype=float)
    depth = positions @ np.cross(row, col)
    order = np.argsort(depth, kind="stable")
    _check_steps(depth[order], where)
    positions = positions[order]
    spacing_row, spacing_col = (float(v) for v in headers[0].PixelSpacing)
    affine = np.eye(4)
    affine[:3, 0] = row * spacing_col
    affine[:3, 1] = col * spacing_row
    affine[:3, 2] = (positions[-1] - positions[0]) / max(len(positions) - 1, 1)
    affine[:3, 3] = positions[0]
    return order, affine


def _check_steps(depth: np.ndarray, where: str) -> None:
    """Sorted slice positions (mm) must be distinct and lie on a uniform grid within 10 % of a step."""
    steps = np.diff(depth)
    if steps.size == 0:
        raise InputError(f"{where}: only one slice; give the whole series")
    if (steps < 1e-3).any():
        raise InputError(f"{where}: {int((steps < 1e-3).sum())} slice(s) share a position (several acquisitions "
                         "or duplicated files in one folder); give one series without duplicates")
    step = (depth[-1] - depth[0]) / steps.size
    residual = np.abs(depth - (depth[0] + step * np.arange(depth.size))).max()
    if residual > 0.1 * step:
        raise InputError(f"{where}: slice spacing is not uniform ({steps.min():.3g}..{steps.max():.3g} mm, "
                         f"up to {residual:.2g} mm off a regular grid; missing slices?); give the complete series")


def _pixels(file: Path, where: str) -> np.ndarray:
    """Pixel values of one slice after rescale, float32 ``(columns, rows)``."""
    try:
        ds = pydicom.dcmread(file)
        pixels = ds.pixel_array
        if pixels.shape != (ds.Rows, ds.Columns):
            raise InputError(f"{where}: {file.name} is not a single grey-scale slice (pixel array {pixels.shape}); "
                             "give a CT or PET series")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{where}: cannot decode the pixels of {file.name} ({type(exc).__name__}: {exc}); "
                         "the file is damaged or compressed with a codec that is not installed "
                         "(decompress with gdcmconv/dcmdjpeg or convert to NIfTI)") from exc
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return (pixels.astype(np.float64) * slope + intercept).T.astype(np.float32)


def read_dicom_series(folder: Path, modality: str, *, where: str) -> DicomSeries:
    """Load the one ``modality`` series ("CT" or "PT") under ``folder`` as a :class:`DicomSeries`."""
    items = choose_series(folder, modality, where)
    order, affine_lps = _slice_affine([ds for _f, ds in items], where)
    first = items[0][1]
    shape = (int(first.Columns), int(first.Rows), len(items))
    affine = LPS_TO_RAS @ affine_lps
    check_grid(shape, affine, where)
    factors = working_factors(shape, voxel_spacing(affine), limits().max_working_voxels)
    data = np.empty(reduced_shape(shape, factors), dtype=np.float32)
    fz = factors[2]
    for k in range(data.shape[2]):  # fz slices at a time: memory follows the working grid
        slab = np.stack([_pixels(items[int(index)][0], where) for index in order[k * fz:(k + 1) * fz]], axis=-1)
        data[:, :, k] = reduce_block(slab, factors)[:, :, 0] if factors != (1, 1, 1) else slab[:, :, 0]
    affine = reduced_affine(affine, factors)
    return DicomSeries(data=data, affine=affine, headers=[items[int(i)][1] for i in order], reduced_by=factors)
