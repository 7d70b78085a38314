"""The benchmark's evaluation protocol: reference rows on the models' splits, paired ΔAUROC, kept epochs.

One benchmark run (``lab_rf,classic,pet_cnn``, 3 folds × 2 repeats, ``FAST``) on a copy of the
end-to-end test's cohort (``disk_cohort``) with a hand-made ``ground_truth.csv`` beside it; its
numbers are recomputed here from ``oof_predictions.csv`` and the cohort with scikit-learn and lifelines.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from lifelines.utils import concordance_index
from model_fixtures import FAST, make_cohort
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.preprocessing import StandardScaler

from pfs_core.cli import main
from pfs_core.features.tabular import fit_lab_transform
from pfs_core.models.registry import get_spec
from pfs_core.training.cv import cross_validate, make_splits
from pfs_core.training.references import run_references

FOLDS, REPEATS = 3, 2
#: Oracle columns of the hand-made truth: an older cohort's set (no necrotic_fraction).
ORACLE = ("tumour_to_liver_ratio", "sstr_negative_volume_ml", "liver_tumour_fraction", "tumour_volume_ml")


def write_truth(cohort_csv) -> pd.DataFrame:
    """ground_truth.csv beside ``cohort_csv``: a true probability that follows the outcome loosely and four
    oracle columns (two empty tumour-to-liver ratios), rows shuffled and one extra patient."""
    cohort = pd.read_csv(cohort_csv, dtype={"patient_id": str})
    rng = np.random.default_rng(21)
    n = len(cohort)
    short = ((cohort["pfs_months"] <= 12) & (cohort["progressed"] == 1)).to_numpy(float)
    truth = pd.DataFrame({
        "patient_id": cohort["patient_id"], "p_short_pfs_true": np.clip(0.3 + 0.3 * short + rng.normal(0, 0.2, n),
                                                                        0.02, 0.98),
        "tumour_to_liver_ratio": np.exp(1.2 - 0.8 * short + rng.normal(0, 0.3, n)),
        "sstr_negative_volume_ml": rng.gamma(1.0, 20.0, n) * (1 + 2 * short),
        "liver_tumour_fraction": rng.uniform(0, 0.3, n), "tumour_volume_ml": rng.gamma(2.0, 50.0, n)})
    truth.loc[[3, 7], "tumour_to_liver_ratio"] = np.nan
    extra = truth.iloc[[0]].assign(patient_id="NOT_BENCHMARKED")
    truth = pd.concat([truth, extra]).sample(frac=1.0, random_state=0)
    truth.to_csv(cohort_csv.parent / "ground_truth.csv", index=False)
    return truth


@pytest.fixture(scope="module")
def run(disk_cohort, small_json, tmp_path_factory):
    """(results folder, results.json, oof_predictions.csv, cohort table, truth) of one benchmark run."""
    folder = tmp_path_factory.mktemp("sim")
    shutil.copytree(disk_cohort.parent, folder / "cohort")
    cohort_csv = folder / "cohort" / "cohort.csv"
    truth = write_truth(cohort_csv)
    pre, train = small_json
    out = folder / "results"
    assert main(["benchmark", "--cohort", str(cohort_csv), "--preprocess", str(pre), "--train-config", str(train),
                 "--cache-dir", str(folder / "cache"), "--no-progress", "--folds", str(FOLDS), "--repeats",
                 str(REPEATS), "--models", "lab_rf,classic,pet_cnn", "--seed", "5", "--out", str(out)]) == 0
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    cohort = pd.read_csv(cohort_csv, dtype={"patient_id": str})
    return out, json.loads((out / "results.json").read_text()), oof, cohort, truth.set_index("patient_id")


def _labels(cohort: pd.DataFrame) -> pd.Series:
    """Short PFS 1, long 0, censored at or before 12 months NaN (by hand), indexed by patient_id."""
    time, event = cohort["pfs_months"], cohort["progressed"]
    label = np.where((time <= 12) & (event == 1), 1.0, np.where(time > 12, 0.0, np.nan))
    return pd.Series(label, index=cohort["patient_id"])


@pytest.mark.slow
def test_reference_rows_beside_the_model_rows(run):
    _, doc, oof, _, _ = run
    assert list(doc["references"]) == ["ref_labs", "ref_readouts", "ref_oracle", "ref_bayes"]
    assert list(doc["metrics"]) == ["lab_rf", "classic", "pet_cnn"]  # model rows unchanged
    for ref in doc["references"].values():
        assert set(ref["metrics"]) == {"auroc", "auprc", "brier", "c_index"}
        assert all(len(stat["per_repeat"]) == REPEATS for stat in ref["metrics"].values())
    oracle = doc["references"]["ref_oracle"]
    assert oracle["features"] == list(ORACLE) and oracle["missing_columns"] == ["necrotic_fraction"]
    assert {"suv_max", "hepatic_tlr", "ct_hypodense_fraction"} <= set(doc["references"]["ref_readouts"]["features"])
    splits = {name: sorted(zip(g.patient_id, g.repeat, g.fold, strict=True)) for name, g in oof.groupby("model")}
    assert set(splits) == {"lab_rf", "classic", "pet_cnn", *doc["references"]}
    assert len({tuple(v) for v in splits.values()}) == 1  # references on the models' own splits


@pytest.mark.slow
def test_ref_bayes_is_the_auroc_of_the_true_probability(run):
    _, doc, _, cohort, truth = run
    label = _labels(cohort).dropna()
    expected = roc_auc_score(label.to_numpy(int), truth.loc[label.index, "p_short_pfs_true"])
    assert doc["references"]["ref_bayes"]["metrics"]["auroc"]["per_repeat"] == pytest.approx([expected] * REPEATS,
                                                                                               abs=1e-12)


@pytest.mark.slow
def test_reference_metrics_recomputed_from_the_oof_file(run):
    _, doc, oof, cohort, _ = run
    outcome = cohort.set_index("patient_id")
    label = _labels(cohort)
    for name in ("ref_oracle", "ref_labs"):
        metrics = doc["references"][name]["metrics"]
        for repeat, group in oof[oof["model"] == name].groupby("repeat"):
            p = group.set_index("patient_id")["probability"]
            y = label.loc[p.index]
            known = y.notna().to_numpy()
            y_known, p_known = y[known].to_numpy(int), p[known].to_numpy()
            assert metrics["auroc"]["per_repeat"][repeat] == pytest.approx(roc_auc_score(y_known, p_known), abs=1e-12)
            assert metrics["auprc"]["per_repeat"][repeat] == pytest.approx(
                average_precision_score(y_known, p_known), abs=1e-12)
            assert metrics["brier"]["per_repeat"][repeat] == pytest.approx(brier_score_loss(y_known, p_known),
                                                                           abs=1e-12)
            c = concordance_index(outcome.loc[p.index, "pfs_months"], -p, outcome.loc[p.index, "progressed"])
            assert metrics["c_index"]["per_repeat"][repeat] == pytest.approx(c, abs=1e-12)


@pytest.mark.slow
def test_ref_oracle_is_fitted_on_the_training_fold_only(run):
    """The oracle's OOF probabilities of every split, refitted here from the file's fold membership."""
    _, _, oof, cohort, truth = run
    labs, label = cohort.set_index("patient_id"), _labels(cohort)
    image = truth.loc[:, list(ORACLE)].copy()
    image["tumour_to_liver_ratio"] = np.log(image["tumour_to_liver_ratio"])
    for column in ("sstr_negative_volume_ml", "tumour_volume_ml"):
        image[column] = np.log1p(image[column])
    medians = set()
    for _, rows in oof[oof["model"] == "ref_oracle"].groupby(["repeat", "fold"]):
        test_ids = list(rows["patient_id"])
        train_ids = [pid for pid in cohort["patient_id"] if pid not in set(test_ids)]
        transform = fit_lab_transform(labs.loc[train_ids].reset_index())
        impute = SimpleImputer(strategy="median", add_indicator=True).fit(image.loc[train_ids])
        medians.add(impute.statistics_[0])

        def design(ids, transform=transform, impute=impute):
            return np.hstack([transform.transform(labs.loc[ids].reset_index()), impute.transform(image.loc[ids])])

        scaler = StandardScaler().fit(design(train_ids))
        fit_ids = [pid for pid in train_ids if not np.isnan(label[pid])]
        model = LogisticRegression(C=FAST.logistic_c, max_iter=5000).fit(scaler.transform(design(fit_ids)),
                                                                           label[fit_ids].astype(int))
        expected = model.predict_proba(scaler.transform(design(test_ids)))[:, 1]
        assert rows["probability"].to_numpy() == pytest.approx(expected, abs=1e-6)
    assert len(medians) > 1  # the folds' own medians fill the empty ratios (not the whole cohort's)


@pytest.mark.slow
def test_paired_intervals_against_references_and_the_best_single_modality_model(run):
    _, doc, oof, cohort, truth = run
    assert doc["best_single_modality"] == max(("lab_rf", "pet_cnn"), key=lambda m: doc["metrics"][m]["auroc"]["mean"])
    best = doc["best_single_modality"]
    paired = doc["paired_delta_auroc"]
    assert set(paired) == {"lab_rf", "classic", "pet_cnn"}
    assert set(paired["classic"]) == {*doc["references"], best} and best not in paired[best]
    label = _labels(cohort).dropna()
    mean = oof.groupby(["model", "patient_id"])["probability"].mean()
    for model, row in paired.items():
        for comparator, stat in row.items():
            delta = roc_auc_score(label.to_numpy(int), mean[model].loc[label.index]) - roc_auc_score(
                label.to_numpy(int), mean[comparator].loc[label.index])
            assert stat["delta"] == pytest.approx(delta, abs=1e-12), (model, comparator)
            assert stat["low"] <= stat["delta"] <= stat["high"] and 0.0 <= stat["p_le_0"] <= 1.0
    method = doc["paired_delta_auroc_method"]
    assert method["n_boot"] == 2000 and method["n_patients"] == len(label) and method["seed"] != 5


@pytest.mark.slow
def test_results_md_holds_the_reference_and_paired_tables(run):
    out, doc, _, _, _ = run
    text = (out / "results.md").read_text()
    bayes = doc["references"]["ref_bayes"]["metrics"]["auroc"]
    assert f"| `ref_bayes` | truth | {bayes['mean']:.3f} ± {bayes['sd']:.3f} |" in text
    assert "necrotic_fraction" in text  # the oracle names the truth column the cohort lacked
    stat = doc["paired_delta_auroc"]["classic"]["ref_oracle"]
    assert "| model | vs `ref_labs` | vs `ref_readouts` | vs `ref_oracle` | vs `ref_bayes` |" in text
    assert f"{stat['delta']:+.3f} [{stat['low']:+.3f}, {stat['high']:+.3f}]" in text


@pytest.mark.slow
def test_best_epoch_per_fold_and_repeat(run):
    _, doc, _, _, _ = run
    assert doc["best_epoch"]["lab_rf"] is None and doc["best_epoch"]["classic"] is None
    epochs = doc["best_epoch"]["pet_cnn"]
    assert len(epochs) == REPEATS and all(len(folds) == FOLDS for folds in epochs)
    # 18 patients leave fewer than 5 per class for validation: every epoch runs and the last is kept
    assert epochs == [[FAST.epochs] * FOLDS] * REPEATS


@pytest.mark.slow
def test_best_epoch_is_the_epoch_each_fold_kept():
    """With a validation split, the recorded epoch per (repeat, fold) is the one the early-stopping rule kept."""
    data = make_cohort(40, seed=3)
    config = dataclasses.replace(FAST, epochs=4, min_improvement=0.0, patience=0)
    splits = make_splits(data, folds=2, repeats=2, seed=1)
    cv = cross_validate(data, [get_spec("pet_cnn")], splits, config=config, seed=1, keep_models=True)
    kept = cv.best_epoch("pet_cnn")
    fitted = cv.models["pet_cnn"]
    assert kept == [[fitted[0].best_epoch, fitted[1].best_epoch], [fitted[2].best_epoch, fitted[3].best_epoch]]
    for model in fitted:
        losses = model.info["validation_loss"]
        assert len(losses) == config.epochs + 1  # epoch 0 (before training), then every epoch
        assert model.best_epoch == int(np.argmin(losses))
    assert cv.best_epoch("no_such_model") is None


def test_references_need_every_patient_and_name_what_they_leave_out():
    data = make_cohort(18)
    splits = make_splits(data, folds=3, repeats=1, seed=0)
    partial = pd.DataFrame({"patient_id": data.patient_ids[1:], "p_short_pfs_true": 0.5})
    run = run_references(data, splits, partial, config=FAST)
    assert run.references == () and run.oof.empty
    assert run.notes == ["ground_truth.csv lacks 1 of the 18 benchmarked patients (e.g. P000): no reference rows"]
    no_oracle = pd.DataFrame({"patient_id": data.patient_ids, "p_short_pfs_true": np.linspace(0.05, 0.95, 18)})
    run = run_references(data, splits, no_oracle, config=FAST)
    assert run.names == ["ref_labs", "ref_readouts", "ref_bayes"]
    assert len(run.notes) == 1 and run.notes[0].startswith("ref_oracle left out")
    bayes = run.oof[run.oof["model"] == "ref_bayes"].set_index("patient_id")["probability"]
    assert bayes.loc[data.patient_ids].to_numpy() == pytest.approx(np.linspace(0.05, 0.95, 18))
