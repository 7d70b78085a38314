"""Model comparison page: metrics beside the published figures, curves and Kaplan–Meier from the OOF
predictions, and a bundle explained over a cohort."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

PAGE = "pages/model_comparison.py"
MODEL_FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "models"


def tiny_benchmark(folder: Path, *, models: str = "lab_rf,pet_cnn") -> Path:
    """Run the benchmark command in-process on a tiny cohort (16³ voxels, 1 epoch); returns its results folder."""
    sys.path.insert(0, str(MODEL_FIXTURES))
    from model_fixtures import FAST, SMALL, write_disk_cohort

    from pfs_core.cli import main
    from pfs_core.config import to_dict

    cohort = write_disk_cohort(folder / "cohort", n=15)
    (folder / "pre.json").write_text(json.dumps(to_dict(SMALL)))
    (folder / "train.json").write_text(json.dumps(to_dict(FAST)))
    out = folder / "results" / "tiny"
    assert main(["benchmark", "--cohort", str(cohort), "--preprocess", str(folder / "pre.json"),
                 "--train-config", str(folder / "train.json"), "--cache-dir", str(folder / "cache"),
                 "--models", models, "--repeats", "2", "--no-progress", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tiny_benchmark(tmp_path_factory.mktemp("comparison"))


def _page(app_path: str, monkeypatch, *, results_dir: Path, runs_dir: Path) -> AppTest:
    monkeypatch.setenv("PFS_RESULTS_DIR", str(results_dir))
    monkeypatch.setenv("PFS_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("PFS_MODELS_DIR", str(runs_dir.parent / "no_models"))  # only the test bundles
    monkeypatch.setenv("PFS_CACHE_DIR", str(results_dir.parent / "cache"))
    at = AppTest.from_file(app_path, default_timeout=120)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_table_beside_published_figures_and_curves(results, monkeypatch, app_path, tmp_path):
    at = _page(app_path, monkeypatch, results_dir=results.parent, runs_dir=tmp_path / "runs")
    assert at.selectbox(key="results_source").options == ["shipped: tiny"]
    # the folder alone redraws the curves: outcomes.csv holds the cohort's outcome columns
    columns = ["patient_id", "pfs_months", "progressed"]
    cohort = pd.read_csv(results.parents[1] / "cohort" / "cohort.csv", dtype={"patient_id": str})[columns]
    pd.testing.assert_frame_equal(pd.read_csv(results / "outcomes.csv", dtype={"patient_id": str}), cohort)
    table = next(d.value for d in at.dataframe if "published AUROC" in d.value.columns)
    assert list(table["model"]) == ["lab_rf", "pet_cnn"]
    row = table.set_index("model").loc["lab_rf"]
    assert row["published AUROC"] == "0.59 ± 0.02" and "±" in row["AUROC"] and "±" in row["C-index"]
    assert table.set_index("model").loc["pet_cnn", "published AUROC"] == "0.42 ± 0.03"
    assert any("Baur" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) >= 5  # ROC, PR, calibration, decision curve, Kaplan–Meier
    assert [m.label for m in at.metric] == ["Log-rank p"]
    at.selectbox(key="km_model").set_value("pet_cnn").run()
    assert not at.exception, at.exception


def test_missing_outcomes_and_no_results_are_explained(results, monkeypatch, app_path, tmp_path):
    copy = tmp_path / "shipped" / "moved"
    shutil.copytree(results, copy)
    (copy / "outcomes.csv").unlink()  # an output written before the benchmark kept its outcomes
    doc = json.loads((copy / "results.json").read_text())
    doc["cohort_csv"] = "/nonexistent/cohort.csv"
    (copy / "results.json").write_text(json.dumps(doc))
    at = _page(app_path, monkeypatch, results_dir=tmp_path / "shipped", runs_dir=tmp_path / "runs")
    assert any("outcomes not found" in e.value for e in at.error)
    assert any("published AUROC" in d.value.columns for d in at.dataframe)  # the table still shows
    empty = _page(app_path, monkeypatch, results_dir=tmp_path / "none", runs_dir=tmp_path / "runs")
    assert any("No benchmark results yet" in i.value for i in empty.info)


@pytest.mark.slow
def test_modality_contributions_and_embedding_of_a_bundle(results, monkeypatch, app_path, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_batch_scoring import finished_train_run

    bundle = finished_train_run(tmp_path / "runs", model="lab_pet")
    at = _page(app_path, monkeypatch, results_dir=results.parent, runs_dir=tmp_path / "runs")
    assert at.selectbox(key="explain_bundle").value == bundle
    cohort = results.parents[1] / "cohort" / "cohort.csv"
    assert at.text_input(key="explain_cohort").value == str(cohort)  # the benchmark's cohort by default
    at.number_input(key="explain_n").set_value(6)
    at.button(key="explain_button").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    text = " ".join(m.value for m in at.markdown)
    assert "Modality contributions** (lab_pet, 6 of 15 patients)" in text and "Fused features** (PCA" in text
    assert len(at.get("plotly_chart")) >= 7  # curves + modality importance + embedding


@pytest.mark.slow
def test_explaining_a_users_cohort_writes_nothing_to_the_cache(results, monkeypatch, app_path, tmp_path,
                                                               tiny_bundle):
    """Only the shipped simulated cohorts use the shared cache: a user's cohort leaves no model-grid arrays."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_batch_scoring import finished_train_run

    finished_train_run(tmp_path / "runs", tiny_bundle("lab_pet"))
    mine = shutil.copytree(results.parents[1] / "cohort", tmp_path / "mine")
    at = _page(app_path, monkeypatch, results_dir=results.parent, runs_dir=tmp_path / "runs")
    monkeypatch.setenv("PFS_CACHE_DIR", str(tmp_path / "cache"))
    at.text_input(key="explain_cohort").set_value(str(mine / "cohort.csv"))
    at.number_input(key="explain_n").set_value(5)
    at.button(key="explain_button").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "Modality contributions** (lab_pet, 5 of 15 patients)" in " ".join(m.value for m in at.markdown)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*"))


