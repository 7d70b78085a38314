"""Fixtures of the model tests (helpers in model_fixtures.py)."""

from __future__ import annotations

import pytest
from model_fixtures import make_cohort

from pfs_core.dataset import CohortData


@pytest.fixture
def cohort() -> CohortData:
    return make_cohort()
