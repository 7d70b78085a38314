import numpy as np
import pytest
import torch

from pfs_core.petquant import READOUT_NAMES, hepatic_readout, liver_suv
from pfs_core.tabular import PET_FEATURE_COLUMNS, pet_quantitative_features


def _phantom() -> np.ndarray:
    """SUV volume (24, 24, 24): liver 6 with a hot (18) and a cold (1) lesion of 2x2x2 voxels inside, spleen 25, muscle 0.7."""
    suv = np.full((24, 24, 24), 0.7, np.float32)
    suv[2:14, 2:20, 4:20] = 6.0  # liver
    suv[5:7, 5:7, 8:10] = 18.0  # hot lesion, 8 voxels, tumour-to-liver ratio 3
    suv[9:11, 12:14, 12:14] = 1.0  # cold lesion, 8 voxels
    suv[17:22, 4:9, 6:12] = 25.0  # spleen: hot, but outside the liver
    return suv


def test_liver_reference_ignores_hotter_and_colder_organs():
    assert float(liver_suv(torch.from_numpy(_phantom())[None, None])[0]) == pytest.approx(6.0)


def test_liver_reference_falls_back_without_liver_voxels():
    assert float(liver_suv(torch.full((1, 1, 8, 8, 8), 0.5))[0]) == pytest.approx(7.0)


def test_hepatic_readout_measures_the_lesions_inside_the_liver_only():
    values = dict(zip(READOUT_NAMES, hepatic_readout(torch.from_numpy(_phantom())[None, None], 2.0)[0].tolist(),
                      strict=True))
    assert values["hepatic_tlr"] == pytest.approx(3.0, rel=1e-4)
    assert values["hepatic_hot_ml"] == pytest.approx(8 * 2.0)  # the spleen is not counted
    assert values["hepatic_cold_ml"] == pytest.approx(8 * 2.0)
    assert 0.0 < values["hepatic_lesion_fraction"] < 0.05


def test_hepatic_readout_without_lesions_is_zero_and_finite():
    suv = _phantom()
    suv[5:7, 5:7, 8:10] = 6.0
    suv[9:11, 12:14, 12:14] = 6.0
    values = hepatic_readout(torch.from_numpy(suv)[None, None], 1.0)[0]
    assert torch.isfinite(values).all() and float(values.abs().sum()) == 0.0


def test_classic_features_include_the_hepatic_readouts():
    feats = pet_quantitative_features(_phantom() / 60.0, pet_suv_max=60.0, voxel_ml=2.0)
    assert list(feats) == list(PET_FEATURE_COLUMNS)
    assert feats["hepatic_tlr"] == pytest.approx(3.0, rel=1e-3)
