import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from model_fixtures import make_cohort
from test_model_predict import LABS, volumes

from pfs_core.cli import main
from pfs_core.explain import explain_case
from pfs_core.explain.shapley import decode_labs, encode_labs, exact_shapley, summarise_background
from pfs_core.models.bundle import load_bundle
from pfs_core.models.registry import get_spec


@pytest.fixture(scope="module")
def bundles(tiny_bundle):
    """The session's tiny bundles (tests/conftest.py), loaded."""
    return {name: load_bundle(tiny_bundle(name)) for name in ("lab_pet_ct", "lab_rf", "pet_cnn", "classic")}


def test_exact_shapley_additive_game_gives_the_parts():
    parts = {"lab": 0.3, "pet": -0.1, "ct": 0.05}
    phi = exact_shapley(list(parts), lambda c: sum(parts[p] for p in c))
    assert phi == pytest.approx(parts)


def test_exact_shapley_splits_an_interaction_equally():
    phi = exact_shapley(["a", "b", "c"], lambda c: 1.0 if {"a", "b"} <= c else 0.0)
    assert phi == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})


@pytest.mark.parametrize("name", ["lab_pet_ct", "lab_rf", "classic"])
def test_lab_shap_adds_up_to_the_model_output(bundles, name):
    pet, ct = volumes()
    result = explain_case(bundles[name], pet=pet, ct=ct, labs=LABS, gradcam=False)
    shap_part = result.lab_shap
    assert shap_part is not None and shap_part.output_space == "probability"
    assert shap_part.output != pytest.approx(shap_part.base_value, abs=1e-6)  # something to explain
    assert shap_part.base_value + sum(shap_part.shap_values) == pytest.approx(shap_part.output, abs=1e-4)
    assert shap_part.output == pytest.approx(result.prediction.probability, abs=1e-5)
    assert "chromogranin_a" in shap_part.names and "sex" in shap_part.names
    assert shap_part.imputed[shap_part.names.index("ki67")] is True
    assert "prrt_cycles" not in shap_part.names


@pytest.mark.parametrize("name", ["lab_pet_ct", "lab_rf", "pet_cnn", "classic"])
def test_modality_contributions_are_efficient(bundles, name):
    pet, ct = volumes()
    result = explain_case(bundles[name], pet=pet, ct=ct, labs=LABS, gradcam=False)
    m = result.modalities
    assert set(m.contributions) == set(get_spec(name).modalities)
    assert m.full_value == pytest.approx(result.prediction.probability, abs=1e-5)
    assert sum(m.contributions.values()) == pytest.approx(m.full_value - m.empty_value, abs=1e-9)


def test_missing_modality_contributes_nothing(bundles):
    pet, _ = volumes()
    result = explain_case(bundles["lab_pet_ct"], pet=pet, ct=None, labs=LABS, gradcam=False)
    assert result.modalities.contributions["ct"] == pytest.approx(0.0, abs=1e-9)


def test_gradcam_maps_are_on_the_ct_grid(bundles):
    pet, ct = volumes()
    result = explain_case(bundles["lab_pet_ct"], pet=pet, ct=ct, labs=LABS)
    assert set(result.gradcam) <= {"pet", "ct"} and result.gradcam
    for image in result.gradcam.values():
        assert image.shape == ct.data.shape
        np.testing.assert_allclose(image.affine, ct.affine)
        data = np.asarray(image.dataobj)
        assert data.min() >= 0.0 and data.max() <= 1.0 + 1e-6


def test_an_all_zero_gradcam_is_named_not_hidden(bundles, monkeypatch):
    import pfs_core.explain.case as explain

    pet, ct = volumes()
    real = explain.gradcam_on_ct_grid

    def one_map_zero(*args, **kwargs):
        maps = real(*args, **kwargs)
        maps["pet"] = nib.Nifti1Image(np.zeros(ct.data.shape, np.float32), ct.affine)
        return maps

    monkeypatch.setattr(explain, "gradcam_on_ct_grid", one_map_zero)
    result = explain_case(bundles["lab_pet_ct"], pet=pet, ct=ct, labs=LABS)
    nonzero = [m for m, image in result.gradcam.items() if np.asarray(image.dataobj).any()]
    assert "pet" in result.gradcam_empty and not set(nonzero) & set(result.gradcam_empty)
    assert "no region of this image raised" in result.to_dict()["gradcam_notes"]["pet"]
    result.convolution_used = False  # every fold kept its logistic start: a different reason, said so
    assert "adds nothing" in result.to_dict()["gradcam_notes"]["pet"]


