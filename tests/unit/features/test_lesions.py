"""Lesion measurements on the model scale, and each lesion's share of them."""

import numpy as np
import pandas as pd
import pytest

from pfs_core.features.lesions import (
    FEATURE_BLOCKS,
    LESION_FEATURES,
    lesion_shares,
    model_scale,
    raw_features,
)


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "lesion_id": [1, 2, 3, 4], "site": ["liver", "bone", "liver", "liver"],
        "sstr_status": ["SSTR-positive", "SSTR-positive", "SSTR-negative", "SSTR-negative"],
        "volume_ml": [10.0, 30.0, 5.0, 15.0], "suv_mean": [20.0, 10.0, 2.0, 3.0],
        "tumour_to_liver": [4.0, 2.0, 0.4, 0.5], "heterogeneity": [0.2, 0.1, 0.3, 0.3],
    })


def test_each_feature_is_shared_among_the_lesions_that_make_it_up():
    shares = lesion_shares(_table())
    assert list(shares.columns) == list(LESION_FEATURES) and list(shares.index) == [1, 2, 3, 4]
    assert shares["sstr_positive_volume_ml"].tolist() == pytest.approx([0.25, 0.75, 0, 0])
    assert shares["tumour_to_liver_mean"].tolist() == pytest.approx([0.4, 0.6, 0, 0])  # volume × SUVmean
    assert shares["tumour_to_liver_max"].tolist() == [1.0, 0.0, 0.0, 0.0]  # the hottest lesion
    assert shares["liver_tumour_fraction"].tolist() == pytest.approx([1 / 3, 0, 1 / 6, 0.5])
    assert shares["sstr_negative_count"].tolist() == pytest.approx([0, 0, 0.5, 0.5])
    assert np.allclose(shares.sum(axis=0), 1.0)


def test_a_feature_no_lesion_makes_up_has_no_share():
    positive_only = _table().iloc[:2]
    shares = lesion_shares(positive_only)
    assert shares["sstr_negative_volume_ml"].sum() == 0 and shares["sstr_negative_count"].sum() == 0
    assert lesion_shares(positive_only.iloc[:0]).empty


def test_model_scale_is_log1p_except_fractions_and_blocks_cover_every_feature():
    raw = dict.fromkeys(LESION_FEATURES, 3.0) | {"liver_tumour_fraction": 0.2, "heterogeneity": 0.4}
    scaled = model_scale(raw)
    assert scaled[LESION_FEATURES.index("sstr_positive_volume_ml")] == pytest.approx(np.log1p(3.0))
    assert scaled[LESION_FEATURES.index("liver_tumour_fraction")] == pytest.approx(0.2)
    assert sorted(FEATURE_BLOCKS["pet"] + FEATURE_BLOCKS["ct"]) == sorted(LESION_FEATURES)
    features = raw_features({"sstr_positive_volume_ml": 40.0, "liver_tumour_fraction": float("nan")}, _table())
    assert features["sstr_positive_count"] == 2 and features["liver_tumour_fraction"] == 0.0
