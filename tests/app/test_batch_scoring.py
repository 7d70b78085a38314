"""Batch scoring page: a cohort with two bad rows lists both by row number and scores the rest; CSV download."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

PAGE = "pages/batch_scoring.py"
N = 12


def finished_train_run(runs_dir: Path, bundle: Path | None = None, *, model: str = "lab_pet") -> Path:
    """A finished training run folder (run.json, exit_code 0, bundle/) with a tiny bundle of ``model``: a copy
    of ``bundle`` (e.g. the session's ``tiny_bundle(model)``), else one trained here (1 epoch, 16³ voxels)."""
    from pfs_core.jobs.runs import RunInfo, save_run

    folder = runs_dir / f"20260101-000000-train-{model}"
    folder.mkdir(parents=True)
    if bundle is not None:
        shutil.copytree(bundle, folder / "bundle")
    else:
        from model_fixtures import FAST, PROVENANCE, make_cohort

        from pfs_core.models.registry import get_spec
        from pfs_core.training.bundle import train_bundle

        train_bundle(make_cohort(15), get_spec(model), folder / "bundle", folds=3, seed=0, config=FAST,
                     provenance=PROVENANCE)
    (folder / "exit_code").write_text("0\n")
    save_run(RunInfo(folder.name, "train", ["python", "-m", "pfs_core", "train"], "2026-01-01", os.getpid(), folder))
    return folder / "bundle"


def cohort_with_two_bad_rows(folder: Path) -> Path:
    """Tiny on-disk cohort; spreadsheet row 3 names a missing PET file, row 6 has an impossible chromogranin A."""
    from model_fixtures import write_disk_cohort

    csv_path = write_disk_cohort(folder, n=N)
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    frame.loc[1, "pet"] = "images/missing_pet.nii.gz"
    frame.loc[4, "chromogranin_a"] = "-7"
    bad = folder / "bad_cohort.csv"
    frame.to_csv(bad, index=False)
    return bad


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    """The page's dataframe that has ``column`` (AppTest does not look dataframes up by key)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_bundle):
    root = tmp_path_factory.mktemp("batch")
    bundle = finished_train_run(root / "runs", tiny_bundle("lab_pet"))  # lab + PET, 1 epoch at 16³ voxels
    return root, bundle, cohort_with_two_bad_rows(root / "cohort")


@pytest.fixture
def at(setup, monkeypatch, app_path) -> AppTest:
    root = setup[0]
    monkeypatch.setenv("PFS_RUNS_DIR", str(root / "runs"))
    monkeypatch.setenv("PFS_MODELS_DIR", str(root / "no_models"))  # only the test bundle
    monkeypatch.setenv("PFS_CACHE_DIR", str(root / "cache"))
    app = AppTest.from_file(app_path, default_timeout=120)
    app.switch_page(PAGE).run()
    assert not app.exception, app.exception
    return app


@pytest.mark.slow
def test_two_bad_rows_listed_and_the_rest_scored(at, setup):
    _, bundle, bad = setup
    at.selectbox(key="bundle").set_value(bundle).run()
    at.text_input(key="cohort_path").set_value(str(bad)).run()
    at.button(key="score_button").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    problems = table_with(at, "reason")
    assert list(problems["row"]) == [3, 6]
    assert list(problems["column"]) == ["pet", "chromogranin_a"]
    scores = table_with(at, "probability")
    assert len(scores) == N - 2 and not set(scores["patient_id"]) & {"P001", "P004"}
    assert {"probability", "interval_low", "interval_high", "risk_group", "warnings"} <= set(scores.columns)
    assert scores["probability"].between(0, 1).all()
    assert at.get("download_button"), "no CSV download"
    assert {m.label: m.value for m in at.metric} == {"Rows": "12", "Usable rows": "10", "Rows with problems": "2"}


@pytest.mark.slow
def test_unusable_file_is_an_error_box(at, setup):
    at.selectbox(key="bundle").set_value(setup[1]).run()
    at.text_input(key="cohort_path").set_value(str(setup[0] / "no_such.csv")).run()
    at.button(key="score_button").click().run()
    assert not at.exception, at.exception
    assert any("not found" in e.value for e in at.error)


def test_no_bundle_says_how_to_get_one(monkeypatch, app_path, tmp_path):
    monkeypatch.setenv("PFS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PFS_MODELS_DIR", str(tmp_path / "models"))
    at = AppTest.from_file(app_path, default_timeout=60)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert any("No model bundle found" in e.value for e in at.error)
