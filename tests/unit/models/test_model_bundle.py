import json

import numpy as np
import pandas as pd
import pytest
from model_fixtures import make_cohort

from pfs_core.errors import BundleError
from pfs_core.features.lesions import FEATURE_BLOCKS
from pfs_core.inference import ensemble_probabilities
from pfs_core.models.bundle import MANIFEST, load_bundle, verify_bundle


@pytest.fixture(scope="module")
def bundles(tiny_bundle):
    """(training cohort, {name: bundle folder}) of the session's tiny bundles (tests/conftest.py)."""
    return make_cohort(18), {name: tiny_bundle(name) for name in ("lab_rf", "lab_pet_ct", "classic")}


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("name", ["lab_rf", "lab_pet_ct", "classic"])
def test_round_trip_gives_identical_predictions(bundles, name):
    cohort, paths = bundles
    bundle = load_bundle(paths[name])
    again = load_bundle(paths[name])
    np.testing.assert_array_equal(ensemble_probabilities(bundle, cohort), ensemble_probabilities(again, cohort))
    oof = bundle.training_oof
    assert {"patient_id", "oof_probability", "pfs_months", "progressed", "risk_group"} <= set(oof.columns)
    assert len(bundle.members) == 3
    assert bundle.risk_threshold == pytest.approx(float(np.median(oof["oof_probability"])))


def test_loaded_weights_equal_the_trained_ones(bundles):
    """Predictions of the loaded fold models equal those made before saving (stored OOF)."""
    cohort, paths = bundles
    bundle = load_bundle(paths["lab_pet_ct"])
    oof = bundle.training_oof.set_index("patient_id")
    pos = {p: i for i, p in enumerate(cohort.patient_ids)}
    for k, member in enumerate(bundle.members):
        ids = oof.index[oof["fold"] == k]
        prob = member.predict_proba(cohort.subset([pos[p] for p in ids]))
        np.testing.assert_allclose(prob, oof.loc[ids, "oof_probability"], atol=1e-5)


def test_manifest_contents(bundles):
    _, paths = bundles
    manifest = json.loads((paths["lab_pet_ct"] / MANIFEST).read_text())
    for key in ("model_name", "model_version", "created", "features", "training_cohort", "cv_metrics",
                "gradcam_layers", "versions", "files", "disclaimer"):
        assert key in manifest
    assert manifest["training_cohort"]["simulated"] is True
    assert manifest["gradcam_layers"]["pet"] == "pet_branch.features.layer1"
    assert manifest["gradcam_readout_layers"] == {}  # the branches read lesion measurements, not grid read-outs
    assert manifest["lesion_measurements"]["ct"] == list(FEATURE_BLOCKS["ct"])
    assert len(manifest["best_epochs"]) == len(load_bundle(paths["lab_pet_ct"]).members)
    chromogranin = next(f for f in manifest["features"] if f["name"] == "chromogranin_a")
    assert {"unit", "min", "max", "p01", "p99"} <= set(chromogranin)
    assert all(len(h) == 64 for h in manifest["files"].values())
    assert "MODEL_CARD.md" in manifest["files"]


def test_no_pickle_files(bundles):
    _, paths = bundles
    for path in paths.values():
        suffixes = {p.suffix for p in path.iterdir()}
        assert suffixes <= {".json", ".csv", ".md", ".safetensors", ".skops"}
        for p in path.iterdir():
            assert not p.read_bytes().startswith(b"\x80")  # pickle protocol marker


@pytest.mark.parametrize("name", ["lab_pet_ct", "lab_rf"])
def test_changed_byte_in_weights_is_refused(bundles, tmp_path, name):
    path = _copy(bundles[1][name], tmp_path / "b")
    weights = next(p for p in path.iterdir() if p.name.startswith("fold_1"))
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=f"{weights.name}: sha256 does not match"):
        load_bundle(path)


def test_missing_file_and_missing_manifest_are_refused(bundles, tmp_path):
    path = _copy(bundles[1]["lab_rf"], tmp_path / "b")
    (path / "fold_2.skops").unlink()
    with pytest.raises(BundleError, match="fold_2.skops: listed in the manifest but missing"):
        load_bundle(path)
    (path / MANIFEST).unlink()
    with pytest.raises(BundleError, match="manifest.json: missing"):
        verify_bundle(path)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nowhere")


def test_pickle_file_in_bundle_is_refused(bundles, tmp_path):
    path = _copy(bundles[1]["lab_rf"], tmp_path / "b")
    (path / "extra.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(BundleError, match="pickle"):
        load_bundle(path)


def test_edited_config_is_refused(bundles, tmp_path):
    path = _copy(bundles[1]["lab_pet_ct"], tmp_path / "b")
    config = json.loads((path / "config.json").read_text())
    config["risk_threshold"] = 0.0
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="config.json: sha256"):
        load_bundle(path)


