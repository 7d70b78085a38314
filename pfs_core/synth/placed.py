"""An SSTR PET placed on a real CT: uptake painted on its organ masks, blurred and sampled on a PET grid.

The real-anatomy checks of the measurement (tests/unit/measure/test_measure_real.py,
benchmarks/real_liver_tumours.py) need a PET that matches a real CT for which no SSTR PET exists: the
organs' uptake (SUVbw) is painted on the CT grid from their masks, blurred with the PET's resolution,
resampled onto a coarser grid with an origin of its own (so that no CT and PET voxel edges coincide) and
given a seeded Poisson-like noise. Nothing here is random without a seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from pfs_core.io import Volume, world_bounds
from pfs_core.io.organs import OrganMasks
from pfs_core.preprocessing.resample import resample_array

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: SSTR PET uptake (SUVbw) of the organs, typical of 68Ga-DOTATOC/-TATE (docs/IMAGING.md): liver 7, spleen 24,
#: kidneys 15, adrenals at the liver's, pancreas 3 (the uncinate process, when delineated, hotter).
ORGAN_SUV: dict[str, float] = {"liver": 7.0, "spleen": 24.0, "kidney_right": 15.0, "kidney_left": 15.0,
                               "adrenal_gland_right": 7.0, "adrenal_gland_left": 7.0, "pancreas": 3.0}
BODY_SUV = 1.0
BODY_MIN_HU = -300.0  # CT voxels above this are body (uptake BODY_SUV), the rest air (0)
PET_GRID_SHIFT_MM = (1.3, 2.1, 0.7)  # the PET grid's origin, off the CT's voxel edges


def organ_activity(ct: Volume, organs: OrganMasks, organ_suv: Mapping[str, float] | None = None) -> np.ndarray:
    """Uptake (SUVbw, float32, CT grid): ``BODY_SUV`` in the body, each delineated organ at its ``organ_suv``."""
    activity = np.where(ct.data > BODY_MIN_HU, BODY_SUV, 0.0).astype(np.float32)
    for name, suv in (ORGAN_SUV if organ_suv is None else organ_suv).items():
        activity[organs.mask(name)] = suv
    return activity


def simulate_pet(ct: Volume, activity: np.ndarray, *, seed: int, fwhm_mm: float = 6.0, spacing_mm: float = 4.0,
                 noise: float = 0.05, noise_reference_suv: float = 7.0) -> Volume:
    """``activity`` (CT grid, SUVbw) blurred to ``fwhm_mm``, on a ``spacing_mm`` PET grid covering the CT, noisy.

    Noise SD per voxel: ``noise`` × sqrt(SUV × ``noise_reference_suv``) (the liver's SUV by default).
    """
    blurred = ndimage.gaussian_filter(activity, [fwhm_mm * FWHM_TO_SIGMA / s for s in ct.spacing_mm])
    low, high = world_bounds(ct.affine, ct.shape)
    nx, ny, nz = (int(n) for n in np.ceil((high - low) / spacing_mm).astype(int) + 1)
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = low - np.asarray(PET_GRID_SHIFT_MM)
    data = resample_array(blurred, ct.affine, to_affine=affine, to_shape=(nx, ny, nz)).astype(np.float64)
    rng = np.random.default_rng(seed)
    data += rng.normal(0.0, 1.0, data.shape) * noise * np.sqrt(np.clip(data, 0.0, None) * noise_reference_suv)
    return Volume(data=np.clip(data, 0.0, None).astype(np.float32), affine=affine, source="simulated_pet",
                  modality="PET", units="SUVbw")
