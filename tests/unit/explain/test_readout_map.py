"""Read-out maps: the voxels the liver-referenced read-outs counted, on the CT grid."""

import numpy as np

from pfs_core.config import PreprocessConfig
from pfs_core.explain.readout_map import readout_maps_model_space, readout_maps_on_ct_grid
from pfs_core.io import Volume
from pfs_core.preprocessing.model_grid import preprocess_case

CONFIG = PreprocessConfig(shape=(20, 20, 20), spacing_mm=(12.0, 12.0, 12.0), pet_suv_max=60.0)
AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])
SHAPE = (60, 60, 60)


def _ball(centre_mm: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(n) * 4.0 for n in SHAPE], indexing="ij"))
    return ((grid - np.array(centre_mm)[:, None, None, None]) ** 2).sum(axis=0) <= radius_mm**2


def _case():
    """A body with a liver (SUV 7, 60 HU) holding an SSTR-avid lesion and an SSTR-negative hypodense one."""
    body, liver = _ball((120, 120, 120), 110), _ball((120, 120, 120), 80)
    hot, cold = _ball((90, 120, 120), 14), _ball((150, 120, 120), 14)
    rng = np.random.default_rng(0)
    suv = np.where(body, 1.0, 0.05) + rng.uniform(0, 0.1, SHAPE)
    suv[liver], suv[hot], suv[cold] = 7.0, 28.0, 1.0
    hu = np.where(body, 20.0, -1000.0) + rng.normal(0, 2, SHAPE)
    hu[liver], hu[hot], hu[cold] = 60.0, 52.0, 30.0
    pet = Volume(suv.astype(np.float32), AFFINE, "pet", "PET", "SUVbw")
    ct = Volume(hu.astype(np.float32), AFFINE, "ct", "CT", "HU")
    return preprocess_case(pet, ct, CONFIG), hot, cold


def test_pet_map_marks_both_lesions_and_peaks_in_the_avid_one():
    case, hot, cold = _case()
    maps = readout_maps_on_ct_grid(case)
    pet = np.asarray(maps["pet"].dataobj)
    assert pet.max() == 1.0 and pet.shape == SHAPE and np.allclose(maps["pet"].affine, AFFINE)
    peak = np.unravel_index(np.argmax(pet), SHAPE)
    assert hot[peak]  # ratio 4 to the liver scores 3, the SSTR-negative lesion at most 1
    assert pet[hot].mean() > 0.3 and pet[cold].mean() > 0.05
    liver_only = _ball((120, 120, 120), 80) & ~_ball((90, 120, 120), 30) & ~_ball((150, 120, 120), 30)
    assert pet[liver_only].mean() < 0.05  # the parenchyma itself is not counted


def test_ct_map_marks_the_hypodense_lesion():
    case, hot, cold = _case()
    ct = np.asarray(readout_maps_on_ct_grid(case)["ct"].dataobj)
    peak = np.unravel_index(np.argmax(ct), SHAPE)
    assert _ball((150, 120, 120), 26)[peak]  # the lesion plus about one model voxel
    assert ct[cold].mean() > 5 * ct[hot].mean()


def test_maps_only_for_the_images_given_and_asked_for():
    case, _, _ = _case()
    assert set(readout_maps_model_space(case, ("pet",))) == {"pet"}
    no_ct = preprocess_case(Volume(np.zeros(SHAPE, np.float32) + 7.0, AFFINE, "pet", "PET", "SUVbw"), None, CONFIG)
    empty = readout_maps_on_ct_grid(no_ct)
    assert set(empty) == {"pet"} and not np.asarray(empty["pet"].dataobj).any()  # uniform liver: nothing counted
