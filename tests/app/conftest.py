"""Page tests run the real app script with streamlit's AppTest on the shipped model and sample cases."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_path() -> str:
    return str(ROOT / "app.py")