def test_reference_rows_and_paired_intervals_on_the_page(results, monkeypatch, app_path, tmp_path):
    """Reference rows marked in the table and paired ΔAUROC error bars; a results.json from before them
    (no references, no paired intervals) shows the table and curves as before."""
    doc = json.loads((results / "results.json").read_text())
    assert set(doc["paired_delta_auroc"]) == {"lab_rf", "pet_cnn"}  # written by the benchmark itself
    stat = {"mean": 0.8, "sd": 0.0, "per_repeat": [0.8, 0.8]}
    new, old = tmp_path / "shipped" / "new", tmp_path / "shipped" / "old"
    for folder in (new, old):
        shutil.copytree(results, folder)
    doc["references"] = {"ref_bayes": {"label": "True probability", "description": "The true probability.",
                                       "inputs": ["truth"], "metrics": dict.fromkeys(("auroc", "auprc", "brier",
                                                                                      "c_index"), stat)}}
    (new / "results.json").write_text(json.dumps(doc))
    at = _page(app_path, monkeypatch, results_dir=tmp_path / "shipped", runs_dir=tmp_path / "runs")
    assert at.selectbox(key="results_source").value.label == "shipped: new"
    table = next(d.value for d in at.dataframe if "published AUROC" in d.value.columns).set_index("model")
    assert list(table.index) == ["lab_rf", "pet_cnn", "ref_bayes"]
    assert list(table["kind"]) == ["model", "model", "REFERENCE (not a model)"]
    assert table.loc["ref_bayes", "AUROC"] == "0.800 ± 0.000"
    paired = next(d.value for d in at.dataframe if "comparator" in d.value.columns)
    assert len(paired) == 1 and paired.loc[0, "delta"] == pytest.approx(
        next(iter(next(iter(v.values())) for v in doc["paired_delta_auroc"].values() if v))["delta"])
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    bars = [t for spec in specs for t in spec["data"] if "error_x" in t]
    assert len(bars) == 1 and bars[0]["x"] == [paired.loc[0, "delta"]]
    assert "Paired differences in AUROC" in [s.value for s in at.subheader]
    for key in ("references", "paired_delta_auroc", "paired_delta_auroc_method", "best_single_modality",
                "best_epoch", "references_note", "reference_fit_seconds"):
        doc.pop(key)
    (old / "results.json").write_text(json.dumps(doc))
    sources = at.selectbox(key="results_source")
    sources.select_index(sources.options.index("shipped: old")).run()
    assert at.selectbox(key="results_source").value.label == "shipped: old"
    assert not at.exception, at.exception
    assert "Paired differences in AUROC" not in [s.value for s in at.subheader]
    table = next(d.value for d in at.dataframe if "published AUROC" in d.value.columns)
    assert list(table["model"]) == ["lab_rf", "pet_cnn"] and len(at.get("plotly_chart")) >= 5


def test_one_repeat_shows_values_alone_and_the_model_column_is_wide(results, monkeypatch, app_path, tmp_path):
    """A one-repeat benchmark has no spread: "0.700", not "0.700 ± 0.000", and a caption says why; the model
    column is wide enough for "lab_pet_ct_pretrained"; every chart has the SVG export button."""
    import shutil

    from pfs_ui.comparison_view import MODEL_COLUMN_PX

    one = tmp_path / "shipped" / "one_repeat"
    shutil.copytree(results, one)
    doc = json.loads((one / "results.json").read_text())
    doc["settings"]["repeats"] = 1
    for metrics in doc["metrics"].values():
        for stat in metrics.values():
            stat.update(sd=0.0, per_repeat=stat["per_repeat"][:1])
    (one / "results.json").write_text(json.dumps(doc))
    at = _page(app_path, monkeypatch, results_dir=one.parent, runs_dir=tmp_path / "runs")
    table = next(d.value for d in at.dataframe if "published AUROC" in d.value.columns)
    assert not any("±" in cell for cell in table["AUROC"]) and not any("±" in c for c in table["C-index"])
    assert any("1 repeat: no spread" in c.value for c in at.caption)
    assert MODEL_COLUMN_PX >= 8 * len("lab_pet_ct_pretrained")
    charts = at.get("plotly_chart")
    assert charts and all('"format": "svg"' in c.proto.config or "svg" in c.proto.config for c in charts)
