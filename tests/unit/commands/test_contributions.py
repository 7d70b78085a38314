"""``python -m pfs_core contributions``: the Model comparison page's cohort explanation on the command line.

Runs the shipped bundles of ``models/`` on the six simulated cases of ``sample_data/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pfs_core.cli import main
from pfs_core.io.outputs import prepare_output_folder

ROOT = Path(__file__).resolve().parents[3]
COHORT = ROOT / "sample_data" / "cohort.csv"
MODELS = ROOT / "models"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One preprocessing cache for the module: the sample images are preprocessed once."""
    return tmp_path_factory.mktemp("cache")


def contributions(model: str, out: Path, cache: Path, *extra: str, cohort: Path = COHORT) -> int:
    return main(["contributions", "--cohort", str(cohort), "--model", str(MODELS / model), "--out", str(out),
                 "--cache-dir", str(cache), "--device", "cpu", *extra])


def assert_efficiency(table: pd.DataFrame, modalities: list[str]) -> None:
    """Exact Shapley values: per patient they sum to probability - reference probability."""
    assert list(table.columns) == ["patient_id", *modalities, "probability", "reference_probability"]
    gap = table["probability"] - table["reference_probability"]
    assert np.allclose(table[modalities].sum(axis=1), gap, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_fusion_bundle_writes_contributions_embedding_and_summary(tmp_path, cache, capsys):
    out = tmp_path / "out"
    assert contributions("lab_pet_ct_pretrained", out, cache, "--n-sample", "3", "--seed", "1") == 0, \
        capsys.readouterr().err
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "modality_contributions.csv", dtype={"patient_id": str})
    assert len(table) == 3 and table["patient_id"].is_unique
    assert_efficiency(table, ["lab", "pet", "ct"])
    assert np.ptp(table["reference_probability"]) < 1e-6  # every modality absent: the same input for all

    # "probability" is the model's prediction: the same number as the score command's
    scores = tmp_path / "scores.csv"
    assert main(["score", "--cohort", str(COHORT), "--model", str(MODELS / "lab_pet_ct_pretrained"),
                 "--out", str(scores), "--cache-dir", str(cache), "--device", "cpu"]) == 0
    scored = pd.read_csv(scores, dtype={"patient_id": str}).set_index("patient_id")
    assert np.allclose(table["probability"], scored.loc[table["patient_id"], "probability"], atol=1e-5)

    embedding = pd.read_csv(out / "embedding.csv", dtype={"patient_id": str})
    assert list(embedding.columns) == ["patient_id", "x", "y", "outcome"] and len(embedding) == 6
    assert np.isfinite(embedding[["x", "y"]].to_numpy()).all()
    assert set(embedding["outcome"]) <= {"short PFS (≤ 12 months)", "long PFS (> 12 months)",
                                         "censored ≤ 12 months (no label)"}

    doc = json.loads((out / "contributions.json").read_text())
    assert doc["model"] == "lab_pet_ct_pretrained" and doc["model_version"]
    assert doc["n_patients"] == 6 and doc["n_sampled"] == 3 and doc["seed"] == 1
    assert doc["sampled_ids"] == list(table["patient_id"])
    assert doc["mean_abs_contribution"] == pytest.approx(table[["lab", "pet", "ct"]].abs().mean().to_dict(), abs=1e-7)
    assert doc["embedding"] == {"method": "pca", "n_features": 144, "n_patients": 6, "file": "embedding.csv"}
    assert "simulated data" in doc["disclaimer"] and doc["wall_time_s"] > 0
    assert "lab" in printed and "pet" in printed and "simulated data" in printed


def test_lab_only_bundle_skips_the_embedding_with_a_note(tmp_path, cache, capsys):
    labs_only = tmp_path / "labs_only.csv"  # a lab-only model needs no image columns
    pd.read_csv(COHORT).drop(columns=["pet", "ct"]).to_csv(labs_only, index=False)
    out = prepare_output_folder(tmp_path / "out", command="contributions", force=False)  # an earlier run's folder
    (out / "embedding.csv").write_text("left by an earlier run\n")
    assert contributions("lab_rf", out, cache, "--n-sample", "2", cohort=labs_only) == 2  # not without --force
    assert "add --force" in capsys.readouterr().err
    assert contributions("lab_rf", out, cache, "--n-sample", "2", "--force", cohort=labs_only) == 0, \
        capsys.readouterr().err
    table = pd.read_csv(out / "modality_contributions.csv")
    assert len(table) == 2
    assert_efficiency(table, ["lab"])
    assert not (out / "embedding.csv").exists()
    doc = json.loads((out / "contributions.json").read_text())
    assert "not a fusion network" in doc["embedding"]["skipped"] and set(doc["mean_abs_contribution"]) == {"lab"}
    assert "embedding skipped" in capsys.readouterr().out


def test_missing_cohort_is_one_error_line_and_exit_2(tmp_path, capsys):
    assert contributions("lab_rf", tmp_path / "out", tmp_path / "cache", cohort=tmp_path / "nope.csv") == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope.csv" in lines[0], captured.err
    assert "cohort file not found" in lines[0]


@pytest.mark.parametrize("case", ["not_a_bundle", "no_image_columns", "bad_n_sample"])
def test_bad_inputs_exit_2(case, tmp_path, capsys):
    labs_only = tmp_path / "labs_only.csv"
    pd.read_csv(COHORT).drop(columns=["pet", "ct"]).to_csv(labs_only, index=False)
    (tmp_path / "empty").mkdir()
    argv = {"not_a_bundle": ["--cohort", str(COHORT), "--model", str(tmp_path / "empty")],
            "no_image_columns": ["--cohort", str(labs_only), "--model", str(MODELS / "lab_pet_ct")],
            "bad_n_sample": ["--cohort", str(COHORT), "--model", str(MODELS / "lab_rf"), "--n-sample", "0"]}[case]
    assert main(["contributions", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    expected = {"not_a_bundle": "manifest.json", "no_image_columns": "missing required column(s) pet, ct",
                "bad_n_sample": "--n-sample"}[case]
    assert expected in err


@pytest.mark.slow
def test_score_prepares_uncached_cases_on_two_processes(tmp_path, capsys):
    """--jobs 2: two sample cases are preprocessed and measured by two worker processes (an empty cache), with
    the scores of one process; contributions takes the same options."""
    import shutil

    cohort = tmp_path / "two" / "cohort.csv"
    (cohort.parent / "images").mkdir(parents=True)
    table = pd.read_csv(COHORT, dtype=str, keep_default_na=False).head(2)
    table.to_csv(cohort, index=False)
    for column in ("pet", "ct", "organs"):
        for name in table[column]:
            shutil.copy(COHORT.parent / name, cohort.parent / name)
    model = str(MODELS / "lab_pet_ct_pretrained")
    scores = {}
    for jobs in ("1", "2"):
        path = tmp_path / f"scores{jobs}.csv"
        assert main(["score", "--cohort", str(cohort), "--model", model, "--out", str(path), "--cache-dir",
                     str(tmp_path / f"cache{jobs}"), "--device", "cpu", "--jobs", jobs]) == 0, capsys.readouterr().err
        scores[jobs] = pd.read_csv(path)
    pd.testing.assert_frame_equal(scores["1"], scores["2"])
    assert len(scores["2"]) == 2 and len(list((tmp_path / "cache2").glob("lesionfeat_*.npz"))) == 2
    assert contributions("lab_pet_ct_pretrained", tmp_path / "contrib", tmp_path / "cache2", "--n-sample", "2",
                         "--jobs", "2", cohort=cohort) == 0, capsys.readouterr().err
