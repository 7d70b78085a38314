import numpy as np
import pandas as pd
import pytest
from model_fixtures import make_cohort

from pfs_core.features.pet_quant import pet_quantitative_features
from pfs_core.features.readouts import LIVER_SUV_FALLBACK
from pfs_core.features.tabular import (
    LOG_COLUMNS,
    LabTransformer,
    TabularParams,
    feature_ranges,
    fit_lab_transform,
)


def test_prrt_cycles_excluded_by_default_and_included_with_flag(cohort):
    default = fit_lab_transform(cohort.labs)
    assert not any("prrt_cycles" in n for n in default.feature_names)
    assert default.include_post_baseline is False
    flagged = fit_lab_transform(cohort.labs, include_post_baseline=True)
    assert "prrt_cycles" in flagged.feature_names
    assert flagged.include_post_baseline is True


def test_exported_params_reproduce_the_sklearn_transform(cohort):
    transformer = LabTransformer().fit(cohort.labs)
    params = TabularParams.from_dict(transformer.to_params().to_dict())
    other = make_cohort(10, seed=5).labs
    other.loc[0, "albumin"] = np.nan  # missing where training had none: imputed, no indicator
    other.loc[1, "sex"] = None
    np.testing.assert_allclose(params.transform(other), transformer.transform(other), rtol=1e-6, atol=1e-6)
    assert params.transform(other).shape == (10, params.n_features)


def test_log_indicator_and_one_hot(cohort):
    params = fit_lab_transform(cohort.labs)
    assert set(params.log_columns) == set(LOG_COLUMNS)
    assert "missing_ki67" in params.feature_names  # ki67 has missing values in the fake cohort
    assert {"sex=F", "sex=M", "primary_site=pancreas"} <= set(params.feature_names)
    out = params.transform(cohort.labs)
    j = params.feature_names.index("log1p_chromogranin_a")
    assert abs(out[:, j].mean()) < 1e-5 and abs(out[:, j].std() - 1) < 1e-3  # standardised on these rows


def test_fitted_on_training_rows_only(cohort):
    """Changing test-fold rows must not change anything fitted on the training rows."""
    train, test = np.arange(0, 12), np.arange(12, len(cohort))
    labs = cohort.labs.copy()
    before = fit_lab_transform(labs.iloc[train])
    labs.loc[test, "chromogranin_a"] *= 1000.0
    labs.loc[test, "gamma_gt"] = np.nan
    after = fit_lab_transform(labs.iloc[train])
    assert before == after
    leaky = fit_lab_transform(labs)  # sanity: fitting on all rows would see the change
    assert leaky.mean != before.mean


def test_cv_fold_transform_does_not_see_test_rows(cohort):
    """By construction in fit_model: the fold's lab statistics equal those of its training rows alone."""
    from model_fixtures import FAST

    from pfs_core.models.registry import get_spec
    from pfs_core.training.fit import fit_model

    train = np.arange(0, 14)
    model = fit_model(get_spec("lab_rf"), cohort.subset(train), config=FAST, seed=0)
    assert model.tabular == fit_lab_transform(cohort.labs.iloc[train])
    assert model.tabular != fit_lab_transform(cohort.labs)


def test_feature_ranges(cohort):
    ranges = feature_ranges(cohort.labs)
    info = ranges["chromogranin_a"]
    assert info["unit"] == "ng/mL"
    assert info["min"] <= info["p01"] <= info["p99"] <= info["max"]
    assert "prrt_cycles" not in ranges
    assert ranges["ki67"]["n_missing"] == int(cohort.labs["ki67"].isna().sum())


def test_unknown_category_and_all_missing_column():
    frame = pd.DataFrame({"chromogranin_a": [1.0, 2.0, np.nan], "sex": ["F", "M", "X"]})
    params = fit_lab_transform(frame)
    out = params.transform(frame)
    assert np.isfinite(out).all()
    assert out[2, params.feature_names.index("sex=F")] == 0 and out[2, params.feature_names.index("sex=M")] == 0


def test_pet_features_without_segmentation():
    pet = np.full((20, 20, 20), 0.05, np.float32)  # SUV 1 background at pet_suv_max 20
    pet[2:12, 2:12, 2:12] = 0.3  # "liver": SUV 6, 1000 voxels
    pet[14:18, 14:18, 14:18] = 0.9  # lesion: SUV 18, 64 voxels
    feats = pet_quantitative_features(pet, pet_suv_max=20.0, voxel_ml=1.0)
    assert feats["suv_max"] == pytest.approx(18.0)
    assert feats["hot_volume_ml"] == pytest.approx(64.0)  # > 1.5 x liver
    assert feats["tlr_max"] == pytest.approx(3.0)
    assert feats["suv_mean_hot"] == pytest.approx(18.0)
    no_liver = pet_quantitative_features(np.full_like(pet, 0.05), pet_suv_max=20.0, voxel_ml=1.0)
    assert no_liver["tlr_max"] == pytest.approx(1.0 / LIVER_SUV_FALLBACK)  # SUV 1 against the typical liver
    assert pet_quantitative_features(pet, pet_suv_max=20.0, voxel_ml=1.0, suv_max_original=36.0)["tlr_max"] == pytest.approx(6)
    assert all(np.isnan(v) for v in pet_quantitative_features(None, pet_suv_max=20, voxel_ml=1).values())
