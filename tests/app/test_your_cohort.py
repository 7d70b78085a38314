"""Your cohort page: validation lists every bad row by row number; a background run shows progress, survives a
reload and its results appear on the comparison page; the cancel button stops a run."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = "pages/your_cohort.py"
MODEL_FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "models"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(root folder, cohort with bad rows 3 and 6, fast preprocess JSON, fast train-config JSON)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(MODEL_FIXTURES))
    from model_fixtures import FAST, SMALL
    from test_batch_scoring import cohort_with_two_bad_rows

    from pfs_core.config import to_dict

    root = tmp_path_factory.mktemp("your_cohort")
    bad = cohort_with_two_bad_rows(root / "cohort")
    (root / "pre.json").write_text(json.dumps(to_dict(SMALL)))
    (root / "train.json").write_text(json.dumps(to_dict(FAST)))
    return root, bad, root / "pre.json", root / "train.json"


def _page(app_path: str, monkeypatch, root: Path, page: str = PAGE, *, runs: str = "runs") -> AppTest:
    monkeypatch.setenv("PFS_RUNS_DIR", str(root / runs))
    monkeypatch.setenv("PFS_MODELS_DIR", str(root / "no_models"))
    monkeypatch.setenv("PFS_RESULTS_DIR", str(root / "no_shipped_results"))
    monkeypatch.setenv("PFS_CACHE_DIR", str(root / "cache"))
    at = AppTest.from_file(app_path, default_timeout=120)
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _checked(at: AppTest, cohort: Path) -> AppTest:
    at.text_input(key="cohort_path").set_value(str(cohort)).run()
    at.button(key="check_cohort").click().run()
    assert not at.exception, at.exception
    return at


def _start(at: AppTest, *, models: list[str], repeats: int, pre: Path, train: Path) -> AppTest:
    at.multiselect(key="run_models").set_value(models)
    at.number_input(key="run_repeats").set_value(repeats)
    at.text_input(key="run_preprocess").set_value(str(pre))
    at.text_input(key="run_train_config").set_value(str(train))
    at.run()
    if any(c.key == "confirm_small" for c in at.checkbox):
        at.checkbox(key="confirm_small").check().run()  # the test cohort is small: the warning is confirmed
    at.button(key="start_run").click().run()
    assert not at.exception, at.exception
    # the one error box: the cohort's missing image (row 3), left out; the run goes on with the other rows
    errors = [e.value for e in at.error if not e.value.startswith("Left out for an image path, row(s) 3;")]
    assert not errors, errors
    return at


def _run_lines(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "**benchmark**" in m.value or "**train**" in m.value]


def test_validation_lists_both_bad_rows(setup, monkeypatch, app_path):
    root, bad, _, _ = setup
    at = _checked(_page(app_path, monkeypatch, root), bad)
    problems = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(problems["row"]) == [3, 6] and list(problems["patient_id"]) == ["P001", "P004"]
    assert "not found" in problems["reason"].iloc[0] and "plausible range" in problems["reason"].iloc[1]
    assert {m.label: m.value for m in at.metric} == {"Rows": "12", "Usable rows": "10", "Rows with problems": "2"}
    assert at.button(key="start_run")  # the good rows can go on


def test_unusable_file_is_an_error_box(setup, monkeypatch, app_path):
    root = setup[0]
    at = _checked(_page(app_path, monkeypatch, root), root / "missing.csv")
    assert any("cohort file not found" in e.value for e in at.error)


@pytest.mark.slow
def test_background_run_progress_reload_and_results_on_comparison_page(setup, monkeypatch, app_path):
    from pfs_core.jobs.runs import list_runs, progress
    from pfs_core.progress import read_steps

    root, bad, pre, train = setup
    at = _start(_checked(_page(app_path, monkeypatch, root), bad), models=["lab_rf", "pet_cnn"], repeats=1,
                pre=pre, train=train)
    seen, deadline = [], time.monotonic() + 180
    while time.monotonic() < deadline:
        at.run()  # what the fragment's run_every does in the browser
        assert not at.exception, at.exception
        line = _run_lines(at)[0]
        seen += [p.proto.text for p in at.get("progress")]
        if "finished" in line or "failed" in line:
            break
        time.sleep(0.5)
    assert "finished" in line and "10 patients" in line, line
    assert seen and any(t.startswith(("starting", "preprocessing", "cross-validation")) for t in seen), seen
    run = list_runs(root / "runs")[0]  # the command's own progress lines: 10 usable patients, 3 folds x 2 models
    stages = [(step["stage"], step["done"], step["total"]) for step in read_steps(run.progress_file)]
    assert stages == ([("preprocessing", i, 10) for i in range(11)] + [("measuring lesions", i, 10) for i in range(11)]
                      + [("cross-validation", i, 6) for i in range(7)])
    assert progress(run).text == "cross-validation 6/6"
    reloaded = _page(app_path, monkeypatch, root)  # a new session: state comes from disk
    assert "finished" in _run_lines(reloaded)[0]
    comparison = _page(app_path, monkeypatch, root, page="pages/model_comparison.py")
    options = comparison.selectbox(key="results_source").options
    assert len(options) == 1 and options[0].startswith("run ") and "bad_cohort.csv" in options[0]
    table = next(d.value for d in comparison.dataframe if "published AUROC" in d.value.columns)
    assert list(table["model"]) == ["lab_rf", "pet_cnn"]


@pytest.mark.slow
def test_cancel_button_stops_the_run(setup, monkeypatch, app_path):
    from pfs_core.jobs.runs import is_alive, list_runs

    root, bad, pre, train = setup
    at = _checked(_page(app_path, monkeypatch, root, runs="cancel_runs"), bad)
    at = _start(at, models=["lab_rf", "pet_cnn", "ct_cnn", "lab_pet_ct"], repeats=3, pre=pre, train=train)
    run = list_runs(root / "cancel_runs")[0]
    assert "running" in _run_lines(at)[0]
    at.button(key=f"cancel_{run.run_id}").click().run()
    assert not at.exception, at.exception
    assert "cancelled" in _run_lines(at)[0]
    assert not is_alive(run.pid)
    assert not (run.output / "results.json").exists()


def test_image_path_outside_the_cohort_folder_is_an_error_box(setup, monkeypatch, app_path, tmp_path):
    """A cohort cannot make the server read a file elsewhere: one message for missing or not allowed, in an
    error box with the row, and the other rows go on."""
    import pandas as pd

    from pfs_core.io.cohort import DATA_ROOTS_VARIABLE

    root, bad, _, _ = setup
    elsewhere = tmp_path / "elsewhere_pet.nii.gz"  # a real image outside the cohort folder
    elsewhere.write_bytes((bad.parent / "images" / "P000_pet.nii.gz").read_bytes())
    frame = pd.read_csv(bad, dtype=str, keep_default_na=False)
    frame.loc[0, "pet"] = str(elsewhere)
    frame.loc[2, "ct"] = "../../../../../../etc/hostname"
    outside = bad.parent / "outside_paths.csv"
    frame.to_csv(outside, index=False)
    monkeypatch.delenv(DATA_ROOTS_VARIABLE, raising=False)
    at = _checked(_page(app_path, monkeypatch, root), outside)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Left out for an image path, row(s) 2, 3, 4"), errors
    assert DATA_ROOTS_VARIABLE in errors[0] and "not allowed" in errors[0]
    problems = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    reasons = dict(zip(problems["row"], problems["reason"], strict=True))
    assert "image not found in the cohort folder or not allowed" in reasons[2]
    assert "not allowed" in reasons[4]
    assert {m.label: m.value for m in at.metric}["Usable rows"] == "8"


def test_small_cohort_warning_must_be_confirmed(setup, monkeypatch, app_path, tmp_path):
    """6 patients, 8 models × 3 folds × 3 repeats: a warning, and the start button waits for the checkbox."""
    from model_fixtures import write_disk_cohort

    cohort = write_disk_cohort(tmp_path / "six", n=6)
    at = _checked(_page(app_path, monkeypatch, setup[0], runs="runs_small"), cohort)
    warning = next(w.value for w in at.warning if "Small cohort" in w.value)
    assert "per test fold" in warning and "72 model(s)" in warning
    assert at.button(key="start_run").disabled
    at.checkbox(key="confirm_small").check().run()
    assert not at.exception, at.exception
    assert not at.button(key="start_run").disabled
