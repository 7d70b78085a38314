"""Parametric torso: per-patient organ shapes, grids and tissue rasterisation.

Everything here is drawn from the patient's *attribute* random stream (so the
tables do not depend on whether images are written). Shapes live in template
space; :class:`~pfs_core.synth.geometry.CurlDeformation` bends them smoothly.
Lengths in mm (patient frame, RAS), uptake in SUVbw.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from pfs_core.synth.constants import LABEL, TISSUE_SUV
from pfs_core.synth.geometry import (
    Array,
    CurlDeformation,
    CutEllipsoid,
    Cylinder,
    Ellipsoid,
    Grid,
    rotation,
    rotation_to,
)

# Fine tissue classes used while rendering; the organ map is TISSUE_TO_ORGAN[tissue].
T_URINE_PELVIS, T_CSF, T_DISC, T_STOMACH_GAS, T_COLON = 13, 14, 15, 16, 17
TISSUE_TO_ORGAN = np.array(
    list(range(13)) + [LABEL["kidney"], LABEL["soft_tissue"], LABEL["soft_tissue"], LABEL["bowel"], LABEL["bowel"]],
    dtype=np.uint8,
)

CT_SLICE_MM = 3.0
CT_INPLANE_MM = (2.5, 3.0)
PET_INPLANE_MM = (4.0, 4.7)
PET_SLICE_MM = (4.0, 5.0)
TORSO_LENGTH_MM = (330.0, 380.0)
BODY_WIDTH_MM = (300.0, 370.0)  # LR at the torso centre (and at most this at the widest level)
BODY_DEPTH_MM = (200.0, 260.0)  # AP at the torso centre (idem)


@dataclass(frozen=True)
class Body:
    """Elliptic body cross-section with a slightly flatter back and a taper along z.

    Half-width ``A(z) = a0 * (1 + taper * zn + bulge * zn**2)`` with ``zn = z / length``;
    anterior half-depth ``b0`` and posterior ``b0 * back``; subcutaneous fat and
    muscle-wall thicknesses in mm.
    """

    length: float
    a0: float
    b0: float
    back: float
    taper: float
    bulge: float
    fat_mm: float
    muscle_mm: float

    def scale(self, uz: Array) -> Array:
        zn = uz / self.length
        return 1.0 + self.taper * zn + self.bulge * zn * zn

    def rho(self, ux: Array, uy: Array, uz: Array, inset: float = 0.0) -> Array:
        """Normalised squared elliptic radius of the outline moved inward by ``inset`` mm."""
        s = self.scale(uz)
        a = self.a0 * s - inset
        b = np.where(uy >= 0, self.b0, self.b0 * self.back) * s - inset
        return (ux / a) ** 2 + (uy / b) ** 2

    def max_half_width(self) -> float:
        zs = np.linspace(-0.5, 0.5, 41) * self.length
        return float(self.a0 * self.scale(zs).max())

    def max_half_depth(self) -> tuple[float, float]:
        zs = np.linspace(-0.5, 0.5, 41) * self.length
        m = float(self.scale(zs).max())
        return self.b0 * m, self.b0 * self.back * m


@dataclass(frozen=True)
class Ribs:
    """Rib slabs in the muscle wall above ``z_low``: period, thickness and phase along z (mm)."""

    z_low: float
    period: float
    thickness: float
    phase: float


@dataclass(frozen=True)
class Spine:
    """Vertebral column: bodies (cylinder) with discs every ``period`` mm, arch and canal."""

    body: Cylinder
    arch: Cylinder
    spinous: Cylinder
    canal: Cylinder
    period: float
    disc_mm: float
    phase: float


@dataclass(frozen=True)
class Anatomy:
    """One patient's torso (patient frame, mm) and imaging geometry.

    ``organs`` lists ``(tissue_code, shape)`` in painting order (later wins).
    ``offset`` (mm) maps the patient frame to world coordinates (table position).
    ``suv`` holds the patient's physiological uptake per tissue (SUVbw).
    """

    body: Body
    z_diaphragm: float
    organs: tuple[tuple[int, object], ...]
    liver: CutEllipsoid
    spleen: Ellipsoid
    kidneys: tuple[Ellipsoid, Ellipsoid]
    pancreas: Ellipsoid
    bowel: Ellipsoid
    bladder: Ellipsoid
    stomach: Ellipsoid
    iliac: tuple[Ellipsoid, Ellipsoid]
    aorta: Cylinder
    spine: Spine
    ribs: Ribs
    deformation: CurlDeformation
    ct_grid: Grid
    pet_grid: Grid
    offset: tuple[float, float, float]
    suv: tuple[tuple[str, float], ...]
    pet_fwhm_mm: float

    def suv_of(self, tissue: str) -> float:
        return dict(self.suv)[tissue]

    @property
    def liver_volume_ml(self) -> float:
        """Analytic liver volume (ml) of the template shape (the deformation preserves volume to ~1 %)."""
        return self.liver.volume_ml

    def phantom_grid(self) -> Grid:
        """High-resolution model grid: the CT's x/y box, z extended to cover the PET (CT lattice)."""
        ct, pet = self.ct_grid, self.pet_grid
        z_lo = min(ct.origin[2], pet.origin[2] - 2 * pet.spacing[2])
        z_hi = max(ct.upper()[2], pet.upper()[2] + 2 * pet.spacing[2])
        below = max(0, math.ceil((ct.origin[2] - z_lo) / ct.spacing[2]))
        above = max(0, math.ceil((z_hi - ct.upper()[2]) / ct.spacing[2]))
        origin = (ct.origin[0], ct.origin[1], ct.origin[2] - below * ct.spacing[2])
        return Grid((ct.shape[0], ct.shape[1], ct.shape[2] + below + above), ct.spacing, origin)

    def ct_offset_in_phantom(self) -> int:
        """Index of the first CT slice in the phantom grid."""
        return int(round((self.ct_grid.origin[2] - self.phantom_grid().origin[2]) / self.ct_grid.spacing[2]))


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _deformation(rng: np.random.Generator) -> CurlDeformation:
    """Three potentials with wavelengths 250-500 mm and displacements of a few mm."""
    k = rng.uniform(2 * math.pi / 500.0, 2 * math.pi / 250.0, size=(3, 3))
    phase = rng.uniform(0.0, 2 * math.pi, size=(3, 3))
    disp = rng.normal(0.0, 3.0, size=3)  # mm
    amp = disp / k.mean(axis=1)
    return CurlDeformation(
        tuple(float(a) for a in amp),  # type: ignore[arg-type]
        tuple(tuple(float(v) for v in row) for row in k),  # type: ignore[misc]
        tuple(tuple(float(v) for v in row) for row in phase),  # type: ignore[misc]
    )


