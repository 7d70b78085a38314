"""On-disk cache of numeric arrays, keyed by content hashes; no pickle anywhere.

An entry is one ``.npz`` file (``np.savez``, read back with ``allow_pickle=False``),
written atomically. An entry that cannot be read is removed and reported as a miss,
so the caller recomputes it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


def content_digest(path: Path) -> str:
    """sha256 (hex) of a file's bytes, or of every file below a folder (relative names + bytes, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


class ArrayCache:
    """Folder of ``<key>.npz`` entries; ``hits`` and ``misses`` count lookups."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def get(self, key: str, *, required: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
        """Arrays stored under ``key`` or None (missing, unreadable or lacking a ``required`` name)."""
        file = self.path(key)
        if file.is_file():
            try:
                with np.load(file, allow_pickle=False) as stored:
                    arrays = {name: stored[name] for name in stored.files}
                if all(name in arrays for name in required):
                    self.hits += 1
                    return arrays
            except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
                pass
            file.unlink(missing_ok=True)  # corrupt or outdated: recompute
        self.misses += 1
        return None

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store ``arrays`` under ``key`` (atomic replace; safe with parallel writers)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, allow_pickle=False, **arrays)  # type: ignore[arg-type]
            os.replace(tmp, self.path(key))
        finally:
            Path(tmp).unlink(missing_ok=True)
