"""Render one patient's CT (HU), PET (SUVbw) and label maps and write them as NIfTI.

A high-resolution tissue/activity model is built on the *phantom grid* (the CT's
lattice, extended in z to cover the PET field of view). The CT is a crop of it
(blur + noise), contrast-enhanced in the portal-venous phase by default. The PET is
the activity (lesions with their uptake profile, physiological pitfalls: focal
uptake of the pancreatic uncinate process, variable urine, respiratory motion of the
upper abdomen during the free-breathing PET) blurred to the scanner resolution
(~6 mm FWHM), resampled at the PET grid's own world coordinates (trilinear) and given
signal-dependent, spatially correlated noise. Only the image random stream is used
here, so the tables never depend on whether images are written; its first draws are
the patient's :class:`ImagePhysiology` (:func:`draw_physiology`).
"""

from __future__ import annotations

import math
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
from pfs_core.synth.constants import CONTRAST_PHASES, LABEL, TISSUE_HU, TISSUE_HU_PV
from pfs_core.synth.geometry import Array, Ellipsoid, Grid
from pfs_core.synth.lesions import Lesion
from pfs_core.synth.organ_masks import ORGAN_MASKS_SUFFIX, organ_mask_image
from pfs_core.synth.patient import PatientAttributes

CT_NOISE_HU = (15.0, 25.0)  # Gaussian noise SD inside the body (HU)
CT_BLUR_VOXELS = (0.6, 0.6, 0.5)
CT_TISSUE_JITTER_HU = 3.0  # SD of the per-patient offset of each tissue's HU
LIVER_HU = (55.0, 65.0)  # unenhanced liver parenchyma (HU)
# Portal-venous enhancement (TISSUE_HU_PV - TISSUE_HU) times a per-patient factor (cardiac output,
# contrast dose per kg), a per-tissue factor exp(N(0, SD)) and, for the blood pool, a timing factor
# (earlier scan: brighter aorta).
ENHANCEMENT_FACTOR = (0.85, 1.15)
ENHANCEMENT_TISSUE_LOG_SD = 0.05
BLOOD_POOL_TIMING = (0.9, 1.1)
KIDNEY_MEDULLA_RHO = 0.72  # normalised kidney radius inside which the parenchyma is medulla
BOWEL_WALL_BAND = 0.25  # texture-field band at the edge of a bowel loop rendered as enhancing wall

PET_NOISE_LIVER = (0.10, 0.15)  # relative noise SD in liver; SD scales with sqrt(SUV)
PET_NOISE_CORRELATION_VOXELS = 0.6
PET_QUANTUM = 1.0 / 256.0  # SUV step of the stored PET (like a scanner's int16 + slope)
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))

# Urine (SUVbw, log-uniform per patient): bladder; renal pelvis level times a per-side factor.
URINE_BLADDER_SUV = (5.0, 200.0)
URINE_PELVIS_SUV = (4.0, 60.0)
URINE_PELVIS_SIDE_LOG_SD = 0.3
# Focal physiological uptake of the uncinate process / pancreatic head: share of patients, true
# peak uptake (SUVbw, log-uniform, before the PET blur; SUVmax after the blur ~5-15) and radius (mm).
UNCINATE_P = 0.45
UNCINATE_PEAK_SUV = (6.0, 16.0)
UNCINATE_RADIUS_MM = (8.0, 12.0)
# Respiratory motion of the free-breathing PET against the CT: cranio-caudal amplitude (mm) of the
# diaphragm, the CT's breath-hold position as a fraction of it above end-expiration, and the
# profile of the motion along z (full within RESP_FULL_MM around the diaphragm, cosine fade to
# zero RESP_FADE_BELOW_MM further down and RESP_FADE_ABOVE_MM further up).
RESP_AMPLITUDE_MM = (5.0, 20.0)
RESP_CT_PHASE = (0.0, 0.25)
RESP_FULL_MM = (-10.0, 30.0)
RESP_FADE_BELOW_MM = 100.0
RESP_FADE_ABOVE_MM = 100.0
RESP_SAMPLES = 32  # time samples of one breathing cycle
RESP_WAVE_POWER = 4  # Lujan model: displacement ~ cos(pi t)^4 (most time near end-expiration)
# Tissue classes that move with breathing (organs under the diaphragm, lungs); the body wall,
# spine, fat, aorta and heart are static.
MOVING_TISSUES = (
    LABEL["lung"], LABEL["liver"], LABEL["spleen"], LABEL["kidney"], LABEL["adrenal"], LABEL["pancreas"],
    LABEL["bowel"], T_URINE_PELVIS, T_STOMACH_GAS, T_COLON,
)


