"""Fixtures of the training tests: the tiny on-disk cohort and fast configs of the model tests."""

from __future__ import annotations

import json

import pytest
from model_fixtures import FAST, SMALL, write_disk_cohort

from pfs_core.config import to_dict


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