def test_training_oof_table_is_per_patient(bundles):
    cohort, paths = bundles
    table = pd.read_csv(paths["lab_rf"] / "training_oof.csv", dtype={"patient_id": str})
    assert sorted(table["patient_id"]) == sorted(cohort.patient_ids)


def test_a_held_out_evaluation_is_recorded_in_manifest_and_model_card(bundles, tmp_path):
    import shutil

    from pfs_core.models.bundle import MODEL_CARD, record_evaluation

    _, paths = bundles
    copy = tmp_path / "bundle"
    shutil.copytree(paths["classic"], copy)
    version = load_bundle(copy).version
    result = {"cohort": "synth --n 400 --seed 9004", "n": 400, "n_labelled": 380, "auroc": 0.75,
              "auroc_ci95": [0.70, 0.80], "c_index": 0.7, "brier": 0.2, "bayes_auroc": 0.8, "command": "python x"}
    record_evaluation(copy, result)
    record_evaluation(copy, {**result, "auroc": 0.76})  # the same cohort again replaces the first
    manifest = verify_bundle(copy)  # hashes renewed: the bundle still verifies
    assert [e["auroc"] for e in manifest["evaluation"]] == [0.76]
    card = (copy / MODEL_CARD).read_text()
    assert "Evaluation on held-out simulated cohorts" in card and "0.760 [0.700, 0.800]" in card
    assert load_bundle(copy).version == version


def test_a_new_description_renews_the_model_card_and_keeps_the_weights(bundles, tmp_path):
    import shutil

    from pfs_core.models.bundle import MODEL_CARD, record_description

    _, paths = bundles
    copy = tmp_path / "bundle"
    shutil.copytree(paths["classic"], copy)
    before = load_bundle(copy)
    record_description(copy, label="A plainer label", description="What the ablation found.")
    after = load_bundle(copy)  # hashes and digest renewed: it still loads
    assert after.manifest["label"] == "A plainer label"
    assert "What the ablation found." in (copy / MODEL_CARD).read_text()
    assert after.version == before.version
    assert after.manifest["files"] == {**before.manifest["files"], MODEL_CARD: after.manifest["files"][MODEL_CARD]}

def test_a_bundle_from_before_the_lesion_measurements_reads_its_grid_read_outs(bundles, tmp_path):
    """Its config.json has no ``lesion_features``: it loads as a grid read-out bundle, not a lesion one."""
    import shutil

    from pfs_core.inference import reads_lesions
    from pfs_core.models.bundle import sha256_file, write_manifest

    _, paths = bundles
    copy = tmp_path / "old"
    shutil.copytree(paths["classic"], copy)
    config = json.loads((copy / "config.json").read_text())
    del config["train_config"]["lesion_features"]
    (copy / "config.json").write_text(json.dumps(config))
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["files"]["config.json"] = sha256_file(copy / "config.json")
    write_manifest(copy, manifest)
    old = load_bundle(copy)
    assert old.config.lesion_features is False and not reads_lesions(old)
    assert reads_lesions(load_bundle(paths["classic"]))


def test_a_bundle_measures_as_it_was_trained(bundles, tmp_path):
    """A new bundle records today's lesion measurement and predicts with it; a bundle trained on measurement 1.2
    keeps 1.2, and one trained before 1.2 (no ``measurement`` in its manifest) keeps measurement 1.1."""
    import shutil

    from pfs_core.inference import measure_settings
    from pfs_core.measure.case import MEASURE_VERSION
    from pfs_core.measure.settings import MEASURE_1_1, MEASURE_1_2, MeasureSettings
    from pfs_core.models.bundle import write_manifest

    _, paths = bundles
    manifest = json.loads((paths["lab_pet_ct"] / MANIFEST).read_text())
    assert manifest["measurement"] == {"measure_version": MEASURE_VERSION, "measurement": "1.3",
                                       "settings": MeasureSettings().to_dict()}
    assert measure_settings(load_bundle(paths["lab_pet_ct"])) == MeasureSettings() != MEASURE_1_1
    # a bundle trained on measurement 1.2 recorded settings without the fields 1.3 added: it keeps 1.2
    copy = tmp_path / "on_1_2"
    shutil.copytree(paths["lab_pet_ct"], copy)
    settings = {k: v for k, v in MeasureSettings().to_dict().items() if not k.startswith(("cold_grow_", "cold_both_"))}
    write_manifest(copy, {**manifest, "measurement": {"measure_version": "1.2", "measurement": "1.2",
                                                      "settings": settings}})
    assert measure_settings(load_bundle(copy)) == MEASURE_1_2 != MeasureSettings()
    del manifest["measurement"]
    write_manifest(copy, manifest)
    assert measure_settings(load_bundle(copy)) == MEASURE_1_1
    assert json.loads((paths["lab_rf"] / MANIFEST).read_text())["measurement"] is None  # reads no lesions