@dataclass(frozen=True)
class RenderedImages:
    """Arrays (x, y, z) and 4x4 world affines (RAS, mm) of one patient."""

    ct: Array  # int16 HU, CT grid
    ct_affine: Array
    pet: Array  # float32 SUVbw, PET grid
    pet_affine: Array
    lesions: Array  # uint16 lesion labels, CT grid
    organs: Array  # uint8 organ labels, CT grid


@dataclass(frozen=True)
class ImagePhysiology:
    """Per-patient image-only draws (first draws of the image stream; never in the tables)."""

    hu: dict[str, float]  # unenhanced HU per TISSUE_HU key
    hu_pv: dict[str, float]  # portal-venous HU per TISSUE_HU_PV key
    ct_noise_hu: float
    pet_noise_rel: float
    bladder_suv: float
    pelvis_suv: tuple[float, float]  # right, left renal pelvis
    uncinate_suv: float  # true peak of the focal uncinate uptake; 0 = none
    uncinate_radius_mm: float
    resp_amplitude_mm: float
    resp_ct_phase: float

    def tissue_hu(self, contrast: str) -> dict[str, float]:
        return self.hu_pv if contrast == "portal_venous" else self.hu


@dataclass(frozen=True)
class _LesionVoxels:
    """A lesion's voxels on the phantom grid: box, mask (its label-map voxels) and their rho."""

    lesion: Lesion
    box: tuple[slice, slice, slice]
    mask: Array  # bool, box shape
    rho: Array  # float32 normalised ellipsoid radius of the masked voxels


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def draw_physiology(rng: np.random.Generator) -> ImagePhysiology:
    """Draw the image-only physiology (a fixed number of draws, whatever the contrast or lesions)."""
    jitter = {k: float(rng.normal(0.0, CT_TISSUE_JITTER_HU)) for k in TISSUE_HU}
    hu = {k: v + jitter[k] for k, v in TISSUE_HU.items()}
    hu["liver"] = float(rng.uniform(*LIVER_HU))
    hu["kidney_cortex"] = hu["kidney"]
    factor = float(rng.uniform(*ENHANCEMENT_FACTOR))
    timing = float(rng.uniform(*BLOOD_POOL_TIMING))
    tissue_f = {k: float(np.exp(rng.normal(0.0, ENHANCEMENT_TISSUE_LOG_SD))) for k in TISSUE_HU_PV}
    hu_pv = {}
    for k, pv in TISSUE_HU_PV.items():
        gain = factor * tissue_f[k] * (timing if k == "heart_vessels" else 1.0)
        hu_pv[k] = hu[k] + gain * (pv - TISSUE_HU[k])
    ct_noise = float(rng.uniform(*CT_NOISE_HU))
    pet_noise = float(rng.uniform(*PET_NOISE_LIVER))
    bladder = _log_uniform(rng, *URINE_BLADDER_SUV)
    pelvis = _log_uniform(rng, *URINE_PELVIS_SUV)
    sides = np.exp(rng.normal(0.0, URINE_PELVIS_SIDE_LOG_SD, size=2))
    uncinate = rng.uniform() < UNCINATE_P
    peak = _log_uniform(rng, *UNCINATE_PEAK_SUV)
    radius = float(rng.uniform(*UNCINATE_RADIUS_MM))
    amplitude = float(rng.uniform(*RESP_AMPLITUDE_MM))
    ct_phase = float(rng.uniform(*RESP_CT_PHASE))
    return ImagePhysiology(
        hu=hu, hu_pv=hu_pv, ct_noise_hu=ct_noise, pet_noise_rel=pet_noise, bladder_suv=bladder,
        pelvis_suv=(pelvis * float(sides[0]), pelvis * float(sides[1])),
        uncinate_suv=peak if uncinate else 0.0, uncinate_radius_mm=radius, resp_amplitude_mm=amplitude,
        resp_ct_phase=ct_phase,
    )


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], factor: int = 4) -> Array:
    """Zero-mean, ~unit-SD random field smooth over ``factor`` voxels (float32)."""
    coarse = tuple(s // factor + 2 for s in shape)
    white = rng.standard_normal(coarse, dtype=np.float32)
    for axis in range(3):
        white = np.repeat(white, factor, axis=axis)
    field = ndimage.uniform_filter(np.ascontiguousarray(white[: shape[0], : shape[1], : shape[2]]), factor)
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    return field


def _lesion_map(attrs: PatientAttributes, grid: Grid) -> tuple[Array, list[_LesionVoxels]]:
    """uint16 lesion label map on ``grid`` and each lesion's voxels with their normalised radius.

    Lesions are ellipsoids in the patient frame; ``rho = sqrt(q)`` is computed once per lesion
    inside its bounding box.
    """
    labels = np.zeros(grid.shape, dtype=np.uint16)
    x, y, z = grid.axes()
    boxes = []
    for les in attrs.lesions:
        lo, hi = les.shape.bbox()
        sl = grid.index_slices(lo, hi)
        if sl is None:
            continue
        q = les.shape.q(x[sl[0], None, None], y[None, sl[1], None], z[None, None, sl[2]])
        labels[sl][q <= 1.0] = les.label
        boxes.append((les, sl, q))
    voxels = []
    for les, sl, q in boxes:
        mask = labels[sl] == les.label  # the label map decides (a later lesion would win)
        voxels.append(_LesionVoxels(les, sl, mask, np.sqrt(q[mask]).astype(np.float32)))
    return labels, voxels


def _kidney_cortex(anat: Anatomy, tissue: Array, ux: Array, uy: Array, uz: Array,
                   grid: Grid) -> list[tuple[tuple[slice, slice, slice], Array]]:
    """Boxes and masks of the renal cortex (outer shell of each kidney, template space)."""
    pad = anat.deformation.max_displacement() + 1.0
    out = []
    for kidney in anat.kidneys:
        lo, hi = kidney.bbox()
        sl = grid.index_slices(np.asarray(lo) - pad, np.asarray(hi) + pad)
        if sl is None:
            continue
        q = kidney.q(ux[sl], uy[sl], uz[sl])
        out.append((sl, (tissue[sl] == LABEL["kidney"]) & (q > KIDNEY_MEDULLA_RHO**2)))
    return out


def _ct(tissue: Array, lesions: list[_LesionVoxels], phys: ImagePhysiology, contrast: str,
        rng: np.random.Generator, field: Array, cortex: Array,
        kidney_cortex: list[tuple[tuple[slice, slice, slice], Array]]) -> Array:
    """CT in HU (float32, phantom grid) before cropping."""
    hu = phys.tissue_hu(contrast)
    enhanced = contrast == "portal_venous"
    lut = np.zeros(T_COLON + 1, dtype=np.float32)
    for name, code in LABEL.items():
        if name == "bone":
            lut[code] = hu["bone_cancellous"]
        elif name in hu:
            lut[code] = hu[name]
    lut[T_URINE_PELVIS] = hu["urine"]
    lut[T_CSF] = hu["csf"]
    lut[T_DISC] = hu["disc"]
    lut[T_STOMACH_GAS] = hu["bowel_gas"]
    ct = lut[tissue]
    if enhanced:
        for sl, mask in kidney_cortex:
            ct[sl][mask] = hu["kidney_cortex"]
    ct[cortex] = hu["bone_cortical"]
    lung = tissue == LABEL["lung"]
    ct[lung] += 40.0 * field[lung]
    bowel = tissue == LABEL["bowel"]
    fb = field[bowel]
    contents = phys.hu["bowel"] + 12.0 * fb  # bowel contents do not enhance
    if enhanced:  # enhancing wall at the edge of each loop (next to mesenteric fat or gas)
        wall = (fb < -0.5 + BOWEL_WALL_BAND) | (fb > 1.3 - BOWEL_WALL_BAND)
        contents = np.where(wall, np.float32(hu["bowel"]), contents)
    ct[bowel] = np.where(fb > 1.3, hu["bowel_gas"], np.where(fb < -0.5, hu["fat"], contents))
    colon = tissue == T_COLON
    ct[colon] = np.where(field[colon] > 0.5, hu["bowel_gas"], -60.0 + 60.0 * field[colon])
    for lv in lesions:
        les = lv.lesion
        if not les.ct_visible:  # CT-occult (marrow) lesion: the CT keeps the surrounding tissue
            continue
        value = les.ct_hu_pv if enhanced else les.ct_hu
        viable = hu["liver"] + value if les.ct_relative else value
        ct[lv.box][lv.mask] = np.where(lv.rho < les.necrotic_radius, np.float32(les.core_hu), np.float32(viable))
    ct = ndimage.gaussian_filter(ct, CT_BLUR_VOXELS)
    body = tissue > 0
    ct[body] += phys.ct_noise_hu * rng.standard_normal(int(body.sum()), dtype=np.float32)
    ct[~body] = TISSUE_HU["air"]
    return ct


def _uncinate(anat: Anatomy, act: Array, tissue: Array, grid: Grid, phys: ImagePhysiology) -> None:
    """Focal physiological uptake at the head end of the pancreas (in place)."""
    if phys.uncinate_suv <= 0.0:
        return
    e = anat.pancreas
    rot = np.asarray(e.rot)
    r = phys.uncinate_radius_mm
    # head end: the local x axis points from head to tail; the blob sits just inside the tip
    head_u = np.asarray(e.centre) - max(e.radii[0] - r, 0.0) * rot[:, 0]
    head_p = anat.deformation.from_template(head_u[None, :])[0]
    blob = Ellipsoid.make(head_p, np.array([r, r, 1.2 * r]))
    sl = grid.index_slices(*blob.bbox())
    if sl is None:
        return
    x, y, z = grid.axes()
    q = blob.q(x[sl[0], None, None], y[None, sl[1], None], z[None, None, sl[2]])
    inside = (q < 1.0) & (tissue[sl] == LABEL["pancreas"])
    base = act[sl][inside]
    act[sl][inside] = base + (phys.uncinate_suv - base) * (1.0 - q[inside]).astype(np.float32)


def _activity(anat: Anatomy, tissue: Array, lesions: list[_LesionVoxels], phys: ImagePhysiology,
              field: Array, cortex: Array, grid: Grid) -> Array:
    """True SSTR-PET uptake (SUVbw, float32, phantom grid) before motion and blur."""
    suv = dict(anat.suv)
    suv["bladder"] = phys.bladder_suv
    lut = np.zeros(T_COLON + 1, dtype=np.float32)
    for name, code in LABEL.items():
        if name == "bone":
            lut[code] = suv["bone_marrow"]
        elif name in suv:
            lut[code] = suv[name]
    lut[T_URINE_PELVIS] = phys.pelvis_suv[1]  # left; the right side below
    lut[T_CSF] = suv["csf"]
    lut[T_DISC] = suv["soft_tissue"]
    lut[T_STOMACH_GAS] = 0.0
    lut[T_COLON] = suv["bowel"]
    act = lut[tissue]
    i_mid = int(np.clip(np.ceil((anat.spine.body.cx - grid.origin[0]) / grid.spacing[0]), 0, grid.shape[0]))
    right = act[i_mid:]  # x > spine: the patient's right (RAS)
    right[tissue[i_mid:] == T_URINE_PELVIS] = phys.pelvis_suv[0]
    act[cortex] = suv["bone_cortical"]
    bowel = tissue == LABEL["bowel"]
    fb = field[bowel]
    act[bowel] = np.where(fb > 1.3, 0.0, np.where(fb < -0.5, suv["fat"], suv["bowel"]))
    _uncinate(anat, act, tissue, grid, phys)
    for lv in lesions:
        act[lv.box][lv.mask] = lv.lesion.uptake(lv.rho)
    return act


def respiratory_weight(z: Array, z_diaphragm: float) -> Array:
    """Relative cranio-caudal motion amplitude (0..1) at patient-frame z (mm)."""
    d = np.asarray(z, dtype=np.float64) - z_diaphragm
    below = np.clip((RESP_FULL_MM[0] - d) / RESP_FADE_BELOW_MM, 0.0, 1.0)
    above = np.clip((d - RESP_FULL_MM[1]) / RESP_FADE_ABOVE_MM, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * np.maximum(below, above)))


