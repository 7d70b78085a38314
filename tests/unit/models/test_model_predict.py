import numpy as np
import pytest

from pfs_core import DISCLAIMER
from pfs_core.errors import InputError
from pfs_core.features.lesions import LESION_FEATURES
from pfs_core.inference import NETWORK_ORGANS_NOTE, predict_case
from pfs_core.io import Volume
from pfs_core.io.labs import validate_labs
from pfs_core.models.bundle import load_bundle

LABS = {"chromogranin_a": 250.0, "gamma_gt": 40, "ki67": None, "sex": "F", "primary_site": "pancreas"}


def volumes(seed: int = 0) -> tuple[Volume, Volume]:
    rng = np.random.default_rng(seed)
    shape = (40, 32, 40)
    affine = np.diag([9.0, 9.0, 9.0, 1.0])
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    body = (grid**2).sum(axis=0) < 0.8
    ct = (np.where(body, 40.0, -1000.0) + rng.normal(0, 5, shape)).astype(np.float32)
    pet = (np.where(body, 1.0, 0.05) + rng.uniform(0, 0.2, shape)).astype(np.float32)
    return (Volume(pet, affine, "pet", "PET", "SUVbw"), Volume(ct, affine, "ct", "CT", "HU"))


@pytest.fixture(scope="module")
def bundle_paths(tiny_bundle):
    """The session's tiny bundles (tests/conftest.py) of the models predicted here."""
    return {name: tiny_bundle(name) for name in ("lab_pet_ct_pretrained", "lab_rf", "pet_cnn")}


def test_full_prediction(bundle_paths):
    bundle = load_bundle(bundle_paths["lab_pet_ct_pretrained"])
    pet, ct = volumes()
    pred = predict_case(bundle, pet=pet, ct=ct, labs=LABS)
    assert 0 <= pred.interval[0] <= pred.probability <= pred.interval[1] <= 1
    assert len(pred.fold_probabilities) == 3
    assert pred.probability == pytest.approx(np.mean(pred.fold_probabilities))
    assert pred.risk_group in {"high", "low"}
    assert pred.missing_modalities == []
    assert pred.inputs_used == ["lab", "pet", "ct"]
    assert "ki67" in pred.imputed_fields and "albumin" in pred.imputed_fields
    assert pred.post_baseline_used is False
    assert pred.disclaimer == DISCLAIMER
    assert pred.trained_on_simulated_data is True
    assert any("simulated" in w for w in pred.warnings)
    assert pred.bundle_sha256 == bundle.sha256 and pred.model_name == "lab_pet_ct_pretrained"
    assert set(pred.timings_s) == {"preprocess", "inference", "total"}
    assert 0 <= pred.percentile_in_training <= 100
    assert pred.to_dict()["interval"] == list(pred.interval)
    # the tiny bundle's cohort has no true risk: the interval is the fold spread, and says so
    assert pred.interval == (min(pred.fold_probabilities), max(pred.fold_probabilities))
    assert pred.interval_level is None and "not a calibrated interval" in pred.interval_method
    assert "not a calibrated interval" in pred.interval_sentence
    assert set(pred.image_measurements) == set(LESION_FEATURES)  # what the model read: the lesion measurements
    assert NETWORK_ORGANS_NOTE in pred.warnings  # no organ masks given: the organ network's, and it says so
    assert all(np.isfinite(v) for v in pred.image_measurements.values())


@pytest.mark.parametrize("missing", ["ct", "pet"])
def test_fusion_predicts_with_a_missing_modality_and_says_so(bundle_paths, missing):
    bundle = load_bundle(bundle_paths["lab_pet_ct_pretrained"])
    pet, ct = volumes()
    pred = predict_case(bundle, pet=None if missing == "pet" else pet, ct=None if missing == "ct" else ct, labs=LABS)
    # the lesion measurements need both images: without one, neither image is used, and the prediction says so
    assert pred.missing_modalities == ["pet", "ct"] and pred.inputs_used == ["lab"]
    assert any("lesion measurements need both the PET and the CT" in w for w in pred.warnings)
    assert 0 <= pred.probability <= 1 and pred.image_measurements == {}


def test_single_image_model_without_its_image_is_an_input_error(bundle_paths):
    bundle = load_bundle(bundle_paths["pet_cnn"])
    with pytest.raises(InputError, match="pet_cnn needs PET"):
        predict_case(bundle, pet=None, ct=None, labs={})


def test_lab_model_ignores_images_and_flags_out_of_range(bundle_paths):
    bundle = load_bundle(bundle_paths["lab_rf"])
    pred = predict_case(bundle, pet=None, ct=None, labs={**LABS, "chromogranin_a": 90000.0, "prrt_cycles": 4})
    assert pred.missing_modalities == []
    assert "chromogranin_a" in pred.out_of_range_fields
    assert any("outside the training range" in w for w in pred.warnings)
    assert any("PRRT cycles received (post-baseline) ignored" in w for w in pred.warnings)
    assert pred.post_baseline_used is False
    assert pred.image_measurements == {}


def test_lab_validation_errors_name_the_field():
    with pytest.raises(InputError, match="unknown field.*'cga'"):
        validate_labs({"cga": 1.0})
    with pytest.raises(InputError, match="albumin is outside the plausible range.*g/L multiply by 0.1"):
        validate_labs({"albumin": 35})
    with pytest.raises(InputError, match="ki67 is not a number"):
        validate_labs({"ki67": "high"})
    with pytest.raises(InputError, match="sex is not an allowed value"):
        validate_labs({"sex": "female"})
    assert validate_labs({"ki67": "12.5"})["ki67"] == 12.5
    assert validate_labs({})["age"] is None
