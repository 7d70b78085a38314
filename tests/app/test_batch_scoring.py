"""Batch scoring page: a cohort with two bad rows lists both by row number and scores the rest; CSV download;
with outcomes, the validation against them (AUROC with its bootstrap interval); an uploaded table with the zip
of its images."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

PAGE = "pages/batch_scoring.py"
N = 12
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # pfs_ui is not an installed package: streamlit run (and AppTest) add the app's folder
    sys.path.insert(0, str(ROOT))


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
    errors = [e.value for e in at.error]  # only the missing image, said apart: the user must fix the path
    assert len(errors) == 1 and errors[0].startswith("Left out for an image path, row(s) 3;"), errors
    problems = table_with(at, "reason")
    assert list(problems["row"]) == [3, 6]
    assert list(problems["column"]) == ["pet", "chromogranin_a"]
    scores = table_with(at, "probability")
    assert len(scores) == N - 2 and not set(scores["patient_id"]) & {"P001", "P004"}
    assert {"probability", "interval_low", "interval_high", "risk_group", "warnings"} <= set(scores.columns)
    assert scores["probability"].between(0, 1).all()
    assert at.get("download_button"), "no CSV download"
    metrics = {m.label: m.value for m in at.metric}
    assert {k: metrics[k] for k in ("Rows", "Usable rows", "Rows with problems")} == {
        "Rows": "12", "Usable rows": "10", "Rows with problems": "2"}
    # the table has outcomes: the validation against them, AUROC with its 95 % bootstrap interval
    assert float(metrics["AUROC"]) == pytest.approx(_expected_auroc(at), abs=0.006)
    assert any(c.value.startswith("95 % CI ") for c in at.caption), "no interval under the AUROC"
    validation = table_with(at, "n_resamples")
    assert list(validation["metric"])[:2] == ["AUROC", "C-index (Harrell)"]
    assert (validation["low"] <= validation["value"]).all() or validation["low"].isna().any()
    downloads = {b.proto.label for b in at.get("download_button")}
    assert {"Download validation metrics (CSV)", "Download validation (JSON)"} <= downloads


def _expected_auroc(at: AppTest) -> float:
    """AUROC of the page's scores against the disk cohort's outcomes, by scikit-learn."""
    from sklearn.metrics import roc_auc_score

    from pfs_core.metrics import short_pfs_label

    scores = table_with(at, "probability")
    cohort = pd.read_csv(Path(at.text_input(key="cohort_path").value), dtype={"patient_id": str}).set_index(
        "patient_id").loc[scores["patient_id"]]
    label = short_pfs_label(cohort["pfs_months"].to_numpy(float), cohort["progressed"].to_numpy(float))
    keep = ~pd.isna(label)
    return float(roc_auc_score(label[keep], scores["probability"].to_numpy()[keep]))


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


class FakeUpload(io.BytesIO):
    """What st.file_uploader hands back: bytes with a name (AppTest cannot upload files)."""

    def __init__(self, name: str, data: bytes) -> None:
        super().__init__(data)
        self.name = name
        self.size = len(data)


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.slow
def test_scoring_an_uploaded_cohort_leaves_nothing_on_disk(at, setup, monkeypatch, tmp_path):
    """Neither the model-grid arrays (no shared cache for a user's cohort) nor the uploaded table stay behind."""
    import streamlit as st

    root, bundle, bad = setup
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where the upload's temporary folder goes
    upload = FakeUpload("my_cohort.csv", bad.read_bytes())
    monkeypatch.setattr(st, "file_uploader", lambda *a, key=None, **k: upload if key == "cohort_upload" else None)
    images_before = _files_under(bad.parent)
    at.selectbox(key="bundle").set_value(bundle).run()
    at.radio(key="cohort_mode").set_value("Upload CSV").run()
    at.text_input(key="image_root").set_value(str(bad.parent)).run()
    at.button(key="score_button").click().run()
    assert not at.exception, at.exception
    assert len(table_with(at, "probability")) == N - 2
    assert _files_under(root / "cache") == [], "a user's cohort went into the shared cache"
    assert _files_under(temp) == [] and not list(temp.iterdir()), "the uploaded table stayed on disk"
    assert _files_under(bad.parent) == images_before


@pytest.mark.slow
def test_scoring_a_cohort_on_this_machine_writes_no_cache(at, setup):
    root, bundle, bad = setup
    at.selectbox(key="bundle").set_value(bundle).run()
    at.text_input(key="cohort_path").set_value(str(bad)).run()
    at.button(key="score_button").click().run()
    assert not at.exception, at.exception
    assert table_with(at, "probability") is not None
    assert _files_under(root / "cache") == []


def test_only_the_shipped_simulated_cohorts_use_the_shared_cache(monkeypatch, tmp_path):
    from pfs_ui import cohort_view as cv

    results = tmp_path / "results"
    (results / "sim").mkdir(parents=True)
    (results / "sim" / "results.json").write_text(json.dumps({"cohort_csv": "data/sim/cohort.csv"}))
    monkeypatch.setenv("PFS_RESULTS_DIR", str(results))
    monkeypatch.setenv("PFS_CACHE_DIR", str(tmp_path / "cache"))
    assert cv.shared_cache_for(cv.SAMPLE_DIR / "cohort.csv") == tmp_path / "cache"
    assert cv.shared_cache_for(cv.ROOT / "data" / "sim" / "cohort.csv") == tmp_path / "cache"
    assert cv.shared_cache_for(tmp_path / "cohort.csv") is None
    assert cv.shared_cache_for(None) is None
    options = cv.RunOptions("benchmark", ["lab_rf"], 3, 1, 0, None, False, "", "")
    assert "--no-cache" in cv.run_args(options) and "--cache-dir" not in cv.run_args(options)
    assert cv.run_args(options, cache=tmp_path)[4:6] == ["--cache-dir", str(tmp_path)]
    assert "--jobs" not in cv.run_args(options)
    two = cv.RunOptions("train", ["lab_rf"], 3, 1, 0, None, False, "", "", jobs=2)
    assert cv.run_args(two)[-2:] == ["--jobs", "2"]


def test_download_neutralises_spreadsheet_formulas():
    from pfs_ui import cohort_view as cv

    scores = pd.DataFrame({"patient_id": ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2", "@SUM(1)", "\tA", "\rB",
                                          "P007"],
                           "probability": [0.5, 0.25, 0.125, -0.5, 0.75, 1.0, 0.0],
                           "warnings": ["=1+1", "", "", "", "", "", "ok"]})
    written = pd.read_csv(io.BytesIO(cv.scores_csv(scores)), dtype=str, keep_default_na=False)
    assert list(written["patient_id"]) == ["'=HYPERLINK(\"http://x\",\"y\")", "'+1+1", "'-2", "'@SUM(1)", "'\tA",
                                           "'\rB", "P007"]
    assert written["warnings"][0] == "'=1+1"
    assert list(written["probability"]) == ["0.500000", "0.250000", "0.125000", "-0.500000", "0.750000",
                                            "1.000000", "0.000000"]  # numbers stay numbers


