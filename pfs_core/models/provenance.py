"""TODO-DOC

[from pfs_core.training] Training of one registry model on one training set (a CV fold, or one fold of a bundle).

Everything a model sees comes from :class:`CohortData` (labs, outcome, and the
preprocessed PET/CT of :mod:`pfs_core.preprocessing.model_grid`). The lab transform is fitted on
the training rows given to :func:`fit_model` only; supervised fitting uses the
rows with a binary label (see :func:`pfs_core.metrics.short_pfs_label`).

Torch models: seeds fixed, AdamW, ``BCEWithLogitsLoss(pos_weight=n_neg/n_pos)``,
cosine learning-rate decay, a fixed number of epochs (no early stopping),
light augmentation (MONAI ``RandAffine``: rotations up to ``rotate_rad`` and shifts
up to ``translate_vox`` voxels, the same for PET and CT of a patient; intensity
scale jitter, plus an offset for CT; no left-right flip since anatomy is lateralised). CPU by
default with ``torch.set_num_threads(min(2, os.cpu_count()))``; CUDA when available.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

import pfs_core

VERSIONED_PACKAGES: tuple[str, ...] = (
    "torch", "monai", "numpy", "pandas", "scikit-learn", "skops", "safetensors", "lifelines", "nibabel", "plotly",
)


def runtime_info(device: str | None = None) -> dict[str, Any]:
    """Package versions, machine and device (for results.json and bundle manifests)."""


    versions: dict[str, str | None] = {"python": platform.python_version(), "pfs_core": pfs_core.__version__}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    threads = None
    try:

        threads = torch.get_num_threads()
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a hard dependency
        gpu = None
    cpus = os.cpu_count()
    machine = {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": cpus,
               "torch_threads": threads, "gpu": gpu,
               "summary": f"{platform.machine()}, {cpus} CPU cores visible, torch threads {threads}"
                          + (f", GPU {gpu}" if gpu else "")}
    return {"versions": versions, "machine": machine, "device": device}


def is_simulated(cohort_csv: str | Path) -> bool:
    """True when the cohort folder holds the simulator's ``ground_truth.csv``."""
    return (Path(cohort_csv).parent / "ground_truth.csv").is_file()
