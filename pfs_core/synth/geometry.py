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

import numpy as np

Array = np.ndarray


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