def _zip_of(folder: Path, target: Path, *, prefix: str = "") -> bytes:
    """The files under ``folder`` as a zip (names relative to it, below ``prefix``)."""
    import zipfile

    with zipfile.ZipFile(target, "w") as archive:
        for path in _files_under(folder):
            if path.suffix == ".csv":
                continue
            archive.write(path, prefix + str(path.relative_to(folder)))
    return target.read_bytes()


@pytest.mark.slow
def test_uploaded_table_with_the_zip_of_its_images(at, setup, monkeypatch, tmp_path):
    """Relative image paths resolve inside the uploaded zip (here zipped with the cohort folder around them), in
    a private temporary folder that is gone after scoring; a table alone asks for the zip, no shell command."""
    import streamlit as st

    root, bundle, bad = setup
    temp = tmp_path / "tmp"
    temp.mkdir()
    archive = _zip_of(bad.parent, tmp_path / "images.zip", prefix="my_cohort/")
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    uploads = {"cohort_upload": FakeUpload("my_cohort.csv", bad.read_bytes())}
    monkeypatch.setattr(st, "file_uploader", lambda *a, key=None, **k: uploads.get(key))
    at.selectbox(key="bundle").set_value(bundle).run()
    at.radio(key="cohort_mode").set_value("Upload CSV").run()
    at.button(key="score_button").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "upload the zip of the images too" in errors[0], errors
    assert "python -m" not in errors[0] and "PFS_CORE" not in errors[0]
    uploads["cohort_images_zip"] = FakeUpload("images.zip", archive)
    at.button(key="score_button").click().run()
    assert not at.exception, at.exception
    assert len(table_with(at, "probability")) == N - 2
    assert list(table_with(at, "reason")["row"]) == [3, 6]  # the missing PET is missing in the zip too
    assert "AUROC" in {m.label for m in at.metric}
    assert _files_under(temp) == [] and not list(temp.iterdir()), "the unpacked images stayed on disk"
    assert _files_under(root / "cache") == []
