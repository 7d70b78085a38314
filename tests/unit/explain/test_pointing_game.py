"""Pointing game on a small simulated cohort with a trained tiny model.

Short-PFS patients carry one extra hot lesion at a random place; a tiny PET CNN
learns it, and its Grad-CAM maximum must fall in the (dilated) lesion more often than
a random point does.
"""

import dataclasses

import numpy as np
import pytest
from model_fixtures import FAST, PROVENANCE, make_cohort
from scipy import ndimage

from pfs_core.dataset import CohortData
from pfs_core.explain.gradcam import gradcam_layer_names, gradcam_model_space
from pfs_core.models.bundle import load_bundle
from pfs_core.models.registry import get_spec
from pfs_core.training.bundle import train_bundle

RADIUS = 2  # voxels of the model grid (16³)


def _lesion_cohort(n: int, seed: int) -> tuple[CohortData, np.ndarray]:
    """make_cohort's patients, short PFS ones with a hot sphere at a random position; returns (data, masks)."""
    data = make_cohort(n, seed=seed)
    rng = np.random.default_rng(seed + 7)
    shape = data.pet.shape[1:]
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    data.pet[:] = rng.uniform(0.0, 0.05, data.pet.shape)  # only the planted lesions remain
    masks = np.zeros(data.pet.shape, bool)
    for i in np.flatnonzero(data.label == 1):
        centre = rng.integers(RADIUS + 1, np.array(shape) - RADIUS - 1)
        masks[i] = ((grid - centre[:, None, None, None]) ** 2).sum(axis=0) <= RADIUS**2
        data.pet[i][masks[i]] = 0.9
    return data, masks


@pytest.mark.slow
def test_gradcam_points_at_the_lesion_more_often_than_chance(tmp_path):
    train, _ = _lesion_cohort(30, seed=1)
    # min_improvement 0: the held-out loss alone picks the epoch, as this test is about a trained trunk
    config = dataclasses.replace(FAST, epochs=20, channels=(8, 16), strides=(1, 2), modality_dropout=0.0,
                                 min_improvement=0.0)
    bundle = load_bundle(train_bundle(train, get_spec("pet_cnn"), tmp_path / "b", folds=2, seed=0, config=config,
                                      provenance=PROVENANCE))
    test, masks = _lesion_cohort(24, seed=11)
    layer = gradcam_layer_names(bundle)["pet"]
    hits, chance = [], []
    for i in np.flatnonzero(test.label == 1):
        cam = gradcam_model_space(bundle, test.subset([i]), modality="pet", layer=layer)
        peak = np.unravel_index(np.argmax(cam), cam.shape)
        dilated = ndimage.binary_dilation(masks[i])  # the lesion plus one voxel
        hits.append(bool(dilated[peak]))
        chance.append(dilated.mean())
    rate, baseline = float(np.mean(hits)), float(np.mean(chance))
    assert len(hits) >= 5
    print(f"pointing game: hit rate {rate:.2f}, random-point baseline {baseline:.2f}")
    assert rate > baseline + 0.3, (rate, baseline)
