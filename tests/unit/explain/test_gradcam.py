"""Grad-CAM reaches the read-out layer: a network whose conv trunk adds nothing still points at the lesion."""

import dataclasses

import numpy as np
import pytest
import torch
from model_fixtures import FAST

from pfs_core.config import PreprocessConfig
from pfs_core.dataset import CohortData
from pfs_core.explain.gradcam import _member_cam
from pfs_core.features.readouts import READOUT_NAMES
from pfs_core.models.fitted import FittedModel
from pfs_core.models.registry import get_spec
from pfs_core.training.fit import build_fusion_net

GRID = PreprocessConfig(shape=(20, 20, 20), spacing_mm=(12.0, 12.0, 12.0), pet_suv_max=60.0)


def _case() -> tuple[CohortData, np.ndarray, np.ndarray]:
    """One model-grid PET: body 1, liver 7 with an SSTR-avid lesion (28) and a cold one (1), spleen 25."""
    suv = np.full(GRID.shape, 1.0, np.float32)
    suv[3:15, 3:15, 3:15] = 7.0
    hot, cold = np.zeros(GRID.shape, bool), np.zeros(GRID.shape, bool)
    hot[5:7, 5:7, 5:7], cold[10:12, 10:12, 10:12] = True, True
    suv[hot], suv[cold] = 28.0, 1.0
    suv[16:19, 3:9, 3:9] = 25.0
    data = CohortData(patient_ids=np.array(["P0"]), labs=None, time_months=np.array([6.0]), event=np.array([1]),
                      preprocess=GRID, pet=(suv / GRID.pet_suv_max)[None], pet_present=np.ones(1, bool))
    return data, hot, cold


def _trunk_silent_model(weights: dict[str, float]) -> FittedModel:
    """A ``pet_cnn`` network at its logistic start: head zeroed, wide weights on the named read-outs only."""
    config = dataclasses.replace(FAST, pet_quant=True, lesion_features=False, wide=True)
    net = build_fusion_net(get_spec("pet_cnn"), config, None, GRID)
    with torch.no_grad():
        for p in net.head.parameters():
            p.zero_()
        net.wide.weight.zero_()
        for name, value in weights.items():
            net.wide.weight[0, READOUT_NAMES.index(name)] = value
    return FittedModel(spec=get_spec("pet_cnn"), config=config, tabular=None, net=net.eval())


def _cam(weights: dict[str, float], *, readout: bool = True) -> np.ndarray:
    data, _, _ = _case()
    model = _trunk_silent_model(weights)
    layers = [model.net.gradcam_layers()["pet"]] + ([model.net.readout_layers()["pet"]] if readout else [])
    return _member_cam(model, data, modality="pet", layers=layers, device=torch.device("cpu"))


def test_network_names_its_readout_layers():
    model = _trunk_silent_model({})
    assert model.net.readout_layers() == {"pet": "pet_branch.quant.maps"}
    assert model.net.get_submodule("pet_branch.quant.maps") is model.net.pet_branch.quant.maps


def test_trunk_alone_is_empty_and_the_readout_layer_is_not():
    weights = {"hepatic_lesion_fraction": 1.0}
    assert not _cam(weights, readout=False).any()  # the zeroed head: the trunk adds nothing
    cam = _cam(weights)
    assert cam.shape == GRID.shape and cam.max() > 0


@pytest.mark.parametrize(("weights", "lesion"), [({"hepatic_cold_ml": 1.0}, "cold"),
                                                 ({"hepatic_hot_ml": 1.0}, "hot"),
                                                 ({"hepatic_lesion_fraction": 1.0}, "either")])
def test_readout_gradcam_marks_the_lesions_that_raise_the_risk(weights, lesion):
    _, hot, cold = _case()
    cam = _cam(weights)
    target = {"hot": hot, "cold": cold, "either": hot | cold}[lesion]
    assert target[np.unravel_index(np.argmax(cam), cam.shape)]
    assert cam[~target].max() < cam[target].min() or lesion == "either"
    if lesion == "either":
        assert cam[target].min() > 0 and not cam[~target].any()


def test_a_protective_readout_gives_no_evidence_for_risk():
    # a higher tumour-to-liver ratio lowers the risk: the avid lesion's voxels are evidence against
    cam = _cam({"hepatic_hot_ml": -1.0})
    assert cam.shape == GRID.shape and not cam.any()
    assert _cam({"hepatic_hot_ml": 1.0}).any()  # the same read-out with the sign of risk: evidence
