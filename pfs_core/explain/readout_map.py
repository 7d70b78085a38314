"""Read-out maps: where in the patient's images the liver-referenced read-outs were measured.

The fusion networks' PET and CT branches, and the ``classic`` model, read fixed
measurements against the liver (:mod:`pfs_core.features.readouts`); in the networks they enter
the wide (linear) path, which carries most of what the models learn from the images
(docs/models.md). Grad-CAM weighs the voxels the read-outs are summed from by how they
moved the prediction (its read-out layer, :mod:`pfs_core.explain.gradcam`), and keeps only
those that raised it. These maps show all the voxels the read-outs counted, whatever the
direction, on the patient's original CT grid (the CT's affine), scaled 0–1:

- PET: hepatic voxels hotter than :data:`~pfs_core.features.readouts.HOT_FACTOR` × liver or
  colder than :data:`~pfs_core.features.readouts.COLD_FACTOR` × liver, valued |SUV / liver SUV − 1|,
  the distance from the liver's uptake as a fraction of it: an SSTR-avid lesion with a
  tumour-to-liver ratio of 4 scores 3, an SSTR-negative one at most 1. (On the log scale
  the liver's rim, where a 12-mm voxel is half fat, outshone every lesion.)
- CT: hypodense hepatic voxels (more than :data:`~pfs_core.features.readouts.HYPODENSE_HU`
  below the liver), valued by how many HU below the liver they are.

They are measurements, not attributions: how much each read-out moved this
prediction is in the modality contributions and the measurement table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from pfs_core.explain.gradcam import map_on_ct_grid
from pfs_core.features.readouts import ct_hepatic_masks, hepatic_masks, to_hu

if TYPE_CHECKING:
    import nibabel as nib

    from pfs_core.preprocessing.model_grid import PreparedCase


READOUT_MAP_NOTE = ("voxels the liver-referenced read-outs counted (PET: hepatic voxels hotter or colder than the "
                    "liver; CT: hypodense hepatic voxels), brighter further from the liver; a measurement, not an "
                    "attribution")


def readout_maps_model_space(case: PreparedCase, modalities: tuple[str, ...] = ("pet", "ct")) -> dict[str, np.ndarray]:
    """Read-out map per modality on the model grid (``case.config.shape``), float32 >= 0, unscaled.

    PET values are |SUV / liver SUV − 1|, CT values HU below the liver; 0 outside the
    counted voxels. Modalities the case lacks are left out.
    """


    out: dict[str, np.ndarray] = {}
    if "pet" in modalities and case.pet is not None:
        suv = torch.from_numpy(np.asarray(case.pet, dtype=np.float32))[None, None] * float(case.config.pet_suv_max)
        liver, _, hot, cold = hepatic_masks(suv)
        out["pet"] = ((hot + cold) * (suv / liver - 1.0).abs())[0, 0].numpy().astype(np.float32)
    if "ct" in modalities and case.ct is not None:
        hu = to_hu(torch.from_numpy(np.asarray(case.ct, dtype=np.float32))[None, None], case.config.ct_window_hu)
        liver, _, hypodense = ct_hepatic_masks(hu)
        out["ct"] = (hypodense * (liver - hu).clamp(min=0.0))[0, 0].numpy().astype(np.float32)
    return out


def readout_maps_on_ct_grid(case: PreparedCase, modalities: tuple[str, ...] = ("pet", "ct"), *,
                            body_mask: np.ndarray | None = None) -> dict[str, nib.Nifti1Image]:
    """:func:`readout_maps_model_space` resampled onto the original CT grid (its affine), 0 outside
    ``body_mask`` (bool, the CT grid's shape) when given, scaled 0–1 (an empty map stays 0)."""

    return {modality: map_on_ct_grid(model_map, case, body_mask=body_mask)
            for modality, model_map in readout_maps_model_space(case, modalities).items()}
