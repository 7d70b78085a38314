"""comparison: benchmark outputs beside the published figures; curves from OOF predictions; a bundle over a cohort."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pfs_core.errors import InputError, UsageError
from pfs_core.metrics import logrank_p
from pfs_core.results.comparison import (
    PAIRED_COLUMNS,
    cohort_table_path,
    curve_inputs,
    find_results,
    load_results,
    metrics_table,
    paired_delta_table,
    risk_groups,
)
from pfs_core.results.published import PUBLISHED, published

MODEL_FIXTURES = Path(__file__).resolve().parents[1] / "models"
ROOT = Path(__file__).resolve().parents[3]


def write_output(folder: Path, *, with_outcomes: bool = True, cohort_csv: str = "") -> Path:
    """A hand-made benchmark output: 6 patients (one censored early), 2 models, 2 repeats."""
    folder.mkdir(parents=True)
    stat = {"mean": 0.7, "sd": 0.05, "per_repeat": [0.65, 0.75]}
    doc = {"simulated": True, "cohort_csv": cohort_csv, "settings": {"folds": 2, "repeats": 2, "seed": 1},
           "cohort": {"n": 6}, "models": {"lab_rf": {"inputs": ["lab"]}, "classic": {"inputs": ["lab", "pet"]}},
           "metrics": {m: {"auroc": stat, "auprc": stat, "brier": stat, "c_index": stat} for m in ("lab_rf", "classic")}}
    (folder / "results.json").write_text(json.dumps(doc))
    time = [3.0, 20.0, 8.0, 30.0, 5.0, 15.0]
    event = [1, 0, 0, 1, 1, 0]  # P2: censored at 8 months, no binary label
    rows = []
    for repeat in (0, 1):
        for model in ("lab_rf", "classic"):
            for i in range(6):
                row = {"patient_id": f"P{i}", "repeat": repeat, "fold": i % 2, "model": model,
                       "probability": (0.9 if event[i] and time[i] <= 12 else 0.2) + 0.01 * repeat + 0.001 * i}
                if with_outcomes:
                    row |= {"pfs_months": time[i], "progressed": event[i]}
                rows.append(row)
    pd.DataFrame(rows).to_csv(folder / "oof_predictions.csv", index=False)
    return folder


def test_published_figures_of_the_study():
    assert str(PUBLISHED["lab_rf"].auroc) == "0.59 ± 0.02" and str(PUBLISHED["pet_cnn"].auroc) == "0.42 ± 0.03"
    assert str(PUBLISHED["ct_cnn"].auroc) == "0.54 ± 0.01"
    best = PUBLISHED["lab_pet_ct_pretrained"]
    assert (str(best.auroc), str(best.auprc)) == ("0.72 ± 0.01", "0.80 ± 0.01")
    assert published("classic").auroc is None and published("unknown").note


def test_metrics_table_beside_published(tmp_path):
    table = metrics_table(load_results(write_output(tmp_path / "out"))).set_index("model")
    assert list(table.index) == ["lab_rf", "classic"]
    assert table.loc["lab_rf", "AUROC"] == "0.700 ± 0.050" and table.loc["lab_rf", "published AUROC"] == "0.59 ± 0.02"
    assert table.loc["classic", "published AUROC"] == "—" and "not part of the study" in table.loc["classic",
                                                                                                "published note"]


def test_outputs_without_references_or_intervals_still_read(tmp_path):
    """results.json written before the reference rows and paired intervals: model rows only, no intervals."""
    output = load_results(write_output(tmp_path / "out"))
    assert "references" not in output.doc and "paired_delta_auroc" not in output.doc
    assert output.references == []
    table = metrics_table(output)
    assert list(table["model"]) == output.models and set(table["kind"]) == {"model"}
    paired = paired_delta_table(output)
    assert paired.empty and list(paired.columns) == list(PAIRED_COLUMNS)
    assert set(curve_inputs(output)) == set(output.models)


def test_reference_rows_and_paired_intervals(tmp_path):
    folder = write_output(tmp_path / "out")
    doc = json.loads((folder / "results.json").read_text())
    stat = {"mean": 0.81, "sd": 0.0, "per_repeat": [0.81, 0.81]}
    doc["references"] = {"ref_bayes": {"label": "True probability", "description": "The true probability.",
                                       "inputs": ["truth"], "features": ["p_short_pfs_true"],
                                       "metrics": {m: stat for m in ("auroc", "auprc", "brier", "c_index")}}}
    doc["paired_delta_auroc"] = {
        "lab_rf": {"ref_bayes": {"delta": -0.1, "low": -0.2, "high": 0.01, "p_le_0": 0.97}},
        "classic": {"ref_bayes": {"delta": 0.02, "low": None, "high": None, "p_le_0": None},
                    "lab_rf": {"delta": 0.05, "low": -0.01, "high": 0.12, "p_le_0": 0.06}}}
    (folder / "results.json").write_text(json.dumps(doc))
    oof = pd.read_csv(folder / "oof_predictions.csv")
    bayes = oof[oof["model"] == "lab_rf"].assign(model="ref_bayes", probability=0.5)
    pd.concat([oof, bayes]).to_csv(folder / "oof_predictions.csv", index=False)
    output = load_results(folder)
    assert output.models == ["lab_rf", "classic"] and output.references == ["ref_bayes"]
    table = metrics_table(output).set_index("model")
    assert list(table.index) == ["lab_rf", "classic", "ref_bayes"]
    assert list(table["kind"]) == ["model", "model", "reference"]
    row = table.loc["ref_bayes"]
    assert row["AUROC"] == "0.810 ± 0.000" and row["inputs"] == "truth" and row["published AUROC"] == "—"
    assert row["published note"] == "reference, not a model: The true probability."
    assert set(curve_inputs(output)) == {"lab_rf", "classic"}  # the curves stay those of the models
    paired = paired_delta_table(output)
    assert list(zip(paired["model"], paired["comparator"], strict=True)) == [
        ("lab_rf", "ref_bayes"), ("classic", "ref_bayes"), ("classic", "lab_rf")]
    assert paired.loc[0, ["delta", "low", "high", "p_le_0"]].tolist() == [-0.1, -0.2, 0.01, 0.97]
    assert np.isnan(paired.loc[1, "low"]) and paired.loc[1, "delta"] == 0.02


def test_curves_use_labelled_patients_and_repeat_means(tmp_path):
    output = load_results(write_output(tmp_path / "out"))
    pairs = curve_inputs(output)
    y, p = pairs["lab_rf"]
    assert list(y) == [1, 0, 0, 1, 0]  # P2 (censored at 8 months) left out; P3 progressed after 12 months
    assert np.allclose(p, [0.905, 0.206, 0.208, 0.909, 0.210])  # mean of the two repeats
    time, event, group = risk_groups(output, "lab_rf")
    assert list(group) == ["high", "low", "low", "low", "high", "high"]  # median split, >= median is high
    with pytest.raises(UsageError):
        risk_groups(output, "pet_cnn")


def test_outcomes_from_the_cohort_table_or_a_clear_note(tmp_path):
    cohort = tmp_path / "cohort.csv"
    pd.DataFrame({"patient_id": [f"P{i}" for i in range(6)], "pfs_months": [3.0, 20, 8, 30, 5, 15],
                  "progressed": [1, 0, 0, 1, 1, 0]}).to_csv(cohort, index=False)
    found = load_results(write_output(tmp_path / "a", with_outcomes=False, cohort_csv=str(cohort)))
    assert found.outcomes is not None and cohort_table_path(found) == cohort.resolve()
    assert len(curve_inputs(found)["classic"][0]) == 5
    lost = load_results(write_output(tmp_path / "b", with_outcomes=False, cohort_csv="/nonexistent/c.csv"))
    with pytest.raises(InputError, match="outcomes not found"):
        curve_inputs(lost)
    with pytest.raises(InputError, match="not a complete benchmark output"):
        load_results(tmp_path / "nothing")


def test_outcomes_csv_of_the_folder_comes_first(tmp_path):
    from pfs_core.results import comparison
    from pfs_core.training import benchmark

    assert comparison.OUTCOMES_FILE == benchmark.OUTCOMES_FILE
    folder = write_output(tmp_path / "a", with_outcomes=False, cohort_csv="/nonexistent/c.csv")
    pd.DataFrame({"patient_id": [f"P{i}" for i in range(6)], "pfs_months": [3.0, 20, 8, 30, 5, 15],
                  "progressed": [1, 0, 0, 1, 1, 0]}).to_csv(folder / "outcomes.csv", index=False)
    found = load_results(folder)
    assert found.outcome_note == "outcomes.csv" and len(curve_inputs(found)["lab_rf"][0]) == 5
    pd.DataFrame({"patient_id": ["P0"], "pfs_months": [3.0]}).to_csv(folder / "outcomes.csv", index=False)
    with pytest.raises(InputError, match="outcomes not readable"):
        curve_inputs(load_results(folder))


@pytest.mark.parametrize("name", ["sim116", "sim116_petonly", "sim116_ctonly"])
def test_shipped_results_carry_their_outcomes(name):
    """The committed benchmark folders draw their curves alone (no data/ folder on a fresh clone)."""
    output = load_results(ROOT / "results" / name)
    assert output.outcome_note == "outcomes.csv"
    assert set(output.outcomes["patient_id"]) == set(output.oof["patient_id"])
    assert output.outcomes["progressed"].sum() == output.doc["cohort"]["n_events"]
    pairs = curve_inputs(output)
    assert set(pairs) == set(output.models)
    assert all(len(y) == output.doc["cohort"]["n_labelled"] and y.sum() == output.doc["cohort"]["n_short_pfs"]
               for y, _ in pairs.values())
    for model, shipped in output.doc["risk_groups"].items():  # the log-rank p written by the benchmark
        time, event, group = risk_groups(output, model)
        if shipped["logrank_p"] is None:  # constant predictions (a model that learnt nothing): no median split
            assert np.isnan(logrank_p(time, event, group))
        else:
            assert logrank_p(time, event, group) == pytest.approx(shipped["logrank_p"], rel=1e-9)


def test_find_results_lists_shipped_and_finished_runs(tmp_path):
    from pfs_core.jobs.runs import RunInfo, save_run

    write_output(tmp_path / "results" / "sim116")
    for name, code in (("20260102-000000-benchmark-aaaa", "0"), ("20260103-000000-benchmark-bbbb", "1")):
        folder = tmp_path / "runs" / name
        write_output(folder / "results")
        (folder / "exit_code").write_text(code)
        save_run(RunInfo(name, "benchmark", [], "x", os.getpid(), folder, meta={"cohort_source": "/d/my.csv"}))
    found = find_results(tmp_path / "results", tmp_path / "runs")
    assert [s.label for s in found] == ["shipped: sim116", "run 20260102-000000-benchmark-aaaa (my.csv)"]


@pytest.fixture(scope="module")
def fusion(tmp_path_factory):
    """(tiny lab+PET+CT bundle, in-memory cohort with one PET missing)."""
    sys.path.insert(0, str(MODEL_FIXTURES))
    from model_fixtures import FAST, SMALL, make_cohort

    from pfs_core.models.bundle import load_bundle
    from pfs_core.models.registry import get_spec
    from pfs_core.training.bundle import train_bundle

    data = make_cohort(15, config=SMALL)
    out = tmp_path_factory.mktemp("fusion") / "bundle"
    provenance = {"created": "2026-01-01T00:00:00+00:00", "command": "test", "source": "test", "simulated": True}
    train_bundle(data, get_spec("lab_pet_ct"), out, folds=3, seed=0, config=FAST, provenance=provenance)
    data.pet_present[4] = False
    data.pet[4] = 0.0
    return load_bundle(out), data


@pytest.mark.slow
def test_fast_cohort_contributions_equal_modality_shapley(fusion):
    from pfs_core.explain.cohort import mean_abs_contributions, modality_contributions
    from pfs_core.explain.shapley import modality_shapley

    bundle, data = fusion
    table = modality_contributions(bundle, data, n_sample=15, seed=0)
    assert list(table.columns) == ["patient_id", "lab", "pet", "ct"] and len(table) == 15
    rows = [0, 3, 4, 9]
    reference = pd.DataFrame([modality_shapley(bundle, data.subset([i])).contributions for i in rows])
    assert np.allclose(table.loc[rows, ["lab", "pet", "ct"]].to_numpy(), reference[["lab", "pet", "ct"]].to_numpy(),
                       atol=1e-6)
    assert table.loc[4, "pet"] == pytest.approx(0.0, abs=1e-9)  # a missing PET contributes nothing
    assert set(mean_abs_contributions(table)) == {"lab", "pet", "ct"}
    assert len(modality_contributions(bundle, data, n_sample=5, seed=1)) == 5


@pytest.mark.slow
def test_fused_embedding(fusion):
    from pfs_core.explain.cohort import fused_embedding, fused_features

    bundle, data = fusion
    features = fused_features(bundle, data)
    assert features.shape == (15, 3 * 3 * 8)  # 3 fold models × 3 branches × embed_dim 8
    embedding = fused_embedding(bundle, data, method="pca")
    assert embedding.points.shape == (15, 2) and np.isfinite(embedding.points).all()
    assert set(embedding.labels) <= {"short PFS (≤ 12 months)", "long PFS (> 12 months)",
                                     "censored ≤ 12 months (no label)"}
    with pytest.raises(UsageError):
        fused_embedding(bundle, data, method="tsne")


def test_one_repeat_shows_the_value_alone(tmp_path):
    folder = write_output(tmp_path / "out")
    doc = json.loads((folder / "results.json").read_text())
    doc["settings"]["repeats"] = 1
    stat = {"mean": 0.7, "sd": 0.0, "per_repeat": [0.7]}
    doc["metrics"] = {m: {k: stat for k in ("auroc", "auprc", "brier", "c_index")} for m in ("lab_rf", "classic")}
    (folder / "results.json").write_text(json.dumps(doc))
    output = load_results(folder)
    assert output.repeats == 1
    table = metrics_table(output).set_index("model")
    assert table.loc["lab_rf", "AUROC"] == "0.700" and "±" not in "".join(table["C-index"])


def test_two_runs_on_the_same_patients_give_a_paired_difference(tmp_path):
    from pfs_core.results.comparison import run_difference, same_patients

    a = load_results(write_output(tmp_path / "a"))
    b_folder = write_output(tmp_path / "b")
    oof = pd.read_csv(b_folder / "oof_predictions.csv")
    oof["probability"] = 1.0 - oof["probability"]  # run b ranks the patients backwards
    oof.to_csv(b_folder / "oof_predictions.csv", index=False)
    b = load_results(b_folder)
    assert same_patients(a, b)
    diff = run_difference(a, b, n_boot=200).set_index("model")
    assert list(diff.index) == ["lab_rf", "classic"]
    assert diff.loc["lab_rf", "auroc_a"] == pytest.approx(1.0) and diff.loc["lab_rf", "auroc_b"] == pytest.approx(0.0)
    assert diff.loc["lab_rf", "delta"] == pytest.approx(1.0) and diff.loc["lab_rf", "n_patients"] == 5
    other = tmp_path / "c"
    write_output(other)
    oof = pd.read_csv(other / "oof_predictions.csv")
    oof[oof["patient_id"] != "P0"].to_csv(other / "oof_predictions.csv", index=False)
    assert run_difference(a, load_results(other)).empty  # not the same patients: no paired difference
