"""TODO-DOC

[from pfs_core.features.tabular] Lab and clinical feature preparation (a scikit-learn transformer fitted on training folds only).

Numeric labs: skewed ones are log-transformed (``log1p``), then
``SimpleImputer(strategy="median", add_indicator=True)`` (a 0/1 missing flag for
every lab that had missing values in the training fold), then ``StandardScaler``.
Categorical values (sex, primary site) are one-hot encoded with the fixed levels of
:mod:`pfs_core.schema`; a missing or unknown level gives all zeros.

``prrt_cycles`` (:data:`pfs_core.schema.POST_BASELINE_COLUMNS`) is known only after
therapy and is excluded unless ``include_post_baseline=True``.

The fitted transformer exports its parameters as plain arrays
(:class:`TabularParams`, JSON-able) so a model bundle needs no pickle; the
exported transform reproduces the fitted one exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from pfs_core.features.readouts import READOUT_NAMES, hepatic_readout

#: Quantitative PET features of the ``classic`` model (order of the columns); the last four are the
#: hepatic read-outs of :mod:`pfs_core.features.readouts`.
PET_FEATURE_COLUMNS: tuple[str, ...] = ("suv_max", "suv_mean_hot", "hot_volume_ml", "tlr_max", "tlr_mean",
                                        *READOUT_NAMES)


#: SUV window of the liver proxy (physiological liver SSTR uptake is moderate; spleen/kidneys/urine are higher).
LIVER_SUV_WINDOW: tuple[float, float] = (3.0, 15.0)


LIVER_MIN_ML = 200.0


def liver_reference_suv(suv: np.ndarray, *, voxel_ml: float) -> float:
    """Median SUV of a liver proxy found without segmentation (NaN if none).

    The proxy is the largest 6-connected region of voxels with SUV inside
    :data:`LIVER_SUV_WINDOW`: in SSTR PET the liver is by far the largest organ with
    moderate uptake (spleen, kidneys and urine are hotter and smaller; muscle, fat
    and bowel are colder). Regions smaller than :data:`LIVER_MIN_ML` are rejected.
    """

    mask = (suv >= LIVER_SUV_WINDOW[0]) & (suv <= LIVER_SUV_WINDOW[1])
    labels, n = ndimage.label(mask)
    if n == 0:
        return float("nan")
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    if sizes[largest - 1] * voxel_ml < LIVER_MIN_ML:
        return float("nan")
    return float(np.median(suv[labels == largest]))


def pet_quantitative_features(
    pet: np.ndarray | None,
    *,
    pet_suv_max: float,
    voxel_ml: float,
    hot_factor: float = 1.5,
    suv_max_original: float | None = None,
) -> dict[str, float]:
    """Quantitative PET features of one case on the model grid, without any segmentation.

    ``pet`` (D, H, W) in [0, 1] (SUVbw / ``pet_suv_max``, clipped); ``voxel_ml`` =
    voxel volume in mL.

    - ``suv_max``: SUVmax of the original PET (``suv_max_original``) when known,
      else the maximum on the model grid (capped at ``pet_suv_max``).
    - liver reference: :func:`liver_reference_suv` (a liver proxy, no segmentation).
    - hot region: voxels with SUV > ``hot_factor`` × liver reference. It includes
      physiological uptake (spleen, kidneys, adrenals, urine) that no
      segmentation removes. ``hot_volume_ml`` its volume (mL), ``suv_mean_hot`` its
      mean SUV (model grid).
    - ``tlr_max`` = ``suv_max`` / liver reference; ``tlr_mean`` = ``suv_mean_hot`` / liver reference.

    - ``hepatic_*``: :func:`pfs_core.features.readouts.hepatic_readout` (lesions inside the
      liver against the liver, measured the way a reader grades them).

    All NaN when the PET is missing; the ratios NaN when no liver proxy is found
    (the ``classic`` model imputes them with the training median).
    """
    if pet is None:
        return dict.fromkeys(PET_FEATURE_COLUMNS, float("nan"))
    suv = np.asarray(pet, dtype=np.float64) * pet_suv_max
    liver = liver_reference_suv(suv, voxel_ml=voxel_ml)
    suv_max = float(suv_max_original) if suv_max_original is not None else float(suv.max())
    threshold = hot_factor * liver if np.isfinite(liver) else 2.0 * LIVER_SUV_WINDOW[0]
    hot = suv > threshold
    mean_hot = float(suv[hot].mean()) if hot.any() else float(suv.max())
    return {
        "suv_max": suv_max,
        "suv_mean_hot": mean_hot,
        "hot_volume_ml": float(hot.sum() * voxel_ml),
        "tlr_max": suv_max / liver,
        "tlr_mean": mean_hot / liver,
        **_hepatic_features(suv, voxel_ml),
    }


def _hepatic_features(suv: np.ndarray, voxel_ml: float) -> dict[str, float]:


    values = hepatic_readout(torch.from_numpy(suv.astype(np.float32))[None, None], voxel_ml)[0]
    return dict(zip(READOUT_NAMES, map(float, values), strict=True))
