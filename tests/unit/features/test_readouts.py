import numpy as np
import pytest
import torch

from pfs_core.features.pet_quant import PET_FEATURE_COLUMNS, pet_quantitative_features
from pfs_core.features.readouts import (
    CT_READOUT_NAMES,
    MEASUREMENT_UNITS,
    READOUT_NAMES,
    ct_hepatic_readout,
    hepatic_readout,
    liver_hu,
    liver_suv,
    measurements,
)


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


def test_liver_edge_fat_and_parenchymal_scatter_are_not_lesions():
    # a notch of fat in the liver's surface (taken in by the closing) and a liver voxel 1.3 x the
    # reference (the scatter of an unsmoothed 12-mm grid) used to count as cold and hot lesion
    suv = _phantom()
    suv[2, 10, 10] = 0.7
    suv[8, 16, 16] = 6.0 * 1.3
    values = dict(zip(READOUT_NAMES, hepatic_readout(torch.from_numpy(suv)[None, None], 2.0)[0].tolist(),
                      strict=True))
    assert values["hepatic_cold_ml"] == pytest.approx(8 * 2.0)
    assert values["hepatic_hot_ml"] == pytest.approx(8 * 2.0)
    assert values["hepatic_tlr"] == pytest.approx(3.0, rel=1e-4)


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


def _ct_phantom() -> np.ndarray:
    """HU volume (24, 24, 24): air, soft tissue 45, liver 60 with a 2x2x2 hypodense (30 HU) lesion inside."""
    hu = np.full((24, 24, 24), -1000.0, np.float32)
    hu[1:23, 1:23, 1:23] = 45.0
    hu[2:14, 2:20, 4:20] = 60.0
    hu[6:8, 8:10, 10:12] = 30.0
    return hu


def test_ct_readout_finds_the_hypodense_lesion_inside_the_liver():
    hu = torch.from_numpy(_ct_phantom())[None, None]
    assert float(liver_hu(hu)[0]) == pytest.approx(60.0)
    volume_ml, fraction = ct_hepatic_readout(hu, 2.0)[0].tolist()
    assert volume_ml == pytest.approx(8 * 2.0)
    assert 0.0 < fraction < 0.05
    clean = _ct_phantom()
    clean[6:8, 8:10, 10:12] = 60.0
    assert ct_hepatic_readout(torch.from_numpy(clean)[None, None], 2.0).abs().sum() == 0


def test_measurements_report_what_each_image_gives():
    pet, ct = _phantom() / 60.0, (_ct_phantom() + 200.0) / 600.0
    both = measurements(pet, ct, suv_max=60.0, ct_window_hu=(-200.0, 400.0), voxel_ml=2.0)
    assert set(both) == set(MEASUREMENT_UNITS)
    assert both["hepatic_tlr"] == pytest.approx(3.0, rel=1e-3) and both["ct_hypodense_ml"] == pytest.approx(16.0)
    only_ct = measurements(None, ct, suv_max=60.0, ct_window_hu=(-200.0, 400.0), voxel_ml=2.0)
    assert set(only_ct) == {"liver_hu", *CT_READOUT_NAMES}


def test_hepatic_region_leaves_out_an_organ_rim_apart_from_the_liver():
    suv = _phantom()
    # a small hot organ whose blurred edge passes through the liver's uptake: a shell in the band
    # around a hot core, as a liver lesion looks, but three voxels of muscle away from the liver
    suv[17:21, 10:14, 10:14] = 6.0
    suv[18:20, 11:13, 11:13] = 25.0
    values = dict(zip(READOUT_NAMES, hepatic_readout(torch.from_numpy(suv)[None, None], 2.0)[0].tolist(),
                      strict=True))
    assert values["hepatic_hot_ml"] == pytest.approx(8 * 2.0)  # the liver lesion only
    assert values["hepatic_tlr"] == pytest.approx(3.0, rel=1e-4)

