"""Command-line runs on a tiny on-disk cohort (NIfTI images, preprocessing at 16³ voxels of 24 mm)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pfs_core.cli import main
from pfs_core.config import TrainConfig
from pfs_core.measure.case import measurement_record


def _common(cohort, small_json, tmp_path):
    pre, train = small_json
    return ["--cohort", str(cohort), "--preprocess", str(pre), "--train-config", str(train),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]


@pytest.mark.slow
def test_benchmark_end_to_end(disk_cohort, small_json, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["benchmark", *_common(disk_cohort, small_json, tmp_path), "--folds", "3", "--repeats", "2",
                 "--models", "all", "--out", str(out), "--seed", "5"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["metrics"]) == {"lab_rf", "pet_cnn", "ct_cnn", "pet_ct", "lab_pet", "lab_pet_ct",
                                   "lab_pet_ct_pretrained", "classic"}
    for metrics in doc["metrics"].values():
        assert set(metrics) == {"auroc", "auprc", "brier", "c_index"}
        assert len(metrics["c_index"]["per_repeat"]) == 2
    assert doc["settings"]["include_post_baseline"] is False
    assert doc["cohort"]["n_censored_before_12_months"] == 2
    assert doc["measurement"] == measurement_record(TrainConfig().measurement)  # the lesion measurement the image models read
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    assert {"patient_id", "repeat", "fold", "model", "probability"} <= set(oof.columns)
    assert len(oof) == 18 * 2 * 8
    splits = {name: sorted(zip(g.patient_id, g.repeat, g.fold, strict=True)) for name, g in oof.groupby("model")}
    assert len({tuple(v) for v in splits.values()}) == 1
    text = (out / "results.md").read_text()
    assert "AUROC" in text and "seed 5" in text and "excluded" in text and "C-index" in text
    for name in ("roc", "pr", "calibration", "decision_curve", "km_lab_pet_ct_pretrained"):
        assert (out / "figures" / f"{name}.html").is_file()
    assert doc["risk_groups"]["lab_rf"]["logrank_p"] is None or 0 <= doc["risk_groups"]["lab_rf"]["logrank_p"] <= 1
    assert_auroc_matches_the_oof_file(doc, oof, pd.read_csv(disk_cohort, dtype={"patient_id": str}))


def assert_auroc_matches_the_oof_file(doc, oof, cohort):
    """Each model's AUROC in results.json is scikit-learn's ``roc_auc_score`` of its own out-of-fold file,
    per repeat, and their mean over repeats. Label by hand: short PFS (1) = progressed at or before 12
    months, long (0) = PFS over 12 months, censored at or before 12 months: no label (left out).

    oof_predictions.csv holds 6 decimals. Rounding keeps every strict order, so a short/long pair that is
    not tied in the file is ordered as in the run; a tied pair may have been ordered either way (the
    near-constant image-only models of this tiny cohort differ in the 7th decimal). The AUROC must equal
    the file's where no short/long pair is tied, and lie within half the tied pairs of it otherwise."""
    outcome = cohort.set_index("patient_id")[["pfs_months", "progressed"]]
    table = oof.join(outcome, on="patient_id", validate="many_to_one")
    assert table["pfs_months"].notna().all()
    short = (table["pfs_months"] <= 12) & (table["progressed"] == 1)
    table["label"] = np.where(short, 1.0, np.where(table["pfs_months"] > 12, 0.0, np.nan))
    labelled = table.dropna(subset=["label"])
    assert labelled["patient_id"].nunique() == 16  # 18 patients, 2 censored at 6 months
    exact = 0
    for model, metrics in doc["metrics"].items():
        reported = metrics["auroc"]["per_repeat"]
        from_file = []
        for repeat, group in labelled[labelled["model"] == model].groupby("repeat"):
            y, p = group["label"].to_numpy(int), group["probability"].to_numpy()
            auroc = roc_auc_score(y, p)
            tied = (p[y == 1][:, None] == p[y == 0][None, :]).mean()  # share of short/long pairs tied
            slack = tied / 2 + 1e-9
            assert auroc - slack <= reported[repeat] <= auroc + slack, (model, repeat, reported[repeat], auroc)
            exact += tied == 0
            from_file.append(auroc)
        assert len(from_file) == len(reported) == 2, model
        assert metrics["auroc"]["mean"] == pytest.approx(np.mean(reported), abs=1e-12), model
        if reported == pytest.approx(from_file, abs=1e-9):
            assert metrics["auroc"]["mean"] == pytest.approx(np.mean(from_file), abs=1e-9), model
    assert exact >= len(doc["metrics"])  # at least half of the 2 × 8 checks are exact (no tied pairs)


