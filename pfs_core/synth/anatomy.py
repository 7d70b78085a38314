"""Parametric torso: per-patient organ shapes, grids and tissue rasterisation.

Everything here is drawn from the patient's *attribute* random stream (so the
tables do not depend on whether images are written). Shapes live in template
space; :class:`~pfs_core.synth.geometry.CurlDeformation` bends them smoothly.
Lengths in mm (patient frame, RAS), uptake in SUVbw.

Organs touch as in real abdomens. The liver (right lobe, a left lobe reaching
across the midline over the stomach, a caudate bulge) is painted after the
stomach and before the heart, aorta, psoas, spleen, pancreas, adrenals and
kidneys, which leave their impressions on it; its shape object
(:class:`~pfs_core.synth.geometry.Liver`) knows them, so its point test and its
volume are those of the painted liver. Whether the right kidney and the spleen
touch the liver is drawn first; the organ (the left lobe's tip for the spleen)
is then moved to its first contact with the liver plus a few mm, or kept apart
by fat (bisection, no random draws).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np

from pfs_core.synth.constants import LABEL, TISSUE_SUV
from pfs_core.synth.geometry import (
    Array,
    CurlDeformation,
    CutEllipsoid,
    Cylinder,
    Ellipsoid,
    Grid,
    Liver,
    Shape,
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
BODY_WIDTH_MM = (290.0, 390.0)  # LR at the torso centre (and at most this at the widest level)
BODY_DEPTH_MM = (190.0, 290.0)  # AP at the torso centre (idem)
SUBCUTANEOUS_FAT_MM = (5.0, 45.0)  # log-normal, median 15 mm, with the adiposity of the habitus
MUSCLE_WALL_MM = (6.0, 14.0)
# Liver: total volume of the lobes (ml, before the cavity clip and the neighbours' impressions) at
# liver_scale 1 is LIVER_ML * s**3 * exp(N(0, LIVER_LOG_SD)) with s the global organ scale.
LIVER_ML = 1630.0
LIVER_LOG_SD = 0.15
LEFT_TIP_HALF_LENGTH_MM = (10.0, 50.0)  # lateral tip of the left lobe, before the spleen-contact adjustment (x s)
KIDNEY_LIVER_CONTACT = 0.76  # P(right kidney pressed against the liver); otherwise 6-18 mm of fat
SPLEEN_LIVER_CONTACT = 0.32  # P(left lobe tip pressed against the spleen), when the lobe can reach it
SPLENOMEGALY = 0.06  # P(spleen enlarged 1.25-1.6x linearly)
SPLEEN_RADII_MM = (22.0, 40.0, 52.0)  # ~190 ml at s = 1
# "varied" anatomy (training data of the organ network): extra shift ranges (mm; kidney x is lateral,
# y anterior, z cranial) and linear scale. The standard kidneys lie a median 3 mm in front of the
# vertebra's centroid (10th-90th percentile -7 to +23 mm), the real TotalSegmentator example CT's
# 21-23 mm (benchmarks/kidney_position.py): the varied range covers both.
VARIED_KIDNEY_SHIFT_MM = ((-5.0, 30.0), (-10.0, 40.0), (-25.0, 25.0))
# The standard spleen's centre lies at 0.62 of the cavity's half-width, ~2 cm short of the lateral wall
# it abuts in most abdomens: the varied spleen moves up to 30 mm further out (x: lateral, as for kidneys).
VARIED_SPLEEN_SHIFT_MM = ((-5.0, 30.0), (-15.0, 15.0), (-20.0, 20.0))
VARIED_SCALE = (0.85, 1.2)
VARIED_QUADRATUS_X_MM = (60.0, 85.0)  # quadratus lumborum: centre from the midline (x s)
VARIED_QUADRATUS_BACK_MM = (10.0, 30.0)  # and behind the vertebral body's centre
# A liver_scale k stretches the liver by k**e per axis (x, y, z); the exponents sum to 3 (volume k**3).
HEPATOMEGALY_EXPONENTS = (0.7, 0.7, 1.6)


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
class Cavity:
    """The body cavity: the outline moved inward by ``inset`` mm (fat + muscle wall), all ``z``."""

    body: Body
    inset: float

    def inside(self, ux: Array, uy: Array, uz: Array) -> Array:
        return self.body.rho(ux, uy, uz, self.inset) <= 1.0

    def bbox(self) -> tuple[Array, Array]:
        b = self.body
        ant, post = b.max_half_depth()
        hw = b.max_half_width()
        return np.array([-hw, -post, -1e6]), np.array([hw, ant, 1e6])

    def z_spans(self, x: Array, y: Array) -> list[tuple[Array, Array]]:
        """``z`` where the line is inside: the outline scale ``s(z)`` must reach the line's ``s*``.

        Exact within the torso (``|z| <= length / 2``); a line inside the cavity over the
        whole torso gets one unbounded span.
        """
        b = self.body
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        half_d = np.where(y >= 0, b.b0, b.b0 * b.back)

        def excess(s: Array, sel: Array | slice = slice(None)) -> Array:  # convex, decreasing in s above lo
            return (x[sel] / (b.a0 * s - self.inset)) ** 2 + (y[sel] / (half_d[sel] * s - self.inset)) ** 2 - 1.0

        s_torso = float(b.scale(np.linspace(-0.5, 0.5, 201) * b.length).min())
        through = excess(np.full(x.shape, s_torso)) <= 0.0
        edge = np.flatnonzero(~through)
        lo = np.maximum(self.inset / b.a0, self.inset / half_d[edge]) + 1e-9
        hi = np.full(edge.shape, 2.0)  # the outline never grows 2x within the torso
        never_e = excess(hi, edge) > 0.0
        for _ in range(22):
            mid = 0.5 * (lo + hi)
            out = excess(mid, edge) > 0.0
            lo = np.where(out, mid, lo)
            hi = np.where(out, hi, mid)
        f_lo, f_hi = excess(lo, edge), excess(hi, edge)  # final secant step inside the bracket
        hi = np.where(f_lo > f_hi, lo + (hi - lo) * f_lo / np.where(f_lo > f_hi, f_lo - f_hi, 1.0), hi)
        s_star = np.full(x.shape, s_torso)
        s_star[edge] = hi
        never = np.zeros(x.shape, dtype=bool)
        never[edge] = never_e
        spans = self._roots(s_star, never)
        big = 1e6
        spans[0] = (np.where(through, -big, spans[0][0]), np.where(through, big, spans[0][1]))
        spans[1:] = [(np.where(through, np.nan, lo_z), np.where(through, np.nan, hi_z)) for lo_z, hi_z in spans[1:]]
        return spans

    def _roots(self, s_star: Array, never: Array) -> list[tuple[Array, Array]]:
        """Spans of ``z`` with ``s(z) >= s_star`` (two, the second possibly empty)."""
        b = self.body
        # s(z) = 1 + taper zn + bulge zn^2 >= s*  <=>  bulge zn^2 + taper zn + (1 - s*) >= 0
        qa, qb, qc = b.bulge, b.taper, 1.0 - s_star
        nan = np.full(s_star.shape, np.nan)
        big = np.full(s_star.shape, 1e6)
        if abs(qa) < 1e-12:
            if abs(qb) < 1e-12:
                full = (qc >= 0.0) & ~never
                return [(np.where(full, -big, nan), np.where(full, big, nan)), (nan, nan)]
            root = -qc / qb * b.length
            lo_z, hi_z = (root, big) if qb > 0 else (-big, root)
            return [(np.where(never, nan, lo_z), np.where(never, nan, hi_z)), (nan, nan)]
        disc = qb * qb - 4.0 * qa * qc
        sq = np.sqrt(np.where(disc >= 0.0, disc, np.nan))
        r1 = (-qb - sq) / (2.0 * qa) * b.length
        r2 = (-qb + sq) / (2.0 * qa) * b.length
        z1, z2 = np.minimum(r1, r2), np.maximum(r1, r2)
        if qa < 0.0:  # concave: between the roots
            ok = (disc >= 0.0) & ~never
            return [(np.where(ok, z1, nan), np.where(ok, z2, nan)), (nan, nan)]
        # convex: outside the roots, or everywhere without roots
        none = disc < 0.0
        return [
            (np.where(never, nan, -big), np.where(never, nan, np.where(none, big, z1))),
            (np.where(never | none, nan, z2), np.where(never | none, nan, big)),
        ]


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
    ``liver`` is the painted liver (:class:`~pfs_core.synth.geometry.Liver`);
    ``liver_scale`` the linear factor it was drawn with (hepatomegaly).
    """

    body: Body
    z_diaphragm: float
    organs: tuple[tuple[int, object], ...]
    liver: Liver
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
    adrenals: tuple[Ellipsoid, Ellipsoid] | None = None
    liver_scale: float = 1.0

    def suv_of(self, tissue: str) -> float:
        return dict(self.suv)[tissue]

    @property
    def liver_volume_ml(self) -> float:
        """Volume (ml) of the painted liver in template space (the deformation preserves it to ~1 %)."""
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