def _grids(rng: np.random.Generator, body: Body, max_disp: float) -> tuple[Grid, Grid]:
    """CT grid (tight around the body, 2.5-3.0 mm in-plane, 3 mm slices) and a PET grid (own spacing/FOV)."""
    s = round(_u(rng, *CT_INPLANE_MM), 3)
    half_w = body.max_half_width() + max_disp + _u(rng, 12.0, 30.0)
    b_ant, b_post = body.max_half_depth()
    y_lo = -(b_post + max_disp + _u(rng, 12.0, 30.0))
    y_hi = b_ant + max_disp + _u(rng, 12.0, 30.0)
    x_shift = _u(rng, -8.0, 8.0)
    nx = int(math.ceil(2 * half_w / s)) + 1
    ny = int(math.ceil((y_hi - y_lo) / s)) + 1
    nz = int(round(body.length / CT_SLICE_MM))
    ct = Grid((nx, ny, nz), (s, s, CT_SLICE_MM), (x_shift - half_w, y_lo, -0.5 * (nz - 1) * CT_SLICE_MM))

    sp = round(_u(rng, *PET_INPLANE_MM), 3)
    spz = round(_u(rng, *PET_SLICE_MM), 3)
    ct_hi = ct.upper()
    ct_w = [ct_hi[a] - ct.origin[a] for a in range(3)]
    ct_c = [0.5 * (ct_hi[a] + ct.origin[a]) for a in range(3)]
    extra_x, extra_y = _u(rng, 40.0, 120.0), _u(rng, 20.0, 80.0)
    width = [ct_w[0] + extra_x, ct_w[1] + extra_y, ct_w[2] + _u(rng, -20.0, 40.0)]
    centre = [
        ct_c[0] + _u(rng, -0.4, 0.4) * extra_x,
        ct_c[1] + _u(rng, -0.4, 0.4) * extra_y,
        ct_c[2] + _u(rng, -30.0, 30.0),
    ]
    spacing = (sp, sp, spz)
    shape = tuple(int(math.ceil(width[a] / spacing[a])) + 1 for a in range(3))
    origin = tuple(centre[a] - 0.5 * (shape[a] - 1) * spacing[a] for a in range(3))
    return ct, Grid(shape, spacing, origin)  # type: ignore[arg-type]


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient's torso, organ shapes, grids, table offset and physiological SUVs."""
    length = _u(rng, *TORSO_LENGTH_MM)
    a0 = 0.5 * _u(rng, *BODY_WIDTH_MM)
    back = _u(rng, 0.88, 0.98)
    b0 = _u(rng, *BODY_DEPTH_MM) / (1.0 + back)
    body = Body(length, a0, b0, back, _u(rng, -0.1, 0.1), _u(rng, -0.2, 0.05), _u(rng, 8.0, 28.0), _u(rng, 8.0, 13.0))
    # Keep the widest level inside the stated LR / AP ranges (the taper may widen the pelvis or chest).
    widest = float(body.scale(np.linspace(-0.5, 0.5, 41) * length).max())
    a0 = min(a0, 0.5 * BODY_WIDTH_MM[1] / widest)
    b0 = min(b0, BODY_DEPTH_MM[1] / ((1.0 + back) * widest))
    body = dataclasses.replace(body, a0=a0, b0=b0)
    zt = 0.5 * length
    zb = -zt
    sz = length / 355.0
    s = float(np.clip(rng.normal(1.0, 0.05), 0.88, 1.12))  # global organ scale
    wall = body.fat_mm + body.muscle_mm
    ai = a0 - wall  # cavity half-width (mm)
    bi = b0 - wall  # anterior cavity half-depth
    bp = b0 * back - wall  # posterior cavity half-depth
    z_d = zt - _u(rng, 75.0, 95.0) * sz

    def jit(scale: float = 6.0) -> Array:
        return rng.normal(0.0, scale, size=3)

    def f(lo: float = 0.9, hi: float = 1.1) -> float:
        return _u(rng, lo, hi)

    deformation = _deformation(rng)
    max_disp = deformation.max_displacement()

    # Thorax.
    lungs = tuple(
        Ellipsoid.make(
            np.array([side * 0.5 * ai, -0.05 * bi, z_d + 140 * sz]) + jit(4),
            np.array([0.42 * ai, 0.78 * (bi + bp) / 2, 160 * sz]) * f(),
        )
        for side in (1.0, -1.0)
    )
    heart = Ellipsoid.make(
        np.array([-0.12 * ai, 0.3 * bi, z_d + 50 * sz]) + jit(5),
        np.array([0.36 * ai, 0.42 * bi, 62 * sz]) * s * f(),
        rotation(rz=math.radians(-30 + rng.normal(0, 6))),
    )
    # Spine and vessels.
    y_s = -b0 * back + 75.0 * s + rng.normal(0, 4)
    vb = Cylinder(0.0, y_s, 24 * s, 19 * s, zb - 80, zt + 80)
    arch = Cylinder(0.0, y_s - 29 * s, 15 * s, 13 * s, zb - 80, zt + 80)
    spinous = Cylinder(0.0, y_s - 47 * s, 4.5, 13 * s, zb - 80, zt + 80)
    canal = Cylinder(0.0, y_s - 29 * s, 8 * s, 8 * s, zb - 80, zt + 80)
    spine = Spine(vb, arch, spinous, canal, _u(rng, 28.0, 33.0) * s, _u(rng, 6.0, 8.0), _u(rng, 0.0, 30.0))
    aorta = Cylinder(-0.12 * ai + rng.normal(0, 3), y_s + 36 * s, 11 * s, 11 * s, z_d - 185 * sz, zt + 80)
    paraspinal = tuple(Cylinder(side * 32 * s, y_s - 36 * s, 26 * s, 22 * s, zb - 80, zt + 80) for side in (1, -1))
    psoas = tuple(Cylinder(side * 45 * s, y_s + 4, 18 * s, 18 * s, zb - 80, z_d - 110 * sz) for side in (1, -1))
    # Abdomen.
    liver_e = Ellipsoid.make(
        np.array([0.42 * ai, 0.08 * bi, z_d - 72 * sz]) + jit(4),
        np.array([78.0 * (ai / 142.0) ** 0.5, 72.0 * ((bi + bp) / 170.0) ** 0.5, 85.0 * sz**0.5]) * s * f(0.95, 1.05),
        rotation(rz=math.radians(rng.normal(0, 6)), ry=math.radians(rng.normal(0, 5))),
    )
    n = np.array([-0.65, -0.45 + rng.normal(0, 0.08), -0.6])
    n /= np.linalg.norm(n)
    m = np.asarray(liver_e.radii) * (np.asarray(liver_e.rot).T @ n)
    liver = CutEllipsoid(liver_e, tuple(float(v) for v in n), float(_u(rng, 0.25, 0.45) * np.linalg.norm(m)))  # type: ignore[arg-type]
    spleen = Ellipsoid.make(
        np.array([-0.6 * ai, -0.3 * bp, z_d - 55 * sz]) + jit(5),
        np.array([28.0, 52.0, 50.0]) * s * f(0.85, 1.2),
        rotation(rz=math.radians(35 + rng.normal(0, 8))),
    )
    stomach = Ellipsoid.make(
        np.array([-0.3 * ai, 0.3 * bi, z_d - 45 * sz]) + jit(6),
        np.array([0.22 * ai, 0.28 * bi, 50 * sz]) * s * f(0.8, 1.2),
        rotation(rz=math.radians(rng.normal(20, 10))),
    )
    head = np.array([0.12 * ai, 0.05 * bi, z_d - 110 * sz]) + jit(5)
    tail = np.array([-0.5 * ai, -0.2 * bp, z_d - 75 * sz]) + jit(5)
    pancreas = Ellipsoid.make(
        0.5 * (head + tail),
        np.array([0.5 * np.linalg.norm(tail - head) + 10.0, 13.0 * s, 12.0 * s]),
        rotation_to(tail - head),
    )
    kidneys = []
    pelvises = []
    for side, dz in ((1.0, -130.0), (-1.0, -118.0)):
        c = np.array([side * 0.42 * ai, -0.55 * bp, z_d + dz * sz]) + jit(4)
        rot = rotation(rz=side * math.radians(30 + rng.normal(0, 6)), ry=side * math.radians(12))
        kid = Ellipsoid.make(c, np.array([26.0, 23.0, 52.0]) * s * f(), rot)
        kidneys.append(kid)
        pelvises.append(Ellipsoid.make(c - np.array([side * 12.0 * s, 0.0, 0.0]), np.array([9.0, 8.0, 20.0]) * s, rot))
    adrenals = tuple(
        Ellipsoid.make(
            np.array([side * 0.28 * ai, -0.38 * bp, z_d - 68 * sz]) + jit(3),
            np.array([5.0, 14.0, 20.0]) * s,
            rotation(rz=side * math.radians(30)),
        )
        for side in (1.0, -1.0)
    )
    bowel = Ellipsoid.make(
        np.array([0.0, 0.25 * bi, z_d - 185 * sz]) + jit(6),
        np.array([0.7 * ai, 0.6 * bi, 90 * sz]) * f(),
    )
    colon = (
        Cylinder(0.7 * ai, 0.05 * bi, 20.0, 20.0, zb + 100 * sz, z_d - 95 * sz),
        Cylinder(-0.72 * ai, -0.05 * bp, 18.0, 18.0, zb + 90 * sz, z_d - 80 * sz),
    )
    transverse = Ellipsoid.make(np.array([0.0, 0.55 * bi, z_d - 120 * sz]), np.array([0.7 * ai, 18.0, 18.0]))
    fill = _u(rng, 0.6, 1.15)
    bladder = Ellipsoid.make(
        np.array([0.0, 0.35 * bi, zb + 45 * sz]) + jit(4),
        np.array([0.3 * ai, 0.35 * bi, 40 * sz]) * fill,
    )
    iliac = tuple(
        Ellipsoid.make(
            np.array([side * 0.55 * ai, -0.35 * bp, zb + 62 * sz]) + jit(4),
            np.array([9.0, 55.0, 45.0]) * s,
            rotation(rz=-side * math.radians(35)),
        )
        for side in (1.0, -1.0)
    )
    sacrum = Ellipsoid.make(np.array([0.0, y_s - 5, zb + 45 * sz]), np.array([45.0, 20.0, 50.0]) * s, rotation(rx=0.35))
    femoral = tuple(
        Ellipsoid.make(np.array([side * 0.45 * ai, 0.0, zb + 5 * sz]), np.array([24.0, 24.0, 24.0]) * s)
        for side in (1.0, -1.0)
    )
    ribs = Ribs(z_d - 80 * sz, _u(rng, 24.0, 28.0), _u(rng, 8.0, 10.0), _u(rng, 0.0, 26.0))

    organs: list[tuple[int, object]] = [
        *((LABEL["soft_tissue"], c) for c in (*paraspinal, *psoas)),
        (LABEL["bowel"], bowel),
        *((T_COLON, c) for c in (*colon, transverse)),
        *((LABEL["lung"], lung) for lung in lungs),
        (LABEL["heart_vessels"], heart),
        (LABEL["heart_vessels"], aorta),
        (LABEL["bowel"], stomach),
        (LABEL["liver"], liver),
        (LABEL["spleen"], spleen),
        (LABEL["pancreas"], pancreas),
        *((LABEL["adrenal"], a) for a in adrenals),
        *((LABEL["kidney"], k) for k in kidneys),
        *((T_URINE_PELVIS, p) for p in pelvises),
        (LABEL["bladder"], bladder),
        *((LABEL["bone"], b) for b in (*iliac, sacrum, *femoral)),
    ]
    ct_grid, pet_grid = _grids(rng, body, max_disp)
    offset = (_u(rng, -20.0, 20.0), _u(rng, -40.0, 40.0), _u(rng, -800.0, -400.0))
    suv = tuple((name, _u(rng, lo, hi)) for name, (lo, hi) in TISSUE_SUV.items())
    return Anatomy(
        body=body,
        z_diaphragm=z_d,
        organs=tuple(organs),
        liver=liver,
        spleen=spleen,
        kidneys=(kidneys[0], kidneys[1]),
        pancreas=pancreas,
        bowel=bowel,
        bladder=bladder,
        stomach=stomach,
        iliac=(iliac[0], iliac[1]),
        aorta=aorta,
        spine=spine,
        ribs=ribs,
        deformation=deformation,
        ct_grid=ct_grid,
        pet_grid=pet_grid,
        offset=offset,
        suv=suv,
        pet_fwhm_mm=_u(rng, 5.5, 6.5),
    )


