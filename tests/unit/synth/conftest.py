"""Shared tiny cohorts for the simulator tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pfs_core.synth import simulate_cohort

IMAGE_SEED = 4  # small image cohort of the determinism, hash and image tests (liver and other lesion sites)
IMAGE_N = 3


@pytest.fixture(scope="session")
def image_spec() -> tuple[int, int]:
    """(n, seed) of the image cohorts."""
    return IMAGE_N, IMAGE_SEED


@pytest.fixture(scope="session")
def image_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "img_w1"
    simulate_cohort(IMAGE_N, IMAGE_SEED, out_dir=out, images=True, workers=1)
    return out


@pytest.fixture(scope="session")
def image_cohort_w2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "img_w2"
    simulate_cohort(IMAGE_N, IMAGE_SEED, out_dir=out, images=True, workers=2)
    return out


@pytest.fixture(scope="session")
def tables_400(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tab400"
    simulate_cohort(400, 7, out_dir=out, images=False)
    return out


@pytest.fixture(scope="session", autouse=True)
def _warm_reference() -> None:
    """Compute (or load) the cached reference population once, on two processes."""
    from pfs_core.synth.reference import reference_raw_parts

    reference_raw_parts(2)
