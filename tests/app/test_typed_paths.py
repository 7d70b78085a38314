"""On a server with PFS_CORE_DATA_ROOTS set, paths typed on the cohort pages stay inside those folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pfs_core.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # pfs_ui is not an installed package: streamlit run adds the app's folder
    sys.path.insert(0, str(ROOT))

from pfs_ui.cohort_view import CohortSource, check_typed_paths  # noqa: E402


def test_typed_paths_outside_the_data_roots_are_refused_alike(tmp_path, monkeypatch):
    inside = tmp_path / "data"
    inside.mkdir()
    (inside / "cohort.csv").write_text("patient_id\n")
    monkeypatch.setenv("PFS_CORE_DATA_ROOTS", str(inside))
    check_typed_paths(CohortSource(inside / "cohort.csv", None, inside))
    messages = []
    for source in (CohortSource(tmp_path / "elsewhere.csv", None, None), CohortSource(None, object(), tmp_path.parent),
                   CohortSource(inside / ".." / "x.csv", None, None)):
        with pytest.raises(InputError, match="not found or not allowed") as caught:
            check_typed_paths(source)
        messages.append(str(caught.value).split(":")[0])
    assert messages == ["Cohort table", "Image folder", "Cohort table"]


def test_without_the_setting_any_path_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv("PFS_CORE_DATA_ROOTS", raising=False)
    check_typed_paths(CohortSource(tmp_path / "anywhere.csv", None, tmp_path))