def test_benchmark_names_the_post_baseline_flag(disk_cohort, small_json, tmp_path):
    out = tmp_path / "results"
    assert main(["benchmark", *_common(disk_cohort, small_json, tmp_path), "--repeats", "1", "--models", "lab_rf",
                 "--out", str(out), "--include-post-baseline"]) == 0
    assert json.loads((out / "results.json").read_text())["settings"]["include_post_baseline"] is True
    assert "INCLUDED" in (out / "results.md").read_text()
    assert pd.read_csv(out / "oof_predictions.csv")["include_post_baseline"].all()


@pytest.mark.slow
def test_train_predict_score(disk_cohort, small_json, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    assert main(["train", *_common(disk_cohort, small_json, tmp_path), "--model", "lab_pet_ct_pretrained",
                 "--out", str(bundle), "--data-note", "tiny test cohort"]) == 0
    assert "MODEL_CARD.md" in json.loads((bundle / "manifest.json").read_text())["files"]
    images = disk_cohort.parent / "images"
    labs = tmp_path / "labs.json"
    labs.write_text(json.dumps({"chromogranin_a": 120, "sex": "M"}))
    capsys.readouterr()
    assert main(["predict", "--model", str(bundle), "--pet", str(images / "P003_pet.nii.gz"),
                 "--labs", str(labs), "--json", str(tmp_path / "p.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["missing_modalities"] == ["pet", "ct"]  # the lesion measurements need both images
    assert json.loads((tmp_path / "p.json").read_text())["probability"] == printed["probability"]
    scores = tmp_path / "scores.csv"
    assert main(["score", "--cohort", str(disk_cohort), "--model", str(bundle), "--out", str(scores),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    table = pd.read_csv(scores)
    assert list(table.columns) == ["patient_id", "probability", "interval_low", "interval_high", "risk_group",
                                   "warnings"]
    assert len(table) == 18


@pytest.mark.parametrize("argv", [
    ["predict", "--model", "/nonexistent/bundle"],
    ["score", "--cohort", "/nonexistent.csv", "--model", "/nonexistent/bundle", "--out", "x.csv"],
    ["train", "--cohort", "/nonexistent.csv", "--model", "lab_rf", "--out", "/tmp/pfs-never-written"],
    ["benchmark", "--cohort", "/nonexistent.csv", "--models", "nope", "--out", "/tmp/pfs-never-written"],
    ["train", "--cohort", "x.csv", "--model", "no_such_model", "--out", "y"],
])
def test_cli_errors_exit_2(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse choices
        code = exc.code
    assert code == 2
    assert capsys.readouterr().err.startswith("error:")


def test_bad_lab_json_is_an_input_error(tmp_path, capsys, disk_cohort, small_json):
    bundle = tmp_path / "rf"
    assert main(["train", *_common(disk_cohort, small_json, tmp_path), "--model", "lab_rf", "--out", str(bundle)]) == 0
    labs = tmp_path / "labs.json"
    labs.write_text(json.dumps({"chromogranin": 12}))
    capsys.readouterr()
    assert main(["predict", "--model", str(bundle), "--labs", str(labs)]) == 2
    assert "unknown field(s) 'chromogranin'" in capsys.readouterr().err
    assert main(["train", *_common(disk_cohort, small_json, tmp_path), "--model", "lab_rf", "--out", str(bundle)]) == 2


def test_train_on_an_earlier_measurement_records_and_reads_it(disk_cohort, small_json, tmp_path, capsys):
    """``"measurement": "1.1"`` in the train config repeats results made before measurement 1.2: the bundle
    records it and is measured with 1.1's settings; an unknown version is refused before any work."""
    from pfs_core.inference import measure_settings
    from pfs_core.measure.settings import MEASURE_1_1
    from pfs_core.models.bundle import load_bundle

    pre, train = small_json
    config = json.loads(train.read_text()) | {"measurement": "1.1"}
    older = tmp_path / "train_1_1.json"
    older.write_text(json.dumps(config))
    common = ["--cohort", str(disk_cohort), "--preprocess", str(pre), "--cache-dir", str(tmp_path / "cache"),
              "--no-progress", "--model", "lab_pet_ct", "--data-note", "tiny test cohort"]
    bundle = tmp_path / "bundle"
    assert main(["train", *common, "--train-config", str(older), "--out", str(bundle)]) == 0
    assert json.loads((bundle / "manifest.json").read_text())["measurement"] == measurement_record("1.1")
    assert measure_settings(load_bundle(bundle)) == MEASURE_1_1
    older.write_text(json.dumps(config | {"measurement": "0.9"}))
    capsys.readouterr()
    assert main(["train", *common, "--train-config", str(older), "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "measurement '0.9' is not known; use one of 1.1, 1.2" in err
    assert not (tmp_path / "refused").exists()
