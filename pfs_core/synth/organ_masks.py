"""The simulator's organ map in the product's organ code set, as a research group's TotalSegmentator output.

``<id>_organs.nii.gz`` holds the simulator's tissue codes (:data:`pfs_core.synth.constants.ORGAN_LABELS`);
measurement reads the organ codes of :data:`pfs_core.io.organs.ORGANS`, with kidneys and adrenals
split by side. :func:`organ_mask_image` converts one into the other and names the labels in the
header the way TotalSegmentator ``--ml`` does, so that ``cohort.csv``'s ``organs`` column can point at
it like at any multi-label NIfTI a user brings (docs/organ_input.md).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from pfs_core.io.organ_files import label_names_extension
from pfs_core.io.organs import ORGAN_CODE, ORGANS
from pfs_core.synth.constants import LABEL

#: File suffix of the converted map beside the CT.
ORGAN_MASKS_SUFFIX = "_organ_masks.nii.gz"
_SAME_NAME = {"liver": "liver", "spleen": "spleen", "bladder": "urinary_bladder", "pancreas": "pancreas"}
_SIDED = {"kidney": ("kidney_right", "kidney_left"), "adrenal": ("adrenal_gland_right", "adrenal_gland_left")}


def organ_codes(tissue: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """uint8 map of :data:`ORGANS` codes from the simulator's tissue map ``tissue`` on the grid ``affine``.

    Left and right are split at the spine's median x (world mm, RAS+: +x points to the patient's right).
    """
    labels = np.zeros(tissue.shape, dtype=np.uint8)
    for sim_name, name in _SAME_NAME.items():
        labels[tissue == LABEL[sim_name]] = ORGAN_CODE[name]
    x_world = affine[0, 0] * np.arange(tissue.shape[0]) + affine[0, 3]
    bone = np.nonzero(tissue == LABEL["bone"])[0]
    midline = float(np.median(x_world[bone])) if bone.size else float(np.median(x_world))
    right = (x_world > midline)[:, None, None]
    for sim_name, (right_name, left_name) in _SIDED.items():
        organ = tissue == LABEL[sim_name]
        labels[organ & right] = ORGAN_CODE[right_name]
        labels[organ & ~right] = ORGAN_CODE[left_name]
    return labels


def organ_mask_image(tissue: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """The converted map as a NIfTI with its label names in a header extension."""
    img = nib.Nifti1Image(organ_codes(tissue, affine), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = b"pfs_core synth organ masks (simulated)"
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.extensions.append(label_names_extension(dict(ORGANS)))
    return img