def respiratory_blur(act: Array, tissue: Array, grid: Grid, z_diaphragm: float, amplitude_mm: float,
                     ct_phase: float) -> Array:
    """Time-average of the moving activity over one breathing cycle (new float32 array).

    The CT is the reference position (``ct_phase`` x amplitude above end-expiration). At time
    ``t`` of the cycle the organs under the diaphragm (:data:`MOVING_TISSUES`) are shifted in z by
    ``amplitude * w(z) * (ct_phase - cos(pi t)^4)`` (inspiration moves them down), with ``w`` from
    :func:`respiratory_weight`. Every source slice is splatted linearly onto its shifted
    positions, so the activity is conserved exactly; the shift changes slowly with z, so
    nothing folds over.
    """
    out = act.copy()
    if amplitude_mm <= 0.0:
        return out
    z = grid.axes()[2]
    w = respiratory_weight(z, z_diaphragm)
    moving_src = np.flatnonzero(w > 0.0)
    if len(moving_src) == 0:
        return out
    t = (np.arange(RESP_SAMPLES) + 0.5) / RESP_SAMPLES
    phase = ct_phase - np.cos(np.pi * t) ** RESP_WAVE_POWER  # in units of the amplitude
    reach = int(np.ceil(amplitude_mm * np.abs(phase).max() / grid.spacing[2])) + 1
    k0 = max(0, int(moving_src[0]) - reach)
    k1 = min(grid.shape[2], int(moving_src[-1]) + reach + 1)
    nb = k1 - k0
    # Splat matrix: weight[i, j] = share of source slice j that lands on slice i (columns sum to 1).
    dest = np.arange(nb)[None, :] + amplitude_mm * w[k0:k1][None, :] * phase[:, None] / grid.spacing[2]
    lo = np.floor(dest).astype(int)
    frac = dest - lo
    lo = np.clip(lo, 0, nb - 1)
    hi = np.clip(lo + 1, 0, nb - 1)
    src = np.broadcast_to(np.arange(nb)[None, :], dest.shape)
    weight = np.zeros((nb, nb))
    np.add.at(weight, (lo, src), (1.0 - frac) / RESP_SAMPLES)
    np.add.at(weight, (hi, src), frac / RESP_SAMPLES)
    moving_lut = np.zeros(T_COLON + 1, dtype=bool)
    moving_lut[list(MOVING_TISSUES)] = True
    band = act[:, :, k0:k1]
    moving = moving_lut[tissue[:, :, k0:k1]]
    cols = np.flatnonzero(moving.any(axis=(1, 2)))
    rows = np.flatnonzero(moving.any(axis=(0, 2)))
    if len(cols) == 0:
        return out
    xy = (slice(int(cols[0]), int(cols[-1]) + 1), slice(int(rows[0]), int(rows[-1]) + 1))
    mov = np.where(moving[xy], band[xy], np.float32(0.0))
    acc = band[xy] - mov  # static part stays
    for d in range(-(nb - 1), nb):  # diagonals of the splat matrix (a few are non-zero)
        j = np.arange(max(0, -d), min(nb, nb - d))
        coef = weight[j + d, j]
        nz = np.flatnonzero(coef)
        if len(nz) == 0:
            continue
        j = j[nz[0]: nz[-1] + 1]
        coef = coef[nz[0]: nz[-1] + 1].astype(np.float32)
        acc[:, :, j[0] + d: j[-1] + d + 1] += mov[:, :, j[0]: j[-1] + 1] * coef
    out[xy[0], xy[1], k0:k1] = acc
    return out