def test_pet_only_model_has_only_a_pet_map_and_rf_none(bundles):
    pet, ct = volumes()
    assert set(explain_case(bundles["pet_cnn"], pet=pet, ct=ct, labs={}).gradcam) <= {"pet"}
    assert explain_case(bundles["lab_rf"], pet=None, ct=None, labs=LABS).gradcam == {}


def test_lab_encoding_round_trip_and_background():
    frame = pd.DataFrame({"chromogranin_a": [10.0, np.nan, 300.0], "sex": ["F", None, "M"],
                          "primary_site": ["other", "pancreas", None]})
    columns = ["chromogranin_a", "sex", "primary_site"]
    back = decode_labs(encode_labs(frame, columns), columns)
    assert back["sex"].tolist() == ["F", None, "M"]
    assert back["primary_site"].tolist() == ["other", "pancreas", None]
    assert np.isnan(back["chromogranin_a"][1]) and back["chromogranin_a"][2] == 300.0
    labs = make_cohort(18).labs
    cols = ["chromogranin_a", "gamma_gt", "sex", "primary_site"]
    background = summarise_background(labs, cols, k=5)
    assert len(background) == 5 and set(background["sex"]) <= {"F", "M"}
    assert background["chromogranin_a"].between(labs["chromogranin_a"].min(), labs["chromogranin_a"].max()).all()


def test_explain_command_writes_json_and_maps(bundles, tmp_path, capsys):
    """``python -m pfs_core explain`` (its ``main``, in this process: the import alone took 5-10 s a run)."""
    pet, ct = volumes()
    nib.save(nib.Nifti1Image(pet.data, pet.affine), tmp_path / "pet.nii.gz")
    nib.save(nib.Nifti1Image(ct.data, ct.affine), tmp_path / "ct.nii.gz")
    (tmp_path / "labs.json").write_text(json.dumps(LABS))
    out = tmp_path / "out"
    argv = ["explain", "--pet", str(tmp_path / "pet.nii.gz"), "--ct", str(tmp_path / "ct.nii.gz"),
            "--labs", str(tmp_path / "labs.json"), "--model", str(bundles["lab_pet_ct"].path), "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((out / "explanation.json").read_text())
    assert {"probability", "interval", "lab_shap", "modality_contributions", "timings_s"} <= set(summary)
    assert {"lab_shap", "modality_shapley", "gradcam"} <= set(summary["timings_s"])
    direct = explain_case(bundles["lab_pet_ct"], pet=pet, ct=ct, labs=LABS, gradcam=False)
    assert direct.measurement is not None and direct.lesions is not None
    assert summary["probability"] == pytest.approx(direct.prediction.probability, abs=1e-6)
    reference = nib.load(tmp_path / "ct.nii.gz")
    assert set(summary["timings_s"]) >= {"measure", "lesion_shap"}
    contributions = summary["lesion_contributions"]
    assert sum(f["shap"] for f in contributions["features"]) == pytest.approx(
        contributions["output"] - contributions["base_value"], abs=1e-4)
    table = pd.read_csv(out / "lesion_contributions.csv")
    assert len(table) == len(direct.measurement.lesions) and "contribution" in table
    assert table["contribution"].sum() + contributions["unattributed"] == pytest.approx(
        contributions["output"] - contributions["base_value"], abs=1e-4)
    lesion_map = nib.load(out / "lesion_contributions.nii.gz")
    assert lesion_map.shape == reference.shape and np.allclose(lesion_map.affine, reference.affine)
    # Grad-CAM only where a convolutional part is active (a fold network past its logistic start)
    convolution = any(m.info.get("best_epoch", 1) > 0 for m in bundles["lab_pet_ct"].members)
    for name in ("gradcam_pet", "gradcam_ct"):
        assert (out / f"{name}.nii.gz").exists() == convolution
        if convolution:
            image = nib.load(out / f"{name}.nii.gz")
            assert image.shape == reference.shape and np.allclose(image.affine, reference.affine)
    assert not (out / "readout_pet.nii.gz").exists()  # the model reads lesion measurements, not grid read-outs
    capsys.readouterr()
    bad = [*argv[:-2], "--out", str(tmp_path / "o2"), "--labs", str(tmp_path / "pet.nii.gz")]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err and "pet.nii.gz" in err
    assert not (tmp_path / "o2" / "explanation.json").exists()
