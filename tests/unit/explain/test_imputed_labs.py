"""Imputed labs get no SHAP value of their own (issue 24, item 8), and a prediction from very little input says so."""

from pathlib import Path

import pytest
from test_model_predict import LABS, volumes

from pfs_core.explain import explain_case
from pfs_core.explain.shapley import lab_columns
from pfs_core.inference import little_input_warning
from pfs_core.models.bundle import load_bundle

#: Everything measured but ALT, which carried -0.172 of SHAP as 'missing (imputed)' before the fix.
NO_ALT = {"chromogranin_a": 250.0, "gamma_gt": 40.0, "alkaline_phosphatase": 120.0, "ast": 30.0, "alt": None,
          "bilirubin": 0.8, "albumin": 4.0, "creatinine": 0.9, "hemoglobin": 13.0, "platelets": 250.0,
          "leukocytes": 6.0, "ki67": 5.0, "age": 60.0, "sex": "F", "primary_site": "pancreas"}


@pytest.fixture(scope="module")
def bundles(tiny_bundle):
    return {name: load_bundle(tiny_bundle(name)) for name in ("lab_pet_ct", "lab_rf", "classic")}


@pytest.mark.parametrize("name", ["lab_pet_ct", "lab_rf", "classic"])
@pytest.mark.parametrize("labs", [LABS, NO_ALT], ids=["few_measured", "alt_missing"])
def test_imputed_labs_get_no_attribution_and_the_sum_rule_holds(bundles, name, labs):
    pet, ct = volumes()
    result = explain_case(bundles[name], pet=pet, ct=ct, labs=labs, gradcam=False, shap_samples=256)
    s = result.lab_shap
    assert s is not None
    imputed = [n for n, flag in zip(s.names, s.imputed, strict=True) if flag]
    assert imputed and "chromogranin_a" not in imputed
    for n in imputed:
        assert s.shap_values[s.names.index(n)] == 0.0, n
    measured = [v for v, flag in zip(s.shap_values, s.imputed, strict=True) if not flag]
    assert any(abs(v) > 1e-6 for v in measured)  # the measured labs still explain something
    assert s.base_value + sum(s.shap_values) == pytest.approx(s.output, abs=1e-4)
    assert s.output == pytest.approx(result.prediction.probability, abs=1e-5)
    assert "imputed labs held at the training median" in s.method
    rows = {r["name"]: r for r in result.to_dict()["lab_shap"]["features"]}
    assert all(rows[n]["imputed"] and rows[n]["shap"] == 0.0 for n in imputed)


def test_nothing_measured_gives_no_attribution_and_base_equals_output(bundles):
    pet, ct = volumes()
    result = explain_case(bundles["lab_pet_ct"], pet=pet, ct=ct, labs={}, gradcam=False)
    s = result.lab_shap
    assert s is not None and all(s.imputed) and not any(s.shap_values)
    assert s.base_value == pytest.approx(s.output, abs=1e-9)


def test_very_little_input_is_said_so(bundles):
    bundle = bundles["lab_rf"]  # reads labs only: no image can make up for them
    one_lab = {"chromogranin_a": 250.0}
    result = explain_case(bundle, pet=None, ct=None, labs=one_lab, gradcam=False)
    warnings = [w for w in result.prediction.warnings if w.startswith("very little input")]
    assert len(warnings) == 1 and f"1 of the {len(lab_columns(bundle))}" in warnings[0]
    assert warnings[0] in result.to_dict()["prediction"]["warnings"]
    full = explain_case(bundle, pet=None, ct=None, labs=NO_ALT, gradcam=False)
    assert not any(w.startswith("very little input") for w in full.prediction.warnings)


def test_an_image_read_is_enough_input(bundles):
    bundle = bundles["lab_pet_ct"]
    assert little_input_warning(bundle, {}, has_image=False) is not None
    assert little_input_warning(bundle, {}, has_image=True) is None
    pet, ct = volumes()
    result = explain_case(bundle, pet=pet, ct=ct, labs={}, gradcam=False)
    assert not any(w.startswith("very little input") for w in result.prediction.warnings)


def test_shipped_random_forest_keeps_the_sum_rule_on_a_sample_case():
    """SIM0001 has no ALT; shap's interventional Tree SHAP routed its median on a split threshold differently from
    scikit-learn and missed the sum rule by 0.003 on the shipped lab_rf."""
    from pfs_core import schema
    from pfs_core.io.cohort import read_cohort
    from pfs_core.io.labs import is_missing

    root = Path(__file__).resolve().parents[3]
    row = read_cohort(root / "sample_data" / "cohort.csv").set_index("patient_id").loc["SIM0001"]
    labs = {c: None if is_missing(row.get(c)) else row.get(c) for c in schema.LAB_COLUMNS if c != "prrt_cycles"}
    assert labs["alt"] is None
    result = explain_case(load_bundle(root / "models" / "lab_rf"), pet=None, ct=None, labs=labs, gradcam=False)
    s = result.lab_shap
    assert s is not None and s.shap_values[s.names.index("alt")] == 0.0
    assert s.base_value + sum(s.shap_values) == pytest.approx(s.output, abs=1e-6)
    assert s.output == pytest.approx(result.prediction.probability, abs=1e-6)
