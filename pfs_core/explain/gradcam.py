"""Grad-CAM of the PET and CT branches (Captum's LayerGradCam), averaged over the fold ensemble.

For each fold network, :class:`captum.attr.LayerGradCam` attributes the
short-PFS logit to two layers of the branch, where it has both:

- the last layer of the conv trunk (the layer named in the bundle,
  ``<modality>_branch.features.layer<k>``);
- the read-out layer, ``<modality>_branch.quant.maps``: the voxel maps (hot and cold
  hepatic voxels, their uptake against the liver, the hepatic region; CT: hypodense
  hepatic voxels) whose sums are the liver-referenced read-outs of the wide path.

A branch's two routes to the logit are both in the model, and at the cohort sizes of
the simulator the read-outs carry most of it (docs/models.md), so Grad-CAM of the
trunk alone would show the smaller part or nothing. Each layer's map is upsampled
trilinearly to the model grid (:meth:`captum.attr.LayerAttribution.interpolate`) and
put in the same unit, first-order logit per model voxel (a Grad-CAM map times the
layer's voxel count sums to the layer's linearised share of the logit; hence the
factor voxels of the layer / voxels of the model grid); the two are added and then
ReLU keeps the evidence for a higher risk. The fold maps are averaged, and the mean is
written back onto the patient's original CT grid with the CT's own affine
(:func:`pfs_core.preprocessing.model_grid.to_reference_grid`), set to 0 outside the body (CT above
the body threshold) and scaled to 0–1.

Captum attaches hooks only during ``attribute`` and removes them afterwards; a
module-level lock still serialises the calls because the dashboard shares one
cached model between sessions.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam

from pfs_core.dataset import CohortData
from pfs_core.models.device import resolve_device
from pfs_core.models.fitted import FittedModel, torch_inputs
from pfs_core.models.precision import full_precision
from pfs_core.preprocessing.model_grid import to_reference_grid

if TYPE_CHECKING:
    from pfs_core.models.bundle import Bundle
    from pfs_core.preprocessing.model_grid import PreparedCase


_LOCK = threading.Lock()
GRADCAM_NOTE = ("where this image raised the predicted risk: Grad-CAM of the branch's last convolutional layer and "
                "of its read-out layer (the voxel maps the liver-referenced read-outs are sums of), added per voxel "
                "and scaled to its maximum; as coarse as the model grid (12 mm for the shipped bundles)")


def gradcam_layer_names(bundle: Bundle, *, depth: int | None = None) -> dict[str, str]:
    """Target layer per imaging modality; ``depth`` picks ``features.layer<depth>`` instead of the last one."""
    member = bundle.members[0]
    if member.net is None:
        return {}
    layers = member.net.gradcam_layers()
    if depth is None:
        return layers
    return {m: f"{m}_branch.features.layer{depth}" for m in layers}


def gradcam_model_space(bundle: Bundle, data: CohortData, *, modality: str, layer: str,
                        device: Any = None, readout: bool = True) -> np.ndarray | None:
    """Mean Grad-CAM of ``modality`` over the fold networks on the model grid, scaled to 0–1.

    ``data`` is one case (row 0); ``layer``: the trunk layer; ``readout``: add the branch's
    read-out layer where it has one. Returns (X, Y, Z) float32 of ``bundle.preprocess.shape``,
    or None when the case has no such image.
    """
    present = getattr(data, f"{modality}_present", None)
    if present is None or not bool(present[0]):
        return None
    device = device or resolve_device()
    with _LOCK:
        maps = [_member_cam(m, data, modality=modality, layers=_layers(m, modality, layer, readout), device=device)
                for m in bundle.members]
    mean = np.mean(maps, axis=0)
    return scale_unit(mean)


def _layers(member: FittedModel, modality: str, layer: str, readout: bool) -> list[str]:
    assert member.net is not None
    extra = member.net.readout_layers().get(modality) if readout else None
    return [layer] + ([extra] if extra else [])


def _member_cam(member: FittedModel, data: CohortData, *, modality: str, layers: Sequence[str],
                device: Any) -> np.ndarray:
    """One fold network's Grad-CAM on the model grid: the layers' maps in logit per model voxel, added, ReLU."""

    assert member.net is not None
    net = member.net.to(device).eval()
    inputs = torch_inputs(member, data, np.array([0]), device)
    names = [m for m in ("pet", "ct") if inputs.get(m) is not None]
    fixed = {k: v for k, v in inputs.items() if k not in names}

    def forward(*images: torch.Tensor) -> torch.Tensor:
        return net(**dict(zip(names, images, strict=True)), **fixed)

    images = tuple(inputs[m].clone().requires_grad_(True) for m in names)  # type: ignore[union-attr]
    size = tuple(images[names.index(modality)].shape[2:])
    total = torch.zeros(size, device=device)
    for layer in layers:
        # Float32 even on CUDA (no autocast, pfs_core.models.precision): Grad-CAM multiplies gradients by
        # activations and sums them over channels, where bfloat16's 8-bit mantissa would shift small maps.
        with full_precision(device):
            cam = LayerGradCam(forward, net.get_submodule(layer)).attribute(images, target=0, relu_attributions=False)
        per_voxel = cam.detach()[0, 0].numel() / total.numel()
        total += LayerAttribution.interpolate(cam.detach(), size, interpolate_mode="trilinear")[0, 0] * per_voxel
    return total.clamp(min=0.0).cpu().numpy().astype(np.float32)


def scale_unit(volume: np.ndarray) -> np.ndarray:
    """Scale a non-negative map to 0–1 by its maximum (all zeros stay zeros)."""
    volume = np.clip(np.nan_to_num(volume), 0.0, None)
    peak = float(volume.max()) if volume.size else 0.0
    return (volume / peak if peak > 0 else volume).astype(np.float32)


def gradcam_on_ct_grid(bundle: Bundle, data: CohortData, case: PreparedCase, *, modalities: Sequence[str] = ("pet", "ct"),
                       depth: int | None = None, device: Any = None,
                       body_mask: np.ndarray | None = None) -> dict[str, nib.Nifti1Image]:
    """Grad-CAM per imaging modality, on the original CT grid (NIfTI with the CT's affine), scaled 0–1.

    ``body_mask`` (bool, the CT grid's shape): where the patient is; the map is set to 0
    outside it before scaling, because attributions to the air around the patient (an
    artefact of upsampling a coarse map with zero padding) mean nothing to a reader.
    """
    out: dict[str, nib.Nifti1Image] = {}
    for modality, layer in gradcam_layer_names(bundle, depth=depth).items():
        if modality not in modalities:
            continue
        model_map = gradcam_model_space(bundle, data, modality=modality, layer=layer, device=device)
        if model_map is not None:
            out[modality] = map_on_ct_grid(model_map, case, body_mask=body_mask)
    return out


def map_on_ct_grid(model_map: np.ndarray, case: PreparedCase, *, body_mask: np.ndarray | None = None) -> nib.Nifti1Image:
    """A model-grid map resampled (trilinear) onto the original CT grid with the CT's affine, set to 0
    outside ``body_mask`` (bool, the CT grid's shape) when given, and scaled 0–1."""


    image = to_reference_grid(model_map, case)
    values = np.asarray(image.dataobj, dtype=np.float32)
    if body_mask is not None:
        values = np.where(body_mask, values, 0.0)
    return nib.Nifti1Image(scale_unit(values), image.affine)