# ------------------------------------------------------------------ rasterisation
def _region(anat: Anatomy, grid: Grid | None, shape_obj: object) -> tuple[slice, ...] | None | tuple[()]:
    """Grid slices that can contain ``shape_obj`` (template bbox grown by the deformation bound)."""
    if grid is None:
        return ()
    lo, hi = shape_obj.bbox()  # type: ignore[attr-defined]
    pad = anat.deformation.max_displacement() + 1.0
    return grid.index_slices(lo - pad, hi + pad)


def paint_tissues(anat: Anatomy, ux: Array, uy: Array, uz: Array, grid: Grid | None = None) -> Array:
    """Tissue class (uint8, codes of ORGAN_LABELS plus the fine classes above) at template coords.

    With ``grid`` the coordinate arrays are that grid's voxels and each shape is
    evaluated only inside its bounding box; without it they are arbitrary points.
    """
    body = anat.body
    tissue = np.zeros(ux.shape, dtype=np.uint8)
    # Body outline radii at every point, computed once (mm).
    s = body.scale(uz)
    half_w = (body.a0 * s).astype(ux.dtype, copy=False)
    half_d = (np.where(uy >= 0, np.float32(body.b0), np.float32(body.b0 * body.back)) * s).astype(ux.dtype, copy=False)

    def rho(inset: float, sl: tuple = ()) -> Array:
        return (ux[sl] / (half_w[sl] - inset)) ** 2 + (uy[sl] / (half_d[sl] - inset)) ** 2

    inside_body = rho(0.0) <= 1.0
    tissue[inside_body] = LABEL["fat"]
    wall = rho(body.fat_mm) <= 1.0
    tissue[wall] = LABEL["soft_tissue"]
    cavity = rho(body.fat_mm + body.muscle_mm) <= 1.0
    tissue[cavity] = LABEL["fat"]  # visceral / mediastinal fat between organs
    del wall

    def paint(code: int, shape_obj: object, cond: Array | None = None) -> None:
        sl = _region(anat, grid, shape_obj)
        if sl is None:
            return
        sub = (ux[sl], uy[sl], uz[sl])
        mask = shape_obj.inside(*sub)  # type: ignore[attr-defined]
        mask &= cavity[sl] if cond is None else cond[sl]
        tissue[sl][mask] = code

    for code, shape_obj in anat.organs:
        if code == LABEL["bone"]:
            paint(code, shape_obj, inside_body)
        else:
            paint(code, shape_obj)
    # Stomach gas above the fluid level (anterior part of the stomach).
    st = anat.stomach
    sl = _region(anat, grid, st)
    if sl is not None:
        gas = st.inside(ux[sl], uy[sl], uz[sl]) & (uy[sl] > st.centre[1] + 0.25 * st.radii[1]) & cavity[sl]
        tissue[sl][gas] = T_STOMACH_GAS
    # Ribs in the muscle wall (no anterior cartilage gap) above ribs.z_low.
    rb = anat.ribs
    if grid is None:
        sl_r: tuple = ()
    else:
        k0 = max(0, int(np.floor((rb.z_low - anat.deformation.max_displacement() - 1.0 - grid.origin[2]) / grid.spacing[2])))
        sl_r = (slice(None), slice(None), slice(k0, None))
    uzr = uz[sl_r]
    ring = (
        (np.mod(uzr - rb.phase, rb.period) < rb.thickness)
        & (uzr >= rb.z_low)
        & (rho(body.fat_mm + 0.1 * body.muscle_mm, sl_r) <= 1.0)
        & (rho(body.fat_mm + 0.9 * body.muscle_mm, sl_r) > 1.0)
        & ~((uy[sl_r] > 0) & (np.abs(ux[sl_r]) < 0.3 * body.a0))
    )
    tissue[sl_r][ring] = LABEL["bone"]
    # Spine: bodies with discs, arch, spinous process, canal.
    sp = anat.spine
    for cyl, code in ((sp.body, LABEL["bone"]), (sp.arch, LABEL["bone"]), (sp.spinous, LABEL["bone"]), (sp.canal, T_CSF)):
        sl = _region(anat, grid, cyl)
        if sl is None:
            continue
        mask = cyl.inside(ux[sl], uy[sl], uz[sl]) & inside_body[sl]
        if cyl is sp.body:
            disc = mask & (np.mod(uz[sl] - sp.phase, sp.period) < sp.disc_mm)
            tissue[sl][mask & ~disc] = code
            tissue[sl][disc] = T_DISC
        else:
            tissue[sl][mask] = code
    return tissue


def organ_map(tissue: Array) -> Array:
    """Organ label map (uint8, :data:`pfs_core.synth.constants.ORGAN_LABELS`) from fine tissue classes."""
    return TISSUE_TO_ORGAN[tissue]


def tissue_at(anat: Anatomy, template_points: Array) -> Array:
    """Tissue class at template-space points ``(N, 3)`` (mm)."""
    u = np.asarray(template_points, dtype=float)
    return paint_tissues(anat, u[:, 0], u[:, 1], u[:, 2])
