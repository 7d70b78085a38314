"""pfs_core.synth.placed: a PET placed on a CT's organs, for CTs stored in any axis order."""

from __future__ import annotations

import numpy as np
import pytest

from pfs_core.io import Volume
from pfs_core.io.organs import ORGAN_CODE, OrganMasks
from pfs_core.measure.grids import sample_at
from pfs_core.synth.placed import ORGAN_SUV, organ_activity, simulate_pet


@pytest.mark.parametrize("signs", [(1, 1, 1), (-1, -1, 1)], ids=["RAS-ordered", "LPS-ordered"])
def test_the_pet_covers_the_ct_and_reads_the_organs_uptake_where_they_are(signs):
    shape, spacing = (40, 36, 30), 2.0
    affine = np.diag([s * spacing for s in signs] + [1.0])
    affine[:3, 3] = (-30.0, 50.0, 10.0)
    hu = np.full(shape, 40.0, dtype=np.float32)
    ct = Volume(data=hu, affine=affine, source="ct", modality="CT", units="HU")
    labels = np.zeros(shape, dtype=np.uint8)
    labels[8:28, 8:28, 8:24] = ORGAN_CODE["liver"]
    labels[30:38, 10:20, 10:20] = ORGAN_CODE["spleen"]
    organs = OrganMasks(labels=labels, affine=affine, source="test", present=("liver", "spleen"))

    pet = simulate_pet(ct, organ_activity(ct, organs), seed=0, noise=0.0)

    def world(index: tuple[float, float, float]) -> np.ndarray:
        return (affine @ np.array([*index, 1.0]))[:3]

    corners = [world((i, j, k)) for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)]
    pet_low, pet_high = world_range(pet)  # every CT voxel centre lies in a PET voxel
    assert np.all(np.min(corners, axis=0) >= pet_low) and np.all(np.max(corners, axis=0) <= pet_high)
    liver_centre, spleen_centre = world((17.5, 17.5, 15.5)), world((33.5, 14.5, 14.5))
    read = sample_at(pet.data, pet.affine, np.array([liver_centre, spleen_centre]), order=1)
    assert read[0] == pytest.approx(ORGAN_SUV["liver"], rel=0.02)
    assert read[1] > 0.8 * ORGAN_SUV["spleen"]  # a small organ loses some of its uptake to the blur


def world_range(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (mm) of the outer edges of the first and last voxels of a diagonal, positive affine."""
    step = np.diag(volume.affine)[:3]
    first = volume.affine[:3, 3] - step / 2.0
    return first, first + np.asarray(volume.shape) * step
