"""Fixtures of the model tests (helpers in model_fixtures.py)."""

from __future__ import annotations

import json

import pytest
from model_fixtures import FAST, SMALL, make_cohort, write_disk_cohort

from pfs_core.config import to_dict
from pfs_core.dataset import CohortData


@pytest.fixture
def cohort() -> CohortData:
    return make_cohort()


@pytest.fixture(scope="session")
def disk_cohort(tmp_path_factory):
    return write_disk_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="session")
def small_json(tmp_path_factory):
    """(preprocess JSON, train-config JSON) for fast command-line runs."""
    folder = tmp_path_factory.mktemp("configs")
    (folder / "pre.json").write_text(json.dumps(to_dict(SMALL)))
    (folder / "train.json").write_text(json.dumps(to_dict(FAST)))
    return folder / "pre.json", folder / "train.json"
