"""Streamlit glue shared by the pages: paths, cached loaders, uploads, error boxes, session helpers.

All computing lives in :mod:`pfs_core`; this module only adapts it to Streamlit.
Uploaded files are written to a temporary folder that is removed as soon as they
are loaded, and no patient value is ever logged.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from pfs_core import DISCLAIMER
from pfs_core.errors import PfsError

ROOT = Path(__file__).resolve().parents[1]
#: Bundles shown by the pages; PFS_MODELS_DIR points the dashboard at a group's own models instead.
MODELS_DIR = ROOT / "models"
SAMPLE_DIR = ROOT / "sample_data"
RUNS_DIR = ROOT / "runs"
SHIPPED_RESULTS = ROOT / "results"


def show_disclaimer() -> None:
    """The disclaimer banner shown at the top of every page."""
    st.warning(DISCLAIMER, icon=":material/science:")


def show_error(exc: PfsError) -> None:
    """A friendly error box for an input problem (never a traceback)."""
    st.error(str(exc), icon=":material/error:")


def models_dir() -> Path:
    """Folder of model bundles: $PFS_MODELS_DIR if set, else the shipped models/."""
    return Path(os.environ.get("PFS_MODELS_DIR", MODELS_DIR))


def list_bundles(root: Path | None = None) -> list[Path]:
    """Model bundle folders (those holding a manifest.json) under ``root`` (default :func:`models_dir`), default model first."""
    from pfs_core.registry import DEFAULT_MODEL

    root = models_dir() if root is None else root
    found = sorted(p for p in root.glob("*") if (p / "manifest.json").is_file())
    return sorted(found, key=lambda p: p.name != DEFAULT_MODEL)


@st.cache_resource(show_spinner="Loading and verifying the model bundle...")
def cached_bundle(path: str, fingerprint: float) -> Any:
    """Load a bundle once per process (``fingerprint``: manifest mtime, so a retrained bundle reloads)."""
    from pfs_core.bundle import load_bundle

    return load_bundle(Path(path))


def load_bundle_ui(path: Path) -> Any:
    """Cached, verified bundle; raises BundleError with the reason when it fails its checks."""
    return cached_bundle(str(path), (path / "manifest.json").stat().st_mtime)


@st.cache_data(show_spinner=False)
def sample_cases(folder: str = str(SAMPLE_DIR)) -> pd.DataFrame:
    """The shipped demonstration cases (cohort.csv of sample_data/, image paths made absolute)."""
    frame = pd.read_csv(Path(folder) / "cohort.csv")
    for column in ("pet", "ct"):
        frame[column] = [str(Path(folder) / p) for p in frame[column]]
    return frame


@contextmanager
def uploaded_files(**files: Any) -> Iterator[dict[str, Path]]:
    """Write Streamlit uploads to a private temporary folder; the folder is deleted on exit.

    ``files``: name → UploadedFile (or None). Yields name → path (the original
    file name is kept, so .nii.gz and .zip are recognised and messages name it).
    """
    with tempfile.TemporaryDirectory(prefix="pfs_upload_") as folder:
        paths = {}
        for name, upload in files.items():
            if upload is None:
                continue
            path = Path(folder) / name / Path(upload.name).name
            path.parent.mkdir()
            path.write_bytes(upload.getvalue())
            paths[name] = path
        yield paths


def device_label() -> str:
    """'GPU: <name>' when CUDA is present, else 'CPU'."""
    import torch

    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return "CPU"


def session_value(key: str, default: Any = None) -> Any:
    """Typed-enough access to one session-state slot."""
    return st.session_state.get(key, default)


def set_session_value(key: str, value: Any) -> None:
    st.session_state[key] = value


def without_folders(message: str, paths: dict[str, Path]) -> str:
    """``message`` with the private temporary folders removed, so it names the user's own file."""
    for path in paths.values():
        message = message.replace(f"{path.parent}/", "")
    return message


def _import_heavy() -> None:
    import importlib

    for name in ("pfs_core.explain", "pfs_core.geometry", "pfs_core.viz.explain", "pfs_core.viz.scene",
                 "pfs_core.viz.images", "pfs_core.viz.curves", "pfs_core.report", "pfs_core.display"):
        importlib.import_module(name)


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Import the explanation stack (shap, captum, pyvista...) once per process, in the background.

    The first Predict would otherwise pay several seconds of imports after the click.
    """
    thread = threading.Thread(target=_import_heavy, name="pfs-warm-up", daemon=True)
    thread.start()
    return thread
