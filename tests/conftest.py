"""Suite-wide fixtures: tiny model bundles trained once per session (docs/testing.md).

The helpers of the model tests (``tests/unit/models/model_fixtures.py``: the tiny cohorts and the one
fast training configuration ``FAST``) are importable from every test folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# One torch/BLAS thread per test process (set before torch or numpy is imported; an exported value wins):
# the tests' tensors are tiny, and the 2 cores run 2 xdist workers (pyproject addopts) or share with other
# work. OpenMP threads spin-wait for each other on busy cores: 2 threads made single tests up to 7× slower
# (pfs_core.models.device.cpu_threads). Subprocesses (the CLI, the background runs, the app) inherit it.
for _name in ("PFS_CORE_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

# With a CUDA build of torch (what pip installs on Python 3.12), the first optimiser imports triton, whose
# bundled LLVM crashes the process (segmentation fault) when VTK's off-screen renderer (Mesa llvmpipe) was
# loaded first; the other order is fine. The product never renders and trains in one process; an xdist
# worker does, so torch's compiler stack (and triton, where installed) is loaded before any test runs.
import torch._dynamo  # noqa: E402, F401

MODEL_FIXTURES = Path(__file__).resolve().parent / "unit" / "models"
if str(MODEL_FIXTURES) not in sys.path:
    sys.path.insert(0, str(MODEL_FIXTURES))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_bundle(name)``: the folder of a bundle of model ``name`` trained on ``make_cohort(18)`` with
    ``FAST``, 3 folds, seed 0; trained on first use, then shared by every test of the session (of the
    xdist worker). Tests only read it: copy it (``shutil.copytree``) before changing a file."""
    from model_fixtures import FAST, PROVENANCE, make_cohort

    from pfs_core.models.registry import get_spec
    from pfs_core.training.bundle import train_bundle

    root = tmp_path_factory.mktemp("tiny_bundles")
    trained: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in trained:
            trained[name] = train_bundle(make_cohort(18), get_spec(name), root / name, folds=3, seed=0,
                                         config=FAST, provenance=PROVENANCE)
        return trained[name]

    return get


@pytest.fixture(scope="session")
def disk_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny cohort written to disk (cohort.csv and NIfTI images) once per session (model and training tests)."""
    from model_fixtures import write_disk_cohort

    return write_disk_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="session")
def small_json(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(preprocess JSON, train-config JSON) for fast command-line runs."""
    import json

    from model_fixtures import FAST, SMALL

    from pfs_core.config import to_dict

    folder = tmp_path_factory.mktemp("configs")
    (folder / "pre.json").write_text(json.dumps(to_dict(SMALL)))
    (folder / "train.json").write_text(json.dumps(to_dict(FAST)))
    return folder / "pre.json", folder / "train.json"
