"""Provenance written into bundles and results: package versions, machine, device, simulated origin."""

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
