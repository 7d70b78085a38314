"""Explanation tests reuse the tiny cohorts and bundles of the model tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