def _varied(variation: np.random.Generator, ranges: tuple[tuple[float, float], ...],
            scale: tuple[float, float]) -> tuple[Array, float]:
    """One organ's extra shift (mm, per axis, x towards the patient's side) and linear scale."""
    shift = np.array([variation.uniform(lo, hi) for lo, hi in ranges])
    return shift, float(variation.uniform(*scale))


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


# ---------------------------------------------------------------- organ contact
def _sphere_points(n: int) -> Array:
    """``n`` nearly uniform unit vectors (Fibonacci sphere)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z * z)
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


_SPHERE = _sphere_points(400)


def _surface(e: Ellipsoid) -> Array:
    """Points ``(400, 3)`` on the ellipsoid's surface (about 5 mm apart for organ-sized ellipsoids)."""
    return np.asarray(e.centre) + (_SPHERE * np.asarray(e.radii)) @ np.asarray(e.rot).T


def _moved(e: Ellipsoid, shift: Array) -> Ellipsoid:
    return Ellipsoid.make(np.asarray(e.centre) + shift, np.asarray(e.radii), np.asarray(e.rot))


def _first_contact(touch: Callable[[float], bool], lo: float, hi: float, iters: int = 14) -> float | None:
    """Smallest ``t`` in ``[lo, hi]`` with ``touch(t)`` (False below, True above); None if never."""
    if not touch(hi):
        return None
    if touch(lo):
        return lo
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if touch(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _right_kidney_at_liver(kidney: Ellipsoid, lobes: tuple[Shape, ...], liver_centre: Array, contact: bool,
                           depth: float, gap: float, *, refuse_embedded: bool = False) -> Ellipsoid | None:
    """The right kidney moved to touch the liver (``depth`` mm into it) or kept ``gap`` mm of fat away.

    None when it never meets the liver, and with ``refuse_embedded`` also when it is still inside the
    liver 60 mm away.
    """
    towards = liver_centre - np.asarray(kidney.centre)
    towards = 0.5 * towards / np.linalg.norm(towards) + np.array([0.0, 0.0, 0.5])
    towards /= np.linalg.norm(towards)
    pts = _surface(kidney)
    hit = _first_contact(lambda t: _any_inside(lobes, pts + t * towards), -60.0, 60.0)
    if hit is None or (refuse_embedded and hit <= -60.0):
        return None
    t = hit + depth if contact and hit + depth <= 40.0 else min(0.0, hit - gap)
    return _moved(kidney, t * towards)


def _any_inside(shapes: tuple[Shape, ...], pts: Array) -> bool:
    return any(bool(s.inside(pts[:, 0], pts[:, 1], pts[:, 2]).any()) for s in shapes)


def _scaled(shape: Shape, anchor: Array, k: Array) -> Shape:
    """``shape`` stretched by ``k`` (per axis) about ``anchor`` (ellipsoids and cut ellipsoids)."""
    k = np.asarray(k, dtype=float)
    if isinstance(shape, CutEllipsoid):
        e = _scaled(shape.ellipsoid, anchor, k)
        assert isinstance(e, Ellipsoid)
        n = np.asarray(shape.normal) / k  # the plane n.(u - c) <= offset maps to (n / k).(u' - c') <= offset
        norm = float(np.linalg.norm(n))
        return CutEllipsoid(e, tuple(float(v) for v in n / norm), shape.offset / norm)  # type: ignore[arg-type]
    assert isinstance(shape, Ellipsoid)
    u, radii, _ = np.linalg.svd(k[:, None] * np.asarray(shape.rot) * np.asarray(shape.radii)[None, :])
    if np.linalg.det(u) < 0:
        u[:, 2] *= -1.0
    return Ellipsoid.make(anchor + k * (np.asarray(shape.centre) - anchor), radii, u)


def draw_anatomy(rng: np.random.Generator, *, liver_scale: float = 1.0,
                 variation: np.random.Generator | None = None) -> Anatomy:
    """Draw one patient's torso, organ shapes, grids, table offset and physiological SUVs.

    ``liver_scale`` multiplies the liver's linear dimensions (hepatomegaly, e.g. from tumour
    burden) about the top of its right lobe; nothing else moves and the random draws do not
    depend on it. With ``variation`` (the "varied" anatomy) the kidneys and the spleen are also
    moved and scaled by :data:`VARIED_KIDNEY_SHIFT_MM` etc., drawn from that generator only, so
    ``rng``'s draws are the same as without it.
    """
    # Habitus: adiposity (subcutaneous fat, body size) and visceral adiposity (a deeper belly).
    length = _u(rng, *TORSO_LENGTH_MM)
    adipose = float(np.clip(rng.normal(), -2.5, 2.5))
    visceral = float(np.clip(0.6 * adipose + 0.8 * rng.normal(), -2.5, 2.5))
    fat_mm = float(np.clip(15.0 * math.exp(0.5 * adipose), *SUBCUTANEOUS_FAT_MM))
    muscle_mm = _u(rng, *MUSCLE_WALL_MM)
    width = float(np.clip(332.0 + 16.0 * adipose + rng.normal(0.0, 12.0), *BODY_WIDTH_MM))
    depth = float(np.clip(226.0 + 9.0 * adipose + 12.0 * visceral + rng.normal(0.0, 8.0), *BODY_DEPTH_MM))
    a0 = 0.5 * width
    back = _u(rng, 0.88, 0.98)
    b0 = depth / (1.0 + back)
    body = Body(length, a0, b0, back, _u(rng, -0.1, 0.1), _u(rng, -0.2, 0.05), fat_mm, muscle_mm)
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
    cavity = Cavity(body, wall)
    ai = a0 - wall  # cavity half-width (mm)
    bi = b0 - wall  # anterior cavity half-depth
    bp = b0 * back - wall  # posterior cavity half-depth
    z_d = zt - _u(rng, 75.0, 95.0) * sz

    def jit(scale: float = 6.0) -> Array:
        return rng.normal(0.0, scale, size=3)

    def f(lo: float = 0.9, hi: float = 1.1) -> float:
        return _u(rng, lo, hi)

    def wall_y(x: float, z: float) -> float:
        """Anterior cavity boundary (mm) at ``x`` on the level ``z``."""
        sc = float(body.scale(np.asarray(z)))
        a, b = a0 * sc - wall, b0 * sc - wall
        return b * math.sqrt(max(0.0, 1.0 - (x / a) ** 2))

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
    y_s = -b0 * back + wall + 45.0 * s + rng.normal(0, 4)
    vb = Cylinder(0.0, y_s, 24 * s, 19 * s, zb - 80, zt + 80)
    arch = Cylinder(0.0, y_s - 29 * s, 15 * s, 13 * s, zb - 80, zt + 80)
    spinous = Cylinder(0.0, y_s - 47 * s, 4.5, 13 * s, zb - 80, zt + 80)
    canal = Cylinder(0.0, y_s - 29 * s, 8 * s, 8 * s, zb - 80, zt + 80)
    spine = Spine(vb, arch, spinous, canal, _u(rng, 28.0, 33.0) * s, _u(rng, 6.0, 8.0), _u(rng, 0.0, 30.0))
    aorta = Cylinder(-0.12 * ai + rng.normal(0, 3), y_s + 36 * s, 11 * s, 11 * s, z_d - 185 * sz, zt + 80)
    paraspinal = tuple(Cylinder(side * 32 * s, y_s - 36 * s, 26 * s, 22 * s, zb - 80, zt + 80) for side in (1, -1))
    psoas = tuple(Cylinder(side * 45 * s, y_s + 4, 18 * s, 18 * s, zb - 80, z_d - 110 * sz) for side in (1, -1))

    # Liver: a right lobe (cut ellipsoid); a left lobe over the stomach, made of a medial part along
    # the anterior wall and a lateral tip that follows the wall towards the spleen; a caudate bulge.
    # The total lobe volume (ml) is drawn first; the right lobe takes what the left lobe leaves.
    liver_ml = LIVER_ML * s**3 * math.exp(rng.normal(0.0, LIVER_LOG_SD))
    medial_half = _u(rng, 40.0, 60.0) * s  # half-length of the medial part (mm)
    left_ap, left_si = _u(rng, 22.0, 32.0) * s, _u(rng, 40.0, 55.0) * s * sz**0.5
    tip_half = _u(rng, *LEFT_TIP_HALF_LENGTH_MM) * s  # before the spleen-contact adjustment
    tip_ap, tip_si = left_ap * _u(rng, 0.5, 0.75), left_si * _u(rng, 0.6, 0.85)
    left_tilt = math.radians(_u(rng, 0.0, 8.0))  # medial part turned posteriorly beyond the wall's curve
    left_gap = _u(rng, 0.65, 0.95)  # anterior surface near the right lobe's front
    left_end = _u(rng, -0.2, 0.1)  # right end of the left lobe, in right-lobe x radii from its centre
    left_z = z_d - _u(rng, 40.0, 60.0) * sz
    left_roll = math.radians(rng.normal(0.0, 6.0))
    r_shape = np.array([78.0 * (ai / 142.0) ** 0.5, 72.0 * ((bi + bp) / 170.0) ** 0.5, 85.0 * sz**0.5])
    r_shape *= rng.uniform(0.93, 1.07, size=3)
    r_rot = rotation(rz=math.radians(rng.normal(0, 6)), ry=math.radians(rng.normal(0, 5)))
    n = np.array([-0.65, -0.45 + rng.normal(0, 0.08), -0.6])
    n /= np.linalg.norm(n)
    cut_frac = _u(rng, 0.25, 0.45)
    r_lateral, r_dome = _u(rng, 0.8, 0.95), _u(rng, 0.0, 25.0) * sz
    r_y = 0.08 * bi + rng.normal(0, 4)
    caudate_on = rng.uniform() < 0.75
    caudate_r = np.array([15.0, 13.0, 26.0]) * s * _u(rng, 0.8, 1.25)
    caudate_at = np.array([aorta.cx + 40.0 * s, y_s + 60.0 * s, z_d - 55.0 * sz]) + jit(4)  # before the IVC

    def ell_ml(a: float, b: float, c: float) -> float:
        return 4.0 / 3.0 * math.pi * a * b * c / 1000.0

    left_ml = 0.6 * ell_ml(medial_half, left_ap, left_si) + 0.8 * ell_ml(tip_half, tip_ap, tip_si)
    caudate_ml = ell_ml(*caudate_r) if caudate_on else 0.0
    right_ml = max(0.55 * liver_ml, liver_ml - left_ml - 0.5 * caudate_ml)
    kept = 1.0 - (1.0 - cut_frac) ** 2 * (2.0 + cut_frac) / 4.0
    r_radii = r_shape * (right_ml / (ell_ml(*r_shape) * kept)) ** (1.0 / 3.0)
    cavity_half = ai * float(body.scale(np.asarray(z_d - 70.0 * sz)))
    r_centre = np.array([cavity_half - r_lateral * r_radii[0], r_y, z_d + r_dome - r_radii[2]])
    r_ell = Ellipsoid.make(r_centre, r_radii, r_rot)
    m = r_radii * (r_rot.T @ n)
    right = CutEllipsoid(r_ell, tuple(float(v) for v in n), float(cut_frac * np.linalg.norm(m)))  # type: ignore[arg-type]
    # Medial part: from inside the right lobe's front across the midline, along the wall's chord.
    x_end = r_centre[0] + left_end * r_radii[0]
    ys = np.arange(r_centre[1], r_centre[1] + 1.5 * r_radii.max(), 0.5)
    on_line = right.inside(np.full(ys.shape, x_end), ys, np.full(ys.shape, left_z))
    y_front = float(ys[on_line].max()) if on_line.any() else r_centre[1] + 0.5 * r_radii[1]
    y_end = min(y_front, wall_y(x_end, left_z)) - left_gap * left_ap
    tilt = math.atan2(wall_y(x_end, left_z) - wall_y(x_end - 2.0 * medial_half, left_z), 2.0 * medial_half)
    tilt += left_tilt
    axis = np.array([math.cos(tilt), math.sin(tilt), 0.0])  # towards the patient's right
    medial_c = np.array([x_end, y_end, left_z]) - medial_half * axis
    medial = Ellipsoid.make(medial_c, np.array([medial_half, left_ap, left_si]), rotation(rx=left_roll, rz=tilt))
    tip_start = medial_c - 0.6 * medial_half * axis
    a_level = a0 * float(body.scale(np.asarray(left_z))) - wall

    def left_tip(half: float) -> Ellipsoid:
        """Lateral tip of half-length ``half`` from the medial part's left end, along the wall."""
        x_t = max(tip_start[0] - 1.7 * half, -0.97 * a_level)
        target = np.array([x_t, wall_y(x_t, left_z) - 1.2 * tip_ap, left_z])
        d = target - tip_start
        d /= max(float(np.linalg.norm(d)), 1e-9)
        return Ellipsoid.make(
            tip_start + half * d, np.array([half, tip_ap, tip_si]), rotation(rx=left_roll, rz=math.atan2(-d[1], -d[0]))
        )

    lobes0: tuple[Shape, ...] = (right, medial, left_tip(tip_half))
    if caudate_on:  # drawn towards the right lobe until sunk into it by 40 % of its smallest radius,
        c_dir = r_centre - caudate_at
        c_len = float(np.linalg.norm(c_dir))
        c_dir /= c_len
        c_pts = _surface(Ellipsoid.make(caudate_at, caudate_r))
        meet = _first_contact(lambda t: _any_inside((right,), c_pts + t * c_dir), 0.0, c_len)
        shift = 0.0 if meet is None or meet == 0.0 else meet + 0.4 * float(caudate_r.min())
        caudate = Ellipsoid.make(caudate_at + shift * c_dir, caudate_r)
        # and only where it stays clear of the spine, aorta and psoas
        if not _any_inside((vb, aorta, *psoas), _surface(caudate)):
            lobes0 = (*lobes0, caudate)

    # Spleen: log-normal size, occasional splenomegaly; the left lobe's tip touches it in a minority.
    big = rng.uniform() < SPLENOMEGALY
    spleen_f = math.exp(rng.normal(0.0, 0.1)) * (_u(rng, 1.25, 1.6) if big else 1.0)
    spleen = Ellipsoid.make(
        np.array([-0.62 * ai, -0.28 * bp, z_d - 55 * sz]) + jit(5),
        np.array(SPLEEN_RADII_MM) * s * spleen_f * rng.uniform(0.9, 1.1, size=3),
        rotation(rz=math.radians(35 + rng.normal(0, 8))),
    )
    if variation is not None:
        spleen_shift, spleen_k = _varied(variation, VARIED_SPLEEN_SHIFT_MM, VARIED_SCALE)
        spleen_shift[0] = -spleen_shift[0]  # the spleen is on the patient's left (-x)
        spleen = Ellipsoid.make(np.asarray(spleen.centre) + spleen_shift, np.asarray(spleen.radii) * spleen_k,
                                np.asarray(spleen.rot))
    spleen_contact = rng.uniform() < SPLEEN_LIVER_CONTACT
    spleen_depth, spleen_gap = _u(rng, 2.0, 7.0), _u(rng, 5.0, 15.0)
    spleen_pts = _surface(spleen)
    reach = _first_contact(lambda h: _any_inside((left_tip(h),), spleen_pts), 5.0, 120.0 * s)
    if reach is not None and spleen_contact:
        tip_half = reach + spleen_depth
    elif reach is not None:
        tip_half = max(5.0, min(tip_half, reach - spleen_gap))
    lobes0 = (right, medial, left_tip(tip_half), *lobes0[3:])

    stomach = Ellipsoid.make(
        np.array([-0.35 * ai, 0.15 * bi, z_d - 45 * sz]) + jit(6),
        np.array([0.22 * ai, 0.28 * bi, 50 * sz]) * s * f(0.8, 1.2),
        rotation(rz=math.radians(rng.normal(20, 10))),
    )
    # The left lobe lies on the front of the stomach: push the stomach back (at most 50 mm) until
    # it only touches the lobes (painted after it, the liver keeps its smooth visceral surface).
    impression = _u(rng, 0.0, 4.0)
    st_pts = _surface(stomach)
    backwards = np.array([-0.35, -0.75, -0.55]) / np.linalg.norm([-0.35, -0.75, -0.55])  # and left, down
    clear = _first_contact(lambda t: not _any_inside(lobes0, st_pts + t * backwards), 0.0, 50.0)
    stomach = _moved(stomach, max(0.0, (50.0 if clear is None else clear) - impression) * backwards)
    head = np.array([0.12 * ai, 0.05 * bi, z_d - 110 * sz]) + jit(5)
    tail = np.asarray(spleen.centre) + np.array([0.35 * spleen.radii[0], 0.35 * spleen.radii[1], -0.3 * spleen.radii[2]])
    tail += jit(4)
    pancreas = Ellipsoid.make(
        0.5 * (head + tail),
        np.array([0.5 * np.linalg.norm(tail - head) + 10.0, 13.0 * s, 12.0 * s]),
        rotation_to(tail - head),
    )
    # Kidneys: +- a vertebra in z; the right one pressed against the liver in most patients.
    level = rng.normal(0.0, 8.0)
    kidneys, right_shift = [], np.zeros(3)
    for side, dz in ((1.0, -130.0), (-1.0, -118.0)):
        dz_v = float(np.clip(level + rng.normal(0.0, 8.0), -30.0, 30.0))
        c = np.array([side * 0.42 * ai, -0.55 * bp, z_d + dz * sz + dz_v]) + jit(4)
        rot = rotation(rz=side * math.radians(30 + rng.normal(0, 6)), ry=side * math.radians(12))
        radii = np.array([26.0, 23.0, 52.0]) * s * f()
        if variation is not None:
            kidney_shift, kidney_k = _varied(variation, VARIED_KIDNEY_SHIFT_MM, VARIED_SCALE)
            kidney_shift, radii = kidney_shift * np.array([side, 1.0, 1.0]), radii * kidney_k
            if side > 0:  # shifted once placed against the liver (below)
                right_shift = kidney_shift
            else:
                c = c + kidney_shift
        kidneys.append(Ellipsoid.make(c, radii, rot))
    kidney_contact = rng.uniform() < KIDNEY_LIVER_CONTACT
    kidney_depth, kidney_gap = _u(rng, 1.0, 6.0), _u(rng, 6.0, 18.0)
    # The varied right kidney takes as much of its shift as leaves it outside the liver (all, half, none).
    for part in (1.0, 0.5, 0.0) if variation is not None else (0.0,):
        placed = _right_kidney_at_liver(_moved(kidneys[0], part * right_shift), lobes0, r_centre, kidney_contact,
                                        kidney_depth, kidney_gap, refuse_embedded=part > 0.0)
        if placed is not None or part == 0.0:
            kidneys[0] = placed if placed is not None else _moved(kidneys[0], part * right_shift)
            break
    pelvises = []
    for side, kid in zip((1.0, -1.0), kidneys, strict=True):
        rot = np.asarray(kid.rot)
        pelvises.append(
            Ellipsoid.make(np.asarray(kid.centre) - np.array([side * 12.0 * s, 0.0, 0.0]), np.array([9.0, 8.0, 20.0]) * s, rot)
        )
    # Adrenals: supero-medial to the upper pole of each kidney (the right one next to the liver).
    adrenals = []
    for side, kid in zip((1.0, -1.0), kidneys, strict=True):
        pole = np.asarray(kid.centre) + np.asarray(kid.rot)[:, 2] * kid.radii[2]
        adrenals.append(
            Ellipsoid.make(
                pole + np.array([-side * 10.0, 6.0, 16.0]) * s + jit(3),
                np.array([5.0, 14.0, 20.0]) * s,
                rotation(rz=side * math.radians(30)),
            )
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

    # Hepatomegaly: stretch the lobes about the lateral-posterior top of the right lobe (under the
    # diaphragm), mostly downwards (volume x liver_scale**3), where the abdomen leaves room.
    anchor = r_centre + np.array([0.9 * r_radii[0], -0.8 * r_radii[1], 0.9 * r_radii[2]])
    stretch = liver_scale ** np.array(HEPATOMEGALY_EXPONENTS)
    lobes = tuple(_scaled(p, anchor, stretch) for p in lobes0) if liver_scale != 1.0 else lobes0

    after_liver: list[tuple[int, object]] = [
        (LABEL["heart_vessels"], heart),  # the cardiac impression on the liver's dome
        *((LABEL["soft_tissue"], c) for c in psoas),
        (LABEL["heart_vessels"], aorta),
        (LABEL["spleen"], spleen),
        (LABEL["pancreas"], pancreas),
        *((LABEL["adrenal"], a) for a in adrenals),
        *((LABEL["kidney"], k) for k in kidneys),
        *((T_URINE_PELVIS, p) for p in pelvises),
        (LABEL["bladder"], bladder),
        *((LABEL["bone"], b) for b in (*iliac, sacrum, *femoral)),
    ]
    # Varied anatomy: quadratus lumborum muscles, behind and beside where the kidneys may now lie, so that
    # a muscle in fat beside the spine is not taken for a kidney (the standard torso merges them into the wall).
    quadratus: tuple[Cylinder, ...] = ()
    if variation is not None:
        quadratus = tuple(
            Cylinder(side * variation.uniform(*VARIED_QUADRATUS_X_MM) * s, y_s - variation.uniform(*VARIED_QUADRATUS_BACK_MM),
                     variation.uniform(12.0, 20.0) * s, variation.uniform(9.0, 15.0) * s, zb + 100 * sz, z_d - 90 * sz)
            for side in (1.0, -1.0)
        )
    organs: list[tuple[int, object]] = [
        *((LABEL["soft_tissue"], c) for c in (*paraspinal, *quadratus)),
        (LABEL["bowel"], bowel),
        *((T_COLON, c) for c in (*colon, transverse)),
        *((LABEL["lung"], lung) for lung in lungs),
        (LABEL["bowel"], stomach),
        *((LABEL["liver"], p) for p in lobes),
        *after_liver,
    ]
    painted_over = (*(cast(Shape, o) for _, o in after_liver), vb, arch, spinous, canal)  # spine: painted last
    liver = Liver.make(lobes, cavity, painted_over)
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
        adrenals=(adrenals[0], adrenals[1]),
        liver_scale=float(liver_scale),
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
    # Stomach gas above the fluid level (anterior part of the stomach, where no organ was painted over it).
    st = anat.stomach
    sl = _region(anat, grid, st)
    if sl is not None:
        gas = st.inside(ux[sl], uy[sl], uz[sl]) & (uy[sl] > st.centre[1] + 0.25 * st.radii[1])
        gas &= tissue[sl] == LABEL["bowel"]
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
