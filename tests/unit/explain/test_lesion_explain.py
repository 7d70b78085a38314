"""Lesion-level explanations: SHAP of the lesion measurements, handed on to the lesions; the contribution map."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from test_model_predict import LABS, volumes

from pfs_core.explain.lesions import contribution_map, lesion_contributions
from pfs_core.features.lesions import lesion_shares, model_scale, raw_features
from pfs_core.inference import case_data, prepare_images
from pfs_core.io.labs import validate_labs
from pfs_core.models.bundle import load_bundle

LESIONS = pd.DataFrame({
    "lesion_id": [1, 2, 3], "site": ["liver", "liver", "bone"],
    "sstr_status": ["SSTR-positive", "SSTR-negative", "SSTR-positive"],
    "volume_ml": [40.0, 25.0, 2.0], "suv_mean": [9.0, 2.0, 30.0], "tumour_to_liver": [1.5, 0.3, 6.0],
    "heterogeneity": [0.3, 0.2, 0.1],
})
MEASURED = {"sstr_positive_volume_ml": 42.0, "tumour_to_liver_mean": 1.5, "tumour_to_liver_max": 6.0,
            "heterogeneity": 0.28, "liver_tumour_fraction": 0.05, "sstr_negative_volume_ml": 25.0,
            "sstr_negative_count": 1.0}


@pytest.fixture(scope="module")
def bundles(tiny_bundle):
    return {name: load_bundle(tiny_bundle(name)) for name in ("lab_pet_ct", "classic", "lab_rf")}


def _case(bundle, lesions=LESIONS):
    pet, ct = volumes()
    data = case_data(bundle, validate_labs(LABS), prepare_images(bundle, pet, ct))
    data.lesion_features = model_scale(raw_features(MEASURED, lesions))[None]
    return data


@pytest.mark.parametrize("name", ["lab_pet_ct", "classic"])
def test_lesion_contributions_add_up_to_the_measurements_shap_and_the_output(bundles, name):
    result = lesion_contributions(bundles[name], _case(bundles[name]), LESIONS)
    phi = result.features["shap"].to_numpy()
    assert phi.sum() == pytest.approx(result.output - result.base_value, abs=1e-6)
    assert result.lesions["contribution"].sum() + result.unattributed == pytest.approx(phi.sum(), abs=1e-6)
    shares = lesion_shares(LESIONS).to_numpy()
    assert result.lesions["contribution"].to_numpy() == pytest.approx(shares @ phi, abs=1e-9)
    if name == "classic":  # reads the PET block only: the CT measurements have no effect
        ct_block = result.features["name"].isin(["liver_tumour_fraction", "sstr_negative_volume_ml",
                                                  "sstr_negative_count"])
        assert np.abs(phi[ct_block.to_numpy()]).max() < 1e-9
    top = result.top_lesion()
    if top is not None:
        assert result.lesions.set_index("lesion_id").loc[top, "contribution"] == result.lesions["contribution"].max()


def test_no_lesion_explanation_without_measurements_or_for_a_lab_model(bundles):
    data = _case(bundles["lab_pet_ct"])
    data.lesion_features[:] = np.nan  # no PET or no CT: nothing was measured
    assert lesion_contributions(bundles["lab_pet_ct"], data, LESIONS) is None
    assert lesion_contributions(bundles["lab_rf"], case_data(bundles["lab_rf"], validate_labs(LABS), None),
                                LESIONS) is None


def test_the_contribution_map_paints_each_lesion_with_its_share(bundles):
    class Measured:  # the two fields contribution_map reads
        lesion_labels = np.zeros((6, 5, 4), np.int32)
        organs = type("O", (), {"affine": np.diag([2.0, 2.0, 3.0, 1.0])})()

    Measured.lesion_labels[1, 1, 1], Measured.lesion_labels[2:4, 2, 2], Measured.lesion_labels[5, 4, 3] = 1, 2, 3
    result = lesion_contributions(bundles["lab_pet_ct"], _case(bundles["lab_pet_ct"]), LESIONS)
    image = contribution_map(Measured, result)
    values = np.asarray(image.dataobj)
    assert isinstance(image, nib.Nifti1Image) and np.allclose(image.affine, Measured.organs.affine)
    by_id = result.lesions.set_index("lesion_id")["contribution"]
    assert values[1, 1, 1] == pytest.approx(by_id[1]) and values[2, 2, 2] == pytest.approx(by_id[2])
    assert values[0, 0, 0] == 0.0
