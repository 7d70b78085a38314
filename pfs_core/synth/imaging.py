"""Render one patient's CT (HU), PET (SUVbw) and label maps and write them as NIfTI.

A high-resolution tissue/activity model is built on the *phantom grid* (the CT's
lattice, extended in z to cover the PET field of view). The CT is a crop of it
(blur + noise); the PET is the activity blurred to the scanner resolution
(~6 mm FWHM), resampled at the PET grid's own world coordinates (trilinear) and
given signal-dependent, spatially correlated noise. Only the image random stream
is used here, so the tables never depend on whether images are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from pfs_core.synth.anatomy import (
    T_COLON,
    T_CSF,
    T_DISC,
    T_STOMACH_GAS,
    T_URINE_PELVIS,
    Anatomy,
    organ_map,
    paint_tissues,
)
from pfs_core.synth.constants import LABEL, TISSUE_HU
from pfs_core.synth.geometry import Array, Grid
from pfs_core.synth.patient import PatientAttributes

CT_NOISE_HU = (15.0, 25.0)  # Gaussian noise SD inside the body (HU)
CT_BLUR_VOXELS = (0.6, 0.6, 0.5)
PET_NOISE_LIVER = (0.10, 0.15)  # relative noise SD in liver; SD scales with sqrt(SUV)
PET_NOISE_CORRELATION_VOXELS = 0.6
PET_QUANTUM = 1.0 / 256.0  # SUV step of the stored PET (like a scanner's int16 + slope)
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class RenderedImages:
    """Arrays (x, y, z) and 4x4 world affines (RAS, mm) of one patient."""

    ct: Array  # int16 HU, CT grid
    ct_affine: Array
    pet: Array  # float32 SUVbw, PET grid
    pet_affine: Array
    lesions: Array  # uint16 lesion labels, CT grid
    organs: Array  # uint8 organ labels, CT grid


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], factor: int = 4) -> Array:
    """Zero-mean, ~unit-SD random field smooth over ``factor`` voxels (float32)."""
    coarse = tuple(s // factor + 2 for s in shape)
    white = rng.standard_normal(coarse).astype(np.float32)
    for axis in range(3):
        white = np.repeat(white, factor, axis=axis)
    field = ndimage.uniform_filter(np.ascontiguousarray(white[: shape[0], : shape[1], : shape[2]]), factor)
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    return field


def _lesion_map(attrs: PatientAttributes, grid: Grid) -> Array:
    """uint16 lesion label map on ``grid`` (lesions are ellipsoids in the patient frame)."""
    labels = np.zeros(grid.shape, dtype=np.uint16)
    x, y, z = grid.axes()
    for les in attrs.lesions:
        lo, hi = les.shape.bbox()
        sl = grid.index_slices(lo, hi)
        if sl is None:
            continue
        inside = les.shape.inside(x[sl[0], None, None], y[None, sl[1], None], z[None, None, sl[2]])
        labels[sl][inside] = les.label
    return labels


def _ct(anat: Anatomy, tissue: Array, lesions: Array, attrs: PatientAttributes, rng: np.random.Generator,
        field: Array, cortex: Array) -> Array:
    """CT in HU (float32, phantom grid) before cropping."""
    hu_of = {k: v + rng.normal(0.0, 3.0) for k, v in TISSUE_HU.items()}
    hu_of["liver"] = float(rng.uniform(55.0, 65.0))
    lut = np.zeros(T_COLON + 1, dtype=np.float32)
    for name, code in LABEL.items():
        if name == "bone":
            lut[code] = hu_of["bone_cancellous"]
        elif name in hu_of:
            lut[code] = hu_of[name]
    lut[T_URINE_PELVIS] = hu_of["urine"]
    lut[T_CSF] = hu_of["csf"]
    lut[T_DISC] = hu_of["disc"]
    lut[T_STOMACH_GAS] = hu_of["bowel_gas"]
    ct = lut[tissue]
    ct[cortex] = hu_of["bone_cortical"]
    lung = tissue == LABEL["lung"]
    ct[lung] += 40.0 * field[lung]
    bowel = tissue == LABEL["bowel"]
    fb = field[bowel]
    ct[bowel] = np.where(fb > 1.3, hu_of["bowel_gas"], np.where(fb < -0.5, hu_of["fat"], hu_of["bowel"] + 12.0 * fb))
    colon = tissue == T_COLON
    ct[colon] = np.where(field[colon] > 0.5, hu_of["bowel_gas"], -60.0 + 60.0 * field[colon])
    for les in attrs.lesions:
        mask = lesions == les.label
        ct[mask] = (hu_of["liver"] + les.ct_hu) if les.ct_relative else les.ct_hu
    ct = ndimage.gaussian_filter(ct, CT_BLUR_VOXELS)
    body = tissue > 0
    sigma = float(rng.uniform(*CT_NOISE_HU))
    ct[body] += sigma * rng.standard_normal(int(body.sum())).astype(np.float32)
    ct[~body] = TISSUE_HU["air"]
    return ct


def _activity(anat: Anatomy, tissue: Array, lesions: Array, attrs: PatientAttributes, field: Array,
              cortex: Array) -> Array:
    """True SSTR-PET uptake (SUVbw, float32, phantom grid) before blur."""
    suv = dict(anat.suv)
    lut = np.zeros(T_COLON + 1, dtype=np.float32)
    for name, code in LABEL.items():
        if name == "bone":
            lut[code] = suv["bone_marrow"]
        elif name in suv:
            lut[code] = suv[name]
    lut[T_URINE_PELVIS] = suv["renal_pelvis"]
    lut[T_CSF] = suv["csf"]
    lut[T_DISC] = suv["soft_tissue"]
    lut[T_STOMACH_GAS] = 0.0
    lut[T_COLON] = suv["bowel"]
    act = lut[tissue]
    act[cortex] = suv["bone_cortical"]
    bowel = tissue == LABEL["bowel"]
    fb = field[bowel]
    act[bowel] = np.where(fb > 1.3, 0.0, np.where(fb < -0.5, suv["fat"], suv["bowel"]))
    for les in attrs.lesions:
        act[lesions == les.label] = les.suv
    return act


def _pet(anat: Anatomy, act: Array, phantom: Grid, rng: np.random.Generator) -> Array:
    """Blur to the scanner resolution, resample on the PET grid (world-aligned), add noise (SUVbw)."""
    sigma_mm = anat.pet_fwhm_mm * FWHM_TO_SIGMA
    blurred = ndimage.gaussian_filter(act, [sigma_mm / s for s in phantom.spacing])
    pet_grid = anat.pet_grid
    # PET voxel (i, j, k) -> phantom continuous index: (origin_pet + i * sp - origin_ph) / s_ph
    scale = [pet_grid.spacing[a] / phantom.spacing[a] for a in range(3)]
    shift = [(pet_grid.origin[a] - phantom.origin[a]) / phantom.spacing[a] for a in range(3)]
    sampled = ndimage.affine_transform(
        blurred, scale, offset=shift, output_shape=pet_grid.shape, order=1, mode="constant", cval=0.0,
        prefilter=False,
    ).astype(np.float32)
    sampled = np.maximum(sampled, 0.0)
    white = rng.standard_normal(pet_grid.shape).astype(np.float32)
    noise = ndimage.gaussian_filter(white, PET_NOISE_CORRELATION_VOXELS)
    delta = np.zeros((9, 9, 9), dtype=np.float32)
    delta[4, 4, 4] = 1.0
    noise /= float(np.sqrt((ndimage.gaussian_filter(delta, PET_NOISE_CORRELATION_VOXELS) ** 2).sum()))
    rel = float(rng.uniform(*PET_NOISE_LIVER))
    coef = rel * np.sqrt(anat.suv_of("liver"))
    pet = np.maximum(sampled + coef * np.sqrt(sampled) * noise, 0.0)
    return (np.round(pet / PET_QUANTUM) * PET_QUANTUM).astype(np.float32)


def render(attrs: PatientAttributes, image_seed: np.random.SeedSequence) -> RenderedImages:
    """All images of one patient (deterministic for its attributes and image stream)."""
    rng = np.random.default_rng(image_seed)
    anat = attrs.anatomy
    phantom = anat.phantom_grid()
    ux, uy, uz = anat.deformation.template_coords(phantom)
    tissue = paint_tissues(anat, ux, uy, uz, phantom)
    del ux, uy, uz
    lesions = _lesion_map(attrs, phantom)
    field = _smooth_field(rng, phantom.shape)
    bone = tissue == LABEL["bone"]
    cortex = bone & ~ndimage.binary_erosion(bone)  # one-voxel cortical rim
    ct = _ct(anat, tissue, lesions, attrs, rng, field, cortex)
    act = _activity(anat, tissue, lesions, attrs, field, cortex)
    pet = _pet(anat, act, phantom, rng)
    k0 = anat.ct_offset_in_phantom()
    crop = (slice(None), slice(None), slice(k0, k0 + anat.ct_grid.shape[2]))
    ct_hu = np.clip(np.round(ct[crop]), -1024, 3071).astype(np.int16)
    return RenderedImages(
        ct=ct_hu,
        ct_affine=anat.ct_grid.affine(anat.offset),
        pet=pet,
        pet_affine=anat.pet_grid.affine(anat.offset),
        lesions=np.ascontiguousarray(lesions[crop]),
        organs=np.ascontiguousarray(organ_map(tissue[crop])),
    )


def _save(data: Array, affine: Array, path: Path, description: str) -> None:
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = description.encode()[:79]
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def write_images(attrs: PatientAttributes, image_seed: np.random.SeedSequence, out_dir: Path, patient_id: str) -> None:
    """Write ``<id>_ct/_pet/_lesions/_organs.nii.gz`` under ``out_dir``."""
    im = render(attrs, image_seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    _save(im.ct, im.ct_affine, out_dir / f"{patient_id}_ct.nii.gz", "pfs_core synth CT (HU)")
    _save(im.pet, im.pet_affine, out_dir / f"{patient_id}_pet.nii.gz", "pfs_core synth SSTR PET (SUVbw)")
    _save(im.lesions, im.ct_affine, out_dir / f"{patient_id}_lesions.nii.gz", "pfs_core synth lesion labels")
    _save(im.organs, im.ct_affine, out_dir / f"{patient_id}_organs.nii.gz", "pfs_core synth organ labels")