def _pet(anat: Anatomy, act: Array, phantom: Grid, rng: np.random.Generator, phys: ImagePhysiology) -> Array:
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
    white = rng.standard_normal(pet_grid.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(white, PET_NOISE_CORRELATION_VOXELS)
    delta = np.zeros((9, 9, 9), dtype=np.float32)
    delta[4, 4, 4] = 1.0
    noise /= float(np.sqrt((ndimage.gaussian_filter(delta, PET_NOISE_CORRELATION_VOXELS) ** 2).sum()))
    coef = phys.pet_noise_rel * np.sqrt(anat.suv_of("liver"))
    pet = np.maximum(sampled + coef * np.sqrt(sampled) * noise, 0.0)
    return (np.round(pet / PET_QUANTUM) * PET_QUANTUM).astype(np.float32)


def render(attrs: PatientAttributes, image_seed: np.random.SeedSequence, *,
           contrast: str = "portal_venous") -> RenderedImages:
    """All images of one patient (deterministic for its attributes, image stream and contrast).

    ``contrast`` is one of :data:`~pfs_core.synth.constants.CONTRAST_PHASES`; it changes only
    the CT (the random draws are the same for every phase, so the phases differ only by contrast).
    """
    if contrast not in CONTRAST_PHASES:
        raise ValueError(f"contrast must be one of {', '.join(CONTRAST_PHASES)} (got {contrast!r})")
    rng = np.random.default_rng(image_seed)
    phys = draw_physiology(rng)
    anat = attrs.anatomy
    phantom = anat.phantom_grid()
    ux, uy, uz = anat.deformation.template_coords(phantom)
    tissue = paint_tissues(anat, ux, uy, uz, phantom)
    kidney_cortex = _kidney_cortex(anat, tissue, ux, uy, uz, phantom) if contrast == "portal_venous" else []
    del ux, uy, uz
    lesions, lesion_voxels = _lesion_map(attrs, phantom)
    field = _smooth_field(rng, phantom.shape)
    bone = tissue == LABEL["bone"]
    cortex = bone & ~ndimage.binary_erosion(bone)  # one-voxel cortical rim
    ct = _ct(tissue, lesion_voxels, phys, contrast, rng, field, cortex, kidney_cortex)
    act = _activity(anat, tissue, lesion_voxels, phys, field, cortex, phantom)
    act = respiratory_blur(act, tissue, phantom, anat.z_diaphragm, phys.resp_amplitude_mm, phys.resp_ct_phase)
    pet = _pet(anat, act, phantom, rng, phys)
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


def write_images(attrs: PatientAttributes, image_seed: np.random.SeedSequence, out_dir: Path, patient_id: str,
                 *, contrast: str = "portal_venous") -> None:
    """Write ``<id>_ct/_pet/_lesions/_organs/_organ_masks.nii.gz`` under ``out_dir`` (CT in the ``contrast``
    phase; ``_organ_masks`` in the organ codes measurement reads, :mod:`pfs_core.synth.organ_masks`)."""
    im = render(attrs, image_seed, contrast=contrast)
    out_dir.mkdir(parents=True, exist_ok=True)
    phase = "portal venous" if contrast == "portal_venous" else "unenhanced"
    _save(im.ct, im.ct_affine, out_dir / f"{patient_id}_ct.nii.gz", f"pfs_core synth CT (HU, {phase})")
    _save(im.pet, im.pet_affine, out_dir / f"{patient_id}_pet.nii.gz", "pfs_core synth SSTR PET (SUVbw)")
    _save(im.lesions, im.ct_affine, out_dir / f"{patient_id}_lesions.nii.gz", "pfs_core synth lesion labels")
    _save(im.organs, im.ct_affine, out_dir / f"{patient_id}_organs.nii.gz", "pfs_core synth organ labels")
    nib.save(organ_mask_image(im.organs, im.ct_affine), str(out_dir / f"{patient_id}{ORGAN_MASKS_SUFFIX}"))
