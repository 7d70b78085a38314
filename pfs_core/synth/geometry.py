"""Geometric primitives of the parametric torso: grids, shapes, smooth deformation.

All coordinates are millimetres in the patient frame, axes RAS (x toward the
patient's right, y anterior, z superior). World coordinates are the patient frame
plus the table offset of :class:`pfs_core.synth.anatomy.Anatomy`.

Organs are defined in a *template* space ``u``; a voxel at patient-frame
position ``p`` belongs to an organ when ``u = p + d(p)`` lies inside the organ's
template shape (pull-back of a smooth, divergence-free displacement ``d``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

Array = np.ndarray


class Shape(Protocol):
    """A solid in template space: point test, bounding box, and exact spans along vertical lines."""

    def inside(self, ux: Array, uy: Array, uz: Array) -> Array: ...

    def bbox(self) -> tuple[Array, Array]: ...

    def z_spans(self, x: Array, y: Array) -> list[tuple[Array, Array]]:
        """Intervals ``[lo, hi]`` (mm) of ``z`` inside the solid on the vertical lines ``(x, y)`` (1-D arrays).

        The solid's part of each line is the union of the returned intervals; an empty
        interval has NaN ends.
        """
        ...


# --------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class Grid:
    """An axis-aligned RAS voxel grid.

    ``origin`` is the patient-frame position (mm) of the centre of voxel (0, 0, 0);
    ``spacing`` is the voxel size (mm) along x, y, z; ``shape`` the voxel counts.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def axes(self) -> tuple[Array, Array, Array]:
        """1D voxel-centre coordinates (mm, patient frame) along x, y, z (float64)."""
        return tuple(  # type: ignore[return-value]
            self.origin[a] + self.spacing[a] * np.arange(self.shape[a], dtype=np.float64) for a in range(3)
        )

    def affine(self, offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Array:
        """4x4 voxel-to-world matrix (RAS, mm); ``offset`` is added to the origin (table position)."""
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = np.asarray(self.origin) + np.asarray(offset)
        return aff

    def upper(self) -> tuple[float, float, float]:
        """Patient-frame position (mm) of the centre of the last voxel."""
        return tuple(self.origin[a] + self.spacing[a] * (self.shape[a] - 1) for a in range(3))  # type: ignore[return-value]

    def index_slices(self, lo: Array, hi: Array) -> tuple[slice, slice, slice] | None:
        """Voxel slices covering the patient-frame box ``[lo, hi]`` (mm); None if outside the grid."""
        out = []
        for a in range(3):
            i0 = max(0, int(math.floor((lo[a] - self.origin[a]) / self.spacing[a])))
            i1 = min(self.shape[a], int(math.ceil((hi[a] - self.origin[a]) / self.spacing[a])) + 1)
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return out[0], out[1], out[2]


# ------------------------------------------------------------------------ rotations
def rotation(rx: float = 0.0, ry: float = 0.0, rz: float = 0.0) -> Array:
    """Rotation matrix Rz @ Ry @ Rx for angles in radians (columns = rotated local axes)."""
    cx, sx = math.cos(rx), math.sin(rx)
    cy, sy = math.cos(ry), math.sin(ry)
    cz, sz = math.cos(rz), math.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


def rotation_to(direction: Array) -> Array:
    """Rotation whose first column (local x axis) points along ``direction``."""
    e1 = np.asarray(direction, dtype=float)
    e1 = e1 / np.linalg.norm(e1)
    helper = np.array([0.0, 0.0, 1.0]) if abs(e1[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e2 = np.cross(helper, e1)
    e2 /= np.linalg.norm(e2)
    e3 = np.cross(e1, e2)
    return np.stack([e1, e2, e3], axis=1)


# ---------------------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Ellipsoid:
    """Solid ellipsoid: centre (mm), semi-axes ``radii`` (mm), ``rot`` 3x3 (columns = local axes)."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    rot: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    @staticmethod
    def make(centre: Array, radii: Array, rot: Array | None = None) -> Ellipsoid:
        r = np.eye(3) if rot is None else np.asarray(rot, dtype=float)
        return Ellipsoid(
            tuple(float(v) for v in centre),  # type: ignore[arg-type]
            tuple(float(v) for v in radii),  # type: ignore[arg-type]
            tuple(tuple(float(v) for v in row) for row in r),  # type: ignore[arg-type,misc]
        )

    def local(self, ux: Array, uy: Array, uz: Array) -> tuple[Array, Array, Array]:
        """Local coordinates (mm) of points (broadcastable arrays)."""
        r = self.rot
        dx, dy, dz = ux - self.centre[0], uy - self.centre[1], uz - self.centre[2]
        v0 = r[0][0] * dx + r[1][0] * dy + r[2][0] * dz
        v1 = r[0][1] * dx + r[1][1] * dy + r[2][1] * dz
        v2 = r[0][2] * dx + r[1][2] * dy + r[2][2] * dz
        return v0, v1, v2

    def q(self, ux: Array, uy: Array, uz: Array) -> Array:
        """Normalised squared radius: < 1 inside, 1 on the surface."""
        v0, v1, v2 = self.local(ux, uy, uz)
        a, b, c = self.radii
        return (v0 / a) ** 2 + (v1 / b) ** 2 + (v2 / c) ** 2

    def inside(self, ux: Array, uy: Array, uz: Array) -> Array:
        return self.q(ux, uy, uz) <= 1.0

    def bbox(self) -> tuple[Array, Array]:
        """Exact axis-aligned bounding box (mm)."""
        r = np.asarray(self.rot)
        half = np.sqrt(((r * np.asarray(self.radii)[None, :]) ** 2).sum(axis=1))
        c = np.asarray(self.centre)
        return c - half, c + half

    @property
    def volume_ml(self) -> float:
        a, b, c = self.radii
        return 4.0 / 3.0 * math.pi * a * b * c / 1000.0

    def z_spans(self, x: Array, y: Array) -> list[tuple[Array, Array]]:
        """The chord ``[lo, hi]`` (mm) on each vertical line (roots of the quadratic in ``z``)."""
        r, c = self.rot, self.centre
        dx, dy = np.asarray(x, dtype=float) - c[0], np.asarray(y, dtype=float) - c[1]
        qa = 0.0
        qb = np.zeros_like(dx)
        qc = np.zeros_like(dx)
        for i in range(3):
            a_i = r[0][i] * dx + r[1][i] * dy  # local coordinate i at z = centre
            w_i = r[2][i]  # its rate of change with z
            inv = 1.0 / self.radii[i] ** 2
            qa += w_i * w_i * inv
            qb += a_i * w_i * inv
            qc += a_i * a_i * inv
        disc = qb * qb - qa * (qc - 1.0)
        root = np.sqrt(np.where(disc >= 0.0, disc, np.nan))
        return [(c[2] + (-qb - root) / qa, c[2] + (-qb + root) / qa)]


@dataclass(frozen=True)
class CutEllipsoid:
    """Ellipsoid intersected with the half-space ``normal . (u - centre) <= offset`` (mm)."""

    ellipsoid: Ellipsoid
    normal: tuple[float, float, float]
    offset: float

    def plane_distance(self, ux: Array, uy: Array, uz: Array) -> Array:
        c, n = self.ellipsoid.centre, self.normal
        return n[0] * (ux - c[0]) + n[1] * (uy - c[1]) + n[2] * (uz - c[2]) - self.offset

    def inside(self, ux: Array, uy: Array, uz: Array) -> Array:
        return self.ellipsoid.inside(ux, uy, uz) & (self.plane_distance(ux, uy, uz) <= 0.0)

    def bbox(self) -> tuple[Array, Array]:
        return self.ellipsoid.bbox()

    @property
    def volume_ml(self) -> float:
        """Analytic volume: ellipsoid volume times the kept fraction of the unit ball."""
        r = np.asarray(self.ellipsoid.rot)
        m = np.asarray(self.ellipsoid.radii) * (r.T @ np.asarray(self.normal))
        tau = float(np.clip(self.offset / np.linalg.norm(m), -1.0, 1.0))
        kept = 1.0 - (1.0 - tau) ** 2 * (2.0 + tau) / 4.0
        return self.ellipsoid.volume_ml * kept

    def z_spans(self, x: Array, y: Array) -> list[tuple[Array, Array]]:
        """The ellipsoid's chord cut by the plane (a half-line in ``z`` unless the plane is vertical)."""
        (lo, hi), = self.ellipsoid.z_spans(x, y)
        c, n = self.ellipsoid.centre, self.normal
        rest = self.offset - n[0] * (np.asarray(x, dtype=float) - c[0]) - n[1] * (np.asarray(y, dtype=float) - c[1])
        if abs(n[2]) < 1e-12:
            keep = rest >= 0.0
            return [(np.where(keep, lo, np.nan), np.where(keep, hi, np.nan))]
        z_plane = c[2] + rest / n[2]
        if n[2] > 0.0:  # kept below the plane
            hi = np.minimum(hi, z_plane)
        else:
            lo = np.maximum(lo, z_plane)
        empty = ~(lo <= hi)
        return [(np.where(empty, np.nan, lo), np.where(empty, np.nan, hi))]


@dataclass(frozen=True)
class Cylinder:
    """Elliptic cylinder along z: centre (x, y) mm, radii (rx, ry) mm, z range [z0, z1] mm."""

    cx: float
    cy: float
    rx: float
    ry: float
    z0: float
    z1: float

    def inside(self, ux: Array, uy: Array, uz: Array) -> Array:
        return (((ux - self.cx) / self.rx) ** 2 + ((uy - self.cy) / self.ry) ** 2 <= 1.0) & (uz >= self.z0) & (
            uz <= self.z1
        )

    def bbox(self) -> tuple[Array, Array]:
        return (
            np.array([self.cx - self.rx, self.cy - self.ry, self.z0]),
            np.array([self.cx + self.rx, self.cy + self.ry, self.z1]),
        )

    def z_spans(self, x: Array, y: Array) -> list[tuple[Array, Array]]:
        hit = ((np.asarray(x, dtype=float) - self.cx) / self.rx) ** 2 + ((np.asarray(y, dtype=float) - self.cy) / self.ry) ** 2 <= 1.0
        return [(np.where(hit, self.z0, np.nan), np.where(hit, self.z1, np.nan))]


# -------------------------------------------------------------------- compound solids
#: Unit probe directions of :meth:`Liver.interior`: the 6 axes and the 8 diagonals.
PROBE_DIRECTIONS = np.array(
    [[s * (a == 0), s * (a == 1), s * (a == 2)] for a in range(3) for s in (1.0, -1.0)]
    + [[i / math.sqrt(3.0), j / math.sqrt(3.0), k / math.sqrt(3.0)] for i in (1, -1) for j in (1, -1) for k in (1, -1)]
)
#: Lattice step (mm, x and y) of the numerical liver volume; ``z`` is exact.
VOLUME_STEP_MM = 2.0


def union_bbox(shapes: tuple[Shape, ...] | list[Shape]) -> tuple[Array, Array]:
    """Axis-aligned box (mm) around all ``shapes``."""
    boxes = [s.bbox() for s in shapes]
    return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


def boxes_overlap(a: tuple[Array, Array], b: tuple[Array, Array]) -> bool:
    return bool(np.all(np.asarray(a[0]) <= np.asarray(b[1])) and np.all(np.asarray(b[0]) <= np.asarray(a[1])))


def _member(spans: list[tuple[Array, Array]], z: Array) -> Array:
    """Whether ``z`` (columns x segments) lies in any of the per-column ``spans``."""
    m = np.zeros(z.shape, dtype=bool)
    for lo, hi in spans:
        m |= (lo[:, None] <= z) & (z <= hi[:, None])
    return m


def _pieces(spans: list[tuple[Array, Array]], z0: float, z1: float) -> tuple[Array, Array]:
    """Midpoints and lengths ``(columns, pieces)`` of ``[z0, z1]`` cut at every span end."""
    ends = np.empty((spans[0][0].shape[0], 2 + 2 * len(spans)))
    ends[:, 0], ends[:, 1] = z0, z1
    for i, (a, b) in enumerate(spans):
        ends[:, 2 + 2 * i], ends[:, 3 + 2 * i] = a, b
    np.nan_to_num(ends, copy=False, nan=z0)  # an empty span adds nothing
    np.clip(ends, z0, z1, out=ends)
    ends.sort(axis=1)
    return 0.5 * (ends[:, 1:] + ends[:, :-1]), ends[:, 1:] - ends[:, :-1]


def _subset(spans: list[tuple[Array, Array]], keep: Array) -> list[tuple[Array, Array]]:
    """The spans on the columns ``keep``, without spans that are empty on all of them."""
    out = [(a[keep], b[keep]) for a, b in spans]
    return [(a, b) for a, b in out if not np.isnan(a).all()]


def _spans_in_box(shape: Shape, x: Array, y: Array) -> list[tuple[Array, Array]]:
    """``shape.z_spans`` evaluated only on the lines that cross its box (NaN elsewhere)."""
    lo, hi = shape.bbox()
    near = (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1])
    out = []
    for a, b in shape.z_spans(x[near], y[near]):
        full_a, full_b = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
        full_a[near], full_b[near] = a, b
        out.append((full_a, full_b))
    return out


def compound_volume_ml(
    include: tuple[Shape, ...], clip: Shape | None = None, exclude: tuple[Shape, ...] = (),
    step_mm: float = VOLUME_STEP_MM,
) -> float:
    """Volume (ml) of ``(union of include) & clip - (union of exclude)``.

    Vertical lines on a ``step_mm`` lattice in ``x, y`` (cell centres over the box of
    ``include``); on each line the solid's length is exact: every span end of every
    shape is a breakpoint and the membership of each piece is decided at its midpoint.
    Deterministic; no random draws.
    """
    lo, hi = union_bbox(include)
    xs = np.arange(lo[0] + 0.5 * step_mm, hi[0] + 0.5 * step_mm, step_mm)
    ys = np.arange(lo[1] + 0.5 * step_mm, hi[1] + 0.5 * step_mm, step_mm)
    x, y = (v.ravel() for v in np.meshgrid(xs, ys, indexing="ij"))
    inc = [sp for s in include for sp in s.z_spans(x, y)]
    hit = np.zeros(x.shape, dtype=bool)
    for a, _ in inc:
        hit |= ~np.isnan(a)
    x, y = x[hit], y[hit]
    inc = _subset(inc, hit)
    z0, z1 = float(lo[2]), float(hi[2])
    cut = _subset(clip.z_spans(x, y), np.ones(x.shape, dtype=bool)) if clip is not None else []
    # Lobes within the clip on every line ...
    mid, length = _pieces(inc + cut, z0, z1)
    inside = _member(inc, mid)
    if clip is not None:
        inside &= _member(cut, mid)
    total = float((length * inside).sum())
    # ... less the part of it under the excluded shapes, on the few lines they cross.
    exc = [sp for s in exclude for sp in _spans_in_box(s, x, y)]
    crossed = np.zeros(x.shape, dtype=bool)
    for a, _ in exc:
        crossed |= ~np.isnan(a)
    if crossed.any():
        inc_c, exc_c = _subset(inc, crossed), _subset(exc, crossed)
        cut_c = [(a[crossed], b[crossed]) for a, b in cut]
        mid, length = _pieces(inc_c + cut_c + exc_c, z0, z1)
        under = _member(inc_c, mid) & _member(exc_c, mid)
        if clip is not None:
            under &= _member(cut_c, mid)
        total -= float((length * under).sum())
    return total * step_mm * step_mm / 1000.0


@dataclass(frozen=True)
class Liver:
    """The liver: a union of lobes, clipped to the abdominal cavity, less the organs painted over it.

    ``parts`` are the lobes (the first is the right lobe, a :class:`CutEllipsoid`);
    a point is liver when it lies in a part, inside ``clip`` (the body cavity) and in
    none of ``exclude`` (organs and bones painted after the liver). So :meth:`inside`
    is exactly the painted liver (in template space) and ``volume_ml`` its volume,
    computed once by :meth:`make` (see :func:`compound_volume_ml`).
    """

    parts: tuple[Shape, ...]
    clip: Shape | None = None
    exclude: tuple[Shape, ...] = ()
    volume_ml: float = math.nan

    @staticmethod
    def make(parts: tuple[Shape, ...], clip: Shape | None = None, exclude: tuple[Shape, ...] = ()) -> Liver:
        """Keep the exclusions whose boxes meet the lobes' box and compute the volume."""
        box = union_bbox(parts)
        exclude = tuple(e for e in exclude if boxes_overlap(box, e.bbox()))
        return Liver(tuple(parts), clip, exclude, compound_volume_ml(tuple(parts), clip, exclude))

    def union_inside(self, ux: Array, uy: Array, uz: Array) -> Array:
        """Inside any lobe (before the clip and the exclusions)."""
        m = self.parts[0].inside(ux, uy, uz)
        for p in self.parts[1:]:
            m = m | p.inside(ux, uy, uz)
        return m

    def inside(self, ux: Array, uy: Array, uz: Array) -> Array:
        m = self.union_inside(ux, uy, uz)
        if self.clip is not None:
            m &= self.clip.inside(ux, uy, uz)
        for e in self.exclude:
            m &= ~e.inside(ux, uy, uz)
        return m

    def bbox(self) -> tuple[Array, Array]:
        return union_bbox(self.parts)

    def interior(self, points: Array, margin_mm: float) -> Array:
        """True where a template-space point ``(N, 3)`` (mm) and its 14 probes ``margin_mm`` away
        (:data:`PROBE_DIRECTIONS`) are all liver."""
        p = np.asarray(points, dtype=float).reshape(-1, 3)
        probe = np.concatenate([p[:, None, :], p[:, None, :] + margin_mm * PROBE_DIRECTIONS[None]], axis=1)
        return np.asarray(self.inside(probe[..., 0], probe[..., 1], probe[..., 2]).all(axis=1))


# ----------------------------------------------------------------------- deformation
@dataclass(frozen=True)
class CurlDeformation:
    """Smooth, (to first order) volume-preserving displacement ``d = curl(psi)`` in mm.

    ``psi_j(p) = amp[j] * prod_a sin(k[j][a] * p_a + phase[j][a])`` for j, a in x, y, z,
    with wave numbers ``k`` (rad/mm) and amplitudes ``amp`` (mm^2). Because
    ``div(curl) = 0`` organ volumes change only to second order (about 1 %).
    """

    amp: tuple[float, float, float]
    k: tuple[tuple[float, float, float], ...]
    phase: tuple[tuple[float, float, float], ...]

    def max_displacement(self) -> float:
        """Upper bound of |d| (mm) from the curl's component bounds."""
        a, k = [abs(v) for v in self.amp], self.k
        bx = a[2] * k[2][1] + a[1] * k[1][2]
        by = a[0] * k[0][2] + a[2] * k[2][0]
        bz = a[1] * k[1][0] + a[0] * k[0][1]
        return float(math.sqrt(bx * bx + by * by + bz * bz))

    def _partials(self, coords: tuple[Array, Array, Array]) -> list[list[Array]]:
        """``dpsi[j][b]`` = d psi_j / d p_b evaluated on broadcastable coordinate arrays."""
        out: list[list[Array]] = []
        for j in range(3):
            s = [np.sin(self.k[j][a] * coords[a] + self.phase[j][a]) for a in range(3)]
            c = [self.k[j][a] * np.cos(self.k[j][a] * coords[a] + self.phase[j][a]) for a in range(3)]
            row = []
            for b in range(3):
                f = [c[a] if a == b else s[a] for a in range(3)]
                row.append(self.amp[j] * f[0] * f[1] * f[2])
            out.append(row)
        return out

    def displacement(self, px: Array, py: Array, pz: Array) -> tuple[Array, Array, Array]:
        """Displacement (mm) at broadcastable positions (mm)."""
        dp = self._partials((px, py, pz))
        dx = dp[2][1] - dp[1][2]
        dy = dp[0][2] - dp[2][0]
        dz = dp[1][0] - dp[0][1]
        return dx, dy, dz

    def template_coords(self, grid: Grid) -> tuple[Array, Array, Array]:
        """Template coordinates ``u = p + d(p)`` (float32, grid shape) of every voxel centre."""
        x, y, z = grid.axes()
        px, py, pz = x[:, None, None], y[None, :, None], z[None, None, :]
        dx, dy, dz = self.displacement(px.astype(np.float32), py.astype(np.float32), pz.astype(np.float32))
        shape = grid.shape
        ux = np.broadcast_to(px.astype(np.float32), shape) + dx
        uy = np.broadcast_to(py.astype(np.float32), shape) + dy
        uz = np.broadcast_to(pz.astype(np.float32), shape) + dz
        return ux.astype(np.float32), uy.astype(np.float32), uz.astype(np.float32)

    def _point_displacement(self, p: Array) -> Array:
        """Displacement (mm) at points ``(N, 3)``, vectorised over potentials and axes."""
        k = np.asarray(self.k)  # (3 potentials, 3 axes)
        arg = p[:, None, :] * k[None] + np.asarray(self.phase)[None]  # (N, j, a)
        s, c = np.sin(arg), np.cos(arg) * k[None]
        amp = np.asarray(self.amp)[None, :]
        # d psi_j / d p_b = amp_j * c[j, b] * prod_{a != b} s[j, a]
        part = np.empty(arg.shape)
        part[..., 0] = c[..., 0] * s[..., 1] * s[..., 2]
        part[..., 1] = s[..., 0] * c[..., 1] * s[..., 2]
        part[..., 2] = s[..., 0] * s[..., 1] * c[..., 2]
        part *= amp[..., None]
        d = np.empty_like(p)
        d[:, 0] = part[:, 2, 1] - part[:, 1, 2]
        d[:, 1] = part[:, 0, 2] - part[:, 2, 0]
        d[:, 2] = part[:, 1, 0] - part[:, 0, 1]
        return d

    def from_template(self, u: Array, *, tol_mm: float = 1e-6, max_iter: int = 60) -> Array:
        """Patient-frame points ``p`` with ``p + d(p) = u`` (fixed-point iteration; ``(N, 3)`` mm)."""
        u = np.asarray(u, dtype=float).reshape(-1, 3)
        p = u.copy()
        for _ in range(max_iter):
            new = u - self._point_displacement(p)
            if np.abs(new - p).max(initial=0.0) < tol_mm:
                return new
            p = new
        return p
