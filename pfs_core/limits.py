"""Named limits on what an input may cost to read: voxels, decompressed bytes, zip contents, file sizes.

Each limit has a default sized for clinical scans (a 512x512x1200 CT stored as int16 passes every one)
and an environment variable that raises or lowers it (read on each call of :func:`limits`, so a
server can be configured without code). A refused input names the limit, its value and the variable:
:func:`refuse` writes that message. This module sits at the bottom layer: it imports only
:mod:`pfs_core.errors`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, fields
from pathlib import Path

from pfs_core.errors import InputError, UsageError

MIB = 1024**2


@dataclass(frozen=True)
class Limits:
    """The limits in force (bytes or counts; each field's ``metadata`` names its environment variable)."""

    max_voxels: int = 512 * 512 * 2048
    max_decompressed_bytes: int = 1536 * MIB  # one image file's offset + voxel bytes (int16 512x512x1200: 600 MiB)
    max_zip_bytes: int = 2048 * MIB  # all members of one zip, uncompressed
    max_zip_member_bytes: int = 64 * MIB  # one member (a DICOM slice is well under 1 MiB)
    max_zip_members: int = 20_000
    max_dicom_files: int = 20_000  # files looked at below one DICOM folder
    max_dicom_depth: int = 8  # folder levels below a DICOM folder
    max_labs_bytes: int = 64 * 1024
    max_config_bytes: int = MIB  # a preprocess or train config JSON
    max_cohort_bytes: int = 50 * MIB
    max_working_voxels: int = 40_000_000  # larger scans are read onto a coarser grid (pfs_core.io.reduce)


#: field → (environment variable, unit it is given in, bytes per unit)
ENVIRONMENT: dict[str, tuple[str, str, int]] = {
    "max_voxels": ("PFS_CORE_MAX_VOXELS", "voxels", 1),
    "max_decompressed_bytes": ("PFS_CORE_MAX_DECOMPRESSED_MB", "MiB", MIB),
    "max_zip_bytes": ("PFS_CORE_MAX_ZIP_MB", "MiB", MIB),
    "max_zip_member_bytes": ("PFS_CORE_MAX_ZIP_MEMBER_MB", "MiB", MIB),
    "max_zip_members": ("PFS_CORE_MAX_ZIP_MEMBERS", "files", 1),
    "max_dicom_files": ("PFS_CORE_MAX_DICOM_FILES", "files", 1),
    "max_dicom_depth": ("PFS_CORE_MAX_DICOM_DEPTH", "folder levels", 1),
    "max_labs_bytes": ("PFS_CORE_MAX_LABS_KB", "KiB", 1024),
    "max_config_bytes": ("PFS_CORE_MAX_CONFIG_KB", "KiB", 1024),
    "max_cohort_bytes": ("PFS_CORE_MAX_COHORT_MB", "MiB", MIB),
    "max_working_voxels": ("PFS_CORE_MAX_WORKING_VOXELS", "voxels", 1),
}


def limits() -> Limits:
    """The defaults of :class:`Limits`, each replaced by its environment variable when set.

    UsageError when a variable is set to anything but a positive whole number.
    """
    values = {}
    for item in fields(Limits):
        variable, unit, scale = ENVIRONMENT[item.name]
        text = os.environ.get(variable, "").strip()
        if not text:
            continue
        if not text.isdigit() or int(text) < 1:
            raise UsageError(f"{variable}={text!r} is not a positive whole number of {unit}; "
                             "set it to e.g. twice the default or unset it")
        values[item.name] = int(text) * scale
    return Limits(**values)


def describe(name: str, value: int | None = None) -> str:
    """``value`` (default: the limit in force) of limit ``name`` in the unit of its variable, e.g. "64 MiB"."""
    _variable, unit, scale = ENVIRONMENT[name]
    amount = getattr(limits(), name) if value is None else value
    shown = f"{amount / scale:.4g}" if amount % scale else str(amount // scale)
    return f"{shown} {unit}"


def refuse(where: str, what: str, name: str) -> InputError:
    """The InputError for an input over limit ``name``: ``where: what (limit ...); set VAR to raise it``.

    ``what`` says what the input has (e.g. "the zip unpacks to more than ..."); never a patient's value.
    """
    variable = ENVIRONMENT[name][0]
    return InputError(f"{where}: {what}, over the limit {name} = {describe(name)}; if the input is genuine, "
                      f"set {variable} to raise it")


def read_capped(path: Path, name: str, *, what: str) -> bytes:
    """The bytes of the regular file ``path``, refused (InputError) past limit ``name``.

    Checked before reading: ``path`` must be a regular file (``/dev/zero``, a FIFO or a folder is refused
    at once), and at most the limit + 1 bytes are ever read, so a file that grows while read cannot hold
    the reader. ``what`` names the file in messages ("the lab JSON").
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a valid path"
        raise InputError(f"{path}: cannot read {what} ({reason}); give the path of an existing file") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: {what} is not a regular file (a folder, device or pipe); give a file")
    most = getattr(limits(), name)
    try:
        with open(path, "rb") as handle:
            data = handle.read(most + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc}); check the file") from None
    if len(data) > most:
        raise refuse(str(path), f"{what} is larger than allowed", name)
    return data
