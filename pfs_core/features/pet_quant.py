"""Quantitative PET features of the ``classic`` model, read on the model grid without segmentation.

SUVmax, the hot region above the liver reference and its mean, tumour-to-liver
ratios, plus the hepatic read-outs of :mod:`pfs_core.features.readouts`.
"""

from __future__ import annotations

import numpy as np
import torch

from pfs_core.features.readouts import READOUT_NAMES, hepatic_readout, liver_suv

#: Quantitative PET features of the ``classic`` model (order of the columns); the last four are the
#: hepatic read-outs of :mod:`pfs_core.features.readouts`.
PET_FEATURE_COLUMNS: tuple[str, ...] = ("suv_max", "suv_mean_hot", "hot_volume_ml", "tlr_max", "tlr_mean",
                                        *READOUT_NAMES)


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
    - liver reference: :func:`pfs_core.features.readouts.liver_suv`, the one liver
      reference of every model (median SUV inside its liver window; a typical liver
      SUV when no voxel lies in it).
    - hot region: voxels with SUV > ``hot_factor`` × liver reference. It includes
      physiological uptake (spleen, kidneys, adrenals, urine) that no
      segmentation removes. ``hot_volume_ml`` its volume (mL), ``suv_mean_hot`` its
      mean SUV (model grid).
    - ``tlr_max`` = ``suv_max`` / liver reference; ``tlr_mean`` = ``suv_mean_hot`` / liver reference.

    - ``hepatic_*``: :func:`pfs_core.features.readouts.hepatic_readout` (lesions inside the
      liver against the liver, measured the way a reader grades them).

    All NaN when the PET is missing (the ``classic`` model imputes them with the training median).
    """
    if pet is None:
        return dict.fromkeys(PET_FEATURE_COLUMNS, float("nan"))
    suv = np.asarray(pet, dtype=np.float64) * pet_suv_max
    tensor = torch.from_numpy(suv.astype(np.float32))[None, None]
    liver = float(liver_suv(tensor)[0])
    suv_max = float(suv_max_original) if suv_max_original is not None else float(suv.max())
    hot = suv > hot_factor * liver
    mean_hot = float(suv[hot].mean()) if hot.any() else float(suv.max())
    return {
        "suv_max": suv_max,
        "suv_mean_hot": mean_hot,
        "hot_volume_ml": float(hot.sum() * voxel_ml),
        "tlr_max": suv_max / liver,
        "tlr_mean": mean_hot / liver,
        **dict(zip(READOUT_NAMES, map(float, hepatic_readout(tensor, voxel_ml)[0]), strict=True)),
    }
