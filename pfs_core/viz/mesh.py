"""Light triangle meshes of one case in world coordinates (mm, RAS+) and off-screen renderings.

Every surface is contoured in *voxel index space* (VTK flying edges on a
:class:`pyvista.ImageData` with unit spacing) and its points are then mapped
through the image's 4x4 affine (nibabel convention: voxel index of a voxel
centre → world mm, RAS+). Any orientation (RAS, LPS, flipped, oblique,
anisotropic) therefore lands exactly where the image says it is. Volumes are
padded by one voxel below the level so surfaces that touch the edge of the
field of view are closed (capped at the outermost voxel centres).

Triangle budgets are hard limits: a surface far over its budget is contoured
on a block-averaged grid (scikit-image ``block_reduce``), then reduced with VTK quadric clustering (fast and
robust, also on noise) until it fits. ``pyvista`` is imported only when a
function needs it, so :class:`Mesh` is cheap to import (:mod:`pfs_core.viz.scene`).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyvista as pv
from scipy import ndimage
from skimage.measure import block_reduce
from vtkmodules.vtkFiltersCore import vtkQuadricClustering

from pfs_core.errors import InputError
from pfs_core.viz.images import ORGAN_COLORS, OTHER_ORGAN_COLOR, STATUS_COLORS, organ_label

BODY_COLOR = "#BBBBBB"  # light grey
PET_COLOR = "#E69F00"  # Okabe-Ito orange
CAM_COLOR = "#CC79A7"  # Okabe-Ito reddish purple
MIN_TRIANGLES = 1_000  # smallest budget accepted (a 4x4x4 grid of noise stays below it)
BODY_MAX_VOXELS = 4_000_000  # the CT is block-averaged to at most this many voxels for the skin surface
_OVERSHOOT = 4.0  # contour on a coarser grid when a surface has more than this many times its budget
_HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")
_RENDER_LOCK = threading.Lock()  # VTK render windows are not safe to use from several threads at once

View = Literal["iso", "anterior", "posterior", "left", "right", "superior", "inferior"]
# Direction from the scene centre to the camera (world RAS) and the screen's up vector.
# "anterior" and "inferior" follow the radiological convention: the patient's right is on the screen's left.
_VIEWS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "iso": ((-0.5, 1.0, 0.45), (0.0, 0.0, 1.0)),
    "anterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "posterior": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    "left": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "right": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "superior": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "inferior": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
}


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle surface in world coordinates.

    Attributes:
        vertices: float32 ``(N, 3)``, world mm, RAS+ (x → patient's right, y → anterior, z → superior).
        faces: int32 ``(M, 3)``, vertex indices of each triangle, counter-clockwise seen from outside
            (outward normals) for closed surfaces.
        name: legend label, e.g. ``"PET SUV ≥ 4"``.
        color: ``"#RRGGBB"``.
        opacity: 0 (invisible) to 1 (opaque).

    The arrays are read-only; use :func:`dataclasses.replace` to change the style.
    """

    vertices: np.ndarray
    faces: np.ndarray
    name: str = "mesh"
    color: str = BODY_COLOR
    opacity: float = 1.0

    def __post_init__(self) -> None:
        vertices = np.array(self.vertices, dtype=np.float32).reshape(-1, 3)
        faces = np.array(self.faces, dtype=np.int32).reshape(-1, 3)
        if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
            raise ValueError(f"mesh {self.name!r}: face indices must lie in [0, {len(vertices)})")
        if not _HEX.match(self.color):
            raise ValueError(f"mesh {self.name!r}: color must be '#RRGGBB', not {self.color!r}")
        if not 0.0 <= float(self.opacity) <= 1.0:
            raise ValueError(f"mesh {self.name!r}: opacity must lie in [0, 1], not {self.opacity}")
        vertices.setflags(write=False)
        faces.setflags(write=False)
        object.__setattr__(self, "vertices", vertices)
        object.__setattr__(self, "faces", faces)
        object.__setattr__(self, "opacity", float(self.opacity))

    @classmethod
    def empty(cls, *, name: str, color: str = BODY_COLOR, opacity: float = 1.0) -> Mesh:
        """A mesh with no vertices and no faces (e.g. no voxel above the level)."""
        return cls(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), name=name, color=color,
                   opacity=opacity)

    @property
    def n_triangles(self) -> int:
        return int(self.faces.shape[0])

    @property
    def n_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def is_empty(self) -> bool:
        return self.n_triangles == 0

    def _corners(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = self.vertices.astype(np.float64)
        return v[self.faces[:, 0]], v[self.faces[:, 1]], v[self.faces[:, 2]]

    def area_mm2(self) -> float:
        """Total surface area (mm²)."""
        if self.is_empty:
            return 0.0
        a, b, c = self._corners()
        return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())

    def centroid(self) -> np.ndarray:
        """Area-weighted centre of the surface, ``(3,)`` world mm (NaN for an empty mesh)."""
        if self.is_empty:
            return np.full(3, np.nan)
        a, b, c = self._corners()
        weights = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
        if weights.sum() <= 0:
            return self.vertices.astype(np.float64).mean(axis=0)
        return ((a + b + c) / 3.0 * weights[:, None]).sum(axis=0) / weights.sum()

    def enclosed_volume_mm3(self) -> float:
        """Volume enclosed by the surface (mm³; divergence theorem, meaningful for closed surfaces)."""
        if self.is_empty:
            return 0.0
        a, b, c = self._corners()
        return float(abs(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6.0)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` world corners (mm), each ``(3,)``; NaN for an empty mesh."""
        if self.n_vertices == 0:
            return np.full(3, np.nan), np.full(3, np.nan)
        return self.vertices.min(axis=0).astype(float), self.vertices.max(axis=0).astype(float)

    def to_polydata(self) -> pv.PolyData:
        """The same surface as a :class:`pyvista.PolyData` (points in world mm)."""

        cells = np.hstack([np.full((self.n_triangles, 1), 3, np.int64), self.faces.astype(np.int64)])
        return pv.PolyData(np.array(self.vertices), faces=cells.ravel())

    @classmethod
    def from_polydata(cls, poly: pv.PolyData, *, name: str, color: str = BODY_COLOR,
                      opacity: float = 1.0) -> Mesh:
        """Mesh of the polygons of ``poly`` (triangulated; lines and vertices are dropped)."""
        if poly.n_cells == 0 or np.asarray(poly.faces).size == 0:
            return cls.empty(name=name, color=color, opacity=opacity)
        tri = poly if poly.is_all_triangles else poly.triangulate()
        faces = np.asarray(tri.faces).reshape(-1, 4)[:, 1:]
        return cls(np.asarray(tri.points), faces, name=name, color=color, opacity=opacity)


# ----------------------------------------------------------------------------- public surfaces


def body_surface(ct: np.ndarray, affine: np.ndarray, *, level_hu: float = -300.0,
                 max_triangles: int = 120_000, name: str = "Body surface", color: str = BODY_COLOR,
                 opacity: float = 0.15) -> Mesh:
    """The skin surface of the CT.

    Voxels above ``level_hu`` (HU) are counted per block of the CT grid coarsened to
    at most ``BODY_MAX_VOXELS`` voxels (the fraction inside each block keeps the
    boundary's sub-voxel position). Holes are filled slice by slice in the plane
    closest to axial (lungs, bowel gas, trachea), only the largest connected
    component is kept (drops the table and noise), the fraction is smoothed lightly
    (Gaussian, 1 voxel at full resolution, 0.6 when coarsened) and contoured at 0.5.
    Where the body leaves the field of view the surface is closed by a flat cap.

    Args:
        ct: ``(I, J, K)`` HU.
        affine: ``(4, 4)`` voxel index → world mm, RAS+.
        level_hu: air/tissue threshold (HU).
        max_triangles: hard upper limit on the triangle count.

    Returns:
        The surface in world mm; empty when no voxel exceeds ``level_hu``.
    """

    volume, affine = _check_volume(ct, affine, what="CT")
    _check_level(level_hu, "level_hu")
    _check_budget(max_triangles)
    factors = _factors_for_voxels(volume.shape, _spacing(affine), BODY_MAX_VOXELS)
    fraction, transform = _block_mean(volume > level_hu, factors)  # NaN counts as air
    affine = affine @ transform
    solid = fraction > 0.5
    if not solid.any():
        return Mesh.empty(name=name, color=color, opacity=opacity)
    filled = _fill_holes_in_slices(solid, axis=_axial_axis(affine))
    labels, count = ndimage.label(filled)
    if count > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        filled = labels == int(np.argmax(sizes))
    field = fraction
    field[filled & ~solid] = 1.0  # filled holes
    field[~ndimage.binary_dilation(filled)] = 0.0  # everything not touching the body
    sigma = 1.0 if factors == (1, 1, 1) else 0.6
    field = ndimage.gaussian_filter(field, sigma=sigma, mode="nearest")
    labels, count = ndimage.label(field > 0.5)  # smoothing may leave islands: keep one surface
    if count > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        field[~ndimage.binary_dilation(labels == int(np.argmax(sizes)))] = 0.0
    return _surface(field, affine, level=0.5, max_triangles=max_triangles, name=name, color=color,
                    opacity=opacity, smooth_iterations=10)


def pet_hotspots(pet_suv: np.ndarray, affine: np.ndarray, *, suv_level: float, max_triangles: int = 50_000,
                 name: str | None = None, color: str = PET_COLOR, opacity: float = 0.9) -> Mesh:
    """Isosurface of the PET where SUV exceeds ``suv_level``.

    Args:
        pet_suv: ``(I, J, K)`` SUVbw (g/mL).
        affine: ``(4, 4)`` voxel index → world mm, RAS+.
        suv_level: SUV threshold.
        max_triangles: hard upper limit on the triangle count.

    Returns:
        The surface in world mm, named ``"PET SUV ≥ <level>"`` by default; a mesh
        with 0 faces (never an exception) when no voxel exceeds the level.
    """
    _check_level(suv_level, "suv_level")
    label = name if name is not None else f"PET SUV ≥ {suv_level:.3g}"
    return isosurface(pet_suv, affine, level=suv_level, name=label, color=color, opacity=opacity,
                      max_triangles=max_triangles)


def isosurface(volume: np.ndarray, affine: np.ndarray, *, level: float, name: str, color: str,
               opacity: float = 0.6, max_triangles: int = 50_000) -> Mesh:
    """Generic isosurface of ``volume`` at ``level`` (e.g. a Grad-CAM map in [0, 1] at 0.5).

    Args:
        volume: ``(I, J, K)`` any scalar (NaN counts as below the level).
        affine: ``(4, 4)`` voxel index → world mm, RAS+.
        level: the surface encloses the voxels with values above it.
        max_triangles: hard upper limit on the triangle count.

    Returns:
        The surface in world mm (empty when nothing exceeds ``level``).
    """
    data, affine = _check_volume(volume, affine, what=name)
    _check_level(level, "level")
    _check_budget(max_triangles)
    return _surface(data, affine, level=float(level), max_triangles=max_triangles, name=name, color=color,
                    opacity=opacity)


def case_scene(ct: np.ndarray | None, ct_affine: np.ndarray | None, pet: np.ndarray | None,
               pet_affine: np.ndarray | None, cam: np.ndarray | None, cam_affine: np.ndarray | None, *,
               suv_level: float, cam_level: float = 0.5, max_triangles_total: int = 200_000,
               map_name: str = "Grad-CAM") -> list[Mesh]:
    """Body surface, PET hotspots and the isosurface of one map (Grad-CAM, lesion contributions, read-outs).

    Each image keeps its own grid and affine; all meshes share the world frame
    (mm, RAS+). PET and the map get up to a quarter of the budget each, the body
    what they leave. A modality passed as ``None`` is left out of the list.

    Args:
        ct, ct_affine: ``(I, J, K)`` HU and its ``(4, 4)`` affine.
        pet, pet_affine: ``(I', J', K')`` SUVbw and its affine.
        cam, cam_affine: the map in [0, 1] (usually on the CT grid) and its affine.
        suv_level: SUV threshold of the PET hotspots.
        cam_level: the map's threshold.
        max_triangles_total: hard limit on the sum of all triangle counts.
        map_name: the map's name in the legend (``"<map_name> ≥ <cam_level>"``), e.g. "Lesion contribution" or
            "Read-out map PET": the 3D view names the map it shows, never "Grad-CAM" for another map.

    Returns:
        ``[body, PET hotspots, map]`` (those given), possibly with empty meshes.
    """
    if max_triangles_total < 4 * MIN_TRIANGLES:
        raise ValueError(f"max_triangles_total must be at least {4 * MIN_TRIANGLES}, not {max_triangles_total}")
    quarter = max_triangles_total // 4
    pet_mesh = cam_mesh = body = None
    if pet is not None:
        pet_mesh = pet_hotspots(pet, _need(pet_affine, "pet_affine"), suv_level=suv_level, max_triangles=quarter)
    if cam is not None:
        cam_mesh = isosurface(cam, _need(cam_affine, "cam_affine"), level=cam_level,
                              name=f"{map_name} ≥ {cam_level:.3g}", color=CAM_COLOR, opacity=0.7,
                              max_triangles=quarter)
    if ct is not None:
        used = sum(m.n_triangles for m in (pet_mesh, cam_mesh) if m is not None)
        body = body_surface(ct, _need(ct_affine, "ct_affine"), max_triangles=max_triangles_total - used)
    return [m for m in (body, pet_mesh, cam_mesh) if m is not None]


def lesion_surfaces(labels: np.ndarray, affine: np.ndarray, status: Mapping[int, str], *,
                    max_triangles: int = 40_000, opacity: float = 0.9) -> list[Mesh]:
    """One surface per SSTR status around the delineated lesions, coloured as the slice outlines.

    Each status's lesions are contoured at the voxel boundaries (binary mask at 0.5) and smoothed lightly
    (Taubin, volume-preserving), within its share of ``max_triangles``.

    Args:
        labels: int ``(I, J, K)`` lesion ids (0 = none), e.g. ``Measurement.lesion_labels`` on the CT grid.
        affine: ``(4, 4)`` voxel index → world mm, RAS+.
        status: lesion id → ``"SSTR-positive"`` or ``"SSTR-negative"``; ids without a status are left out.
        max_triangles: hard limit on the sum of the triangle counts.

    Returns:
        ``[SSTR-positive lesions, SSTR-negative lesions]`` for the statuses that occur in ``status`` (a
        status whose lesions have no voxel gives an empty mesh, named in the 3D view's title).
    """
    data, affine = _check_labels(labels, affine, what="lesion labels")
    unknown = sorted(set(status.values()) - set(STATUS_COLORS))
    if unknown:
        raise ValueError(f"lesion status must be one of {sorted(STATUS_COLORS)}, not {unknown}")
    groups = {s: [int(i) for i, v in status.items() if v == s] for s in STATUS_COLORS if s in status.values()}
    budget = max(MIN_TRIANGLES, max_triangles // max(len(groups), 1))
    return [_label_surface(data, affine, ids, name=f"{s} lesions", color=STATUS_COLORS[s], opacity=opacity,
                           max_triangles=budget) for s, ids in groups.items()]


def organ_surfaces(labels: np.ndarray, affine: np.ndarray, names: Mapping[int, str], *,
                   max_triangles: int = 60_000, opacity: float = 0.25) -> list[Mesh]:
    """One translucent surface per named organ code that has voxels (colours of the slice outlines).

    Args:
        labels: int ``(I, J, K)`` organ codes (0 = none), e.g. ``OrganMasks.labels`` on the CT grid.
        affine: ``(4, 4)`` voxel index → world mm, RAS+.
        names: code → organ name (:data:`pfs_core.io.organs.ORGANS`).
        max_triangles: hard limit on the sum of the triangle counts.
    """
    data, affine = _check_labels(labels, affine, what="organ labels")
    present = [int(c) for c in sorted(names) if 0 < int(c) <= int(data.max(initial=0))]
    boxes = ndimage.find_objects(data) if present else []
    present = [c for c in present if c <= len(boxes) and boxes[c - 1] is not None]
    budget = max(MIN_TRIANGLES, max_triangles // max(len(present), 1))
    return [_label_surface(data, affine, [c], name=organ_label(names[c]),
                           color=ORGAN_COLORS.get(names[c], OTHER_ORGAN_COLOR), opacity=opacity, max_triangles=budget)
            for c in present]


def _label_surface(labels: np.ndarray, affine: np.ndarray, ids: Sequence[int], *, name: str, color: str,
                   opacity: float, max_triangles: int) -> Mesh:
    """Smoothed boundary surface of the voxels whose label is in ``ids`` (computed inside their bounding box)."""
    inside = np.isin(labels, ids) if ids else np.zeros(labels.shape, dtype=bool)
    found = ndimage.find_objects(inside.astype(np.uint8))
    if not found or found[0] is None:
        return Mesh.empty(name=name, color=color, opacity=opacity)
    box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(found[0], labels.shape, strict=True))
    shift = np.eye(4)
    shift[:3, 3] = [s.start for s in box]
    return _surface(inside[box].astype(np.float32), affine @ shift, level=0.5, max_triangles=max_triangles, name=name,
                    color=color, opacity=opacity, smooth_iterations=10)


def render_png(meshes: Sequence[Mesh], path: Path | str, *, size: tuple[int, int] = (800, 800),
               view: View = "iso", background: str = "white", legend: bool = True) -> Path:
    """Render the meshes off-screen (pyvista, no display needed) into a PNG for reports.

    Args:
        meshes: surfaces in world mm (empty ones are skipped).
        path: output ``.png``; its folder is created when missing.
        size: ``(width, height)`` in pixels.
        view: camera direction; ``"anterior"`` and ``"inferior"`` show the patient's right on
            the image's left (radiological convention), ``"iso"`` is an anterior oblique view.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """

    if view not in _VIEWS:
        raise ValueError(f"view must be one of {sorted(_VIEWS)}, not {view!r}")
    width, height = (int(s) for s in size)
    if width < 16 or height < 16:
        raise ValueError(f"size must be at least 16x16 pixels, not {size}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    shown = [m for m in meshes if not m.is_empty]
    direction, up = _VIEWS[view]
    with _RENDER_LOCK:
        plotter: Any = pv.Plotter(off_screen=True, window_size=[width, height])  # pyvista's decorators confuse mypy
        try:
            plotter.set_background(background)
            for mesh in shown:
                plotter.add_mesh(mesh.to_polydata(), color=mesh.color, opacity=mesh.opacity,
                                 smooth_shading=True, name=mesh.name)
            if not shown:
                plotter.add_text("No surface to show", position="upper_left", font_size=12, color="black")
            elif legend:
                plotter.add_legend([[m.name, _legible(m.color)] for m in shown], bcolor=background, face="rectangle")
            plotter.add_axes(xlabel="R", ylabel="A", zlabel="S")
            plotter.view_vector(direction, viewup=up)
            plotter.screenshot(str(out))
        finally:
            plotter.close()
    return out


def _legible(hex_color: str) -> str:
    """The colour, darkened when too light to read on white (legend text takes the entry's colour)."""
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)], float)
    luminance = float(rgb @ np.array([0.2126, 0.7152, 0.0722])) / 255.0
    if luminance > 0.6:
        rgb *= 0.6 / luminance
    return "#" + "".join(f"{int(round(v)):02X}" for v in rgb)


# ----------------------------------------------------------------------------- contouring


def _surface(volume: np.ndarray, affine: np.ndarray, *, level: float, max_triangles: int, name: str,
             color: str, opacity: float, smooth_iterations: int = 0) -> Mesh:
    """Contour ``volume`` at ``level``, map to world mm, fit the triangle budget."""
    spacing = _spacing(affine)
    volume, offset = _crop_to_level(volume, level)
    if volume.size == 0:
        return Mesh.empty(name=name, color=color, opacity=opacity)
    factors = (1, 1, 1)
    while True:
        grid, transform = _block_mean(volume, factors)
        transform = offset @ transform
        poly = _contour_index_space(grid, level)
        if poly.n_cells == 0:
            return Mesh.empty(name=name, color=color, opacity=opacity)
        ratio = poly.n_cells / max_triangles
        if ratio <= _OVERSHOOT or max(grid.shape) <= 4:
            break
        factors = _coarser(factors, spacing, math.sqrt(ratio / 2.0))
    world = affine @ transform
    points = np.asarray(poly.points, dtype=np.float64)
    poly.points = points @ world[:3, :3].T + world[:3, 3]
    faces = np.asarray(poly.faces).reshape(-1, 4)[:, 1:]
    if np.linalg.det(world[:3, :3]) < 0:  # a mirrored grid turns the winding inside out
        faces = faces[:, ::-1]
    mesh = Mesh(np.asarray(poly.points), faces, name=name, color=color, opacity=opacity)
    mesh = _fit_budget(mesh, max_triangles)
    if smooth_iterations and not mesh.is_empty:
        smoothed = mesh.to_polydata().smooth_taubin(n_iter=smooth_iterations, pass_band=0.1)
        mesh = Mesh(np.asarray(smoothed.points), mesh.faces, name=name, color=color, opacity=opacity)
    return mesh


def _crop_to_level(volume: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The box of voxels above ``level`` plus a one-voxel margin (keeps every crossing), and its index shift.

    Returns the cropped view (empty when no voxel exceeds the level) and the 4x4
    map from cropped to original voxel indices.
    """
    above = volume > level  # NaN compares False
    shift = np.eye(4)
    if not above.any():
        return volume[:0, :0, :0], shift
    box = []
    for axis in range(3):
        hits = np.flatnonzero(above.any(axis=tuple(a for a in range(3) if a != axis)))
        start, stop = max(int(hits[0]) - 1, 0), min(int(hits[-1]) + 2, volume.shape[axis])
        box.append(slice(start, stop))
        shift[axis, 3] = start
    return volume[tuple(box)], shift


def _contour_index_space(volume: np.ndarray, level: float) -> pv.PolyData:
    """Flying-edges isosurface of ``volume`` with points in voxel index units (padded by one voxel)."""

    finite = volume[np.isfinite(volume)]
    top = float(finite.max()) if finite.size else level
    # Far below the level: the cap of an edge-touching surface then sits at the outermost voxel centres.
    pad_value = level - 100.0 * max(abs(top - level), abs(level), 1.0)
    data = np.nan_to_num(volume, nan=pad_value, posinf=top, neginf=pad_value)
    data = np.pad(data, 1, mode="constant", constant_values=pad_value).astype(np.float32)
    grid = pv.ImageData(dimensions=data.shape, origin=(-1.0, -1.0, -1.0))
    grid.point_data["value"] = data.ravel(order="F")
    return grid.contour([level], scalars="value", method="flying_edges", compute_normals=False,
                        compute_scalars=False)


def _fit_budget(mesh: Mesh, max_triangles: int) -> Mesh:
    """Reduce ``mesh`` below ``max_triangles`` with VTK quadric clustering (coarser bins until it fits)."""
    if mesh.n_triangles <= max_triangles:
        return mesh

    low, high = mesh.bounds()
    extent = np.maximum(high - low, 1e-3)
    cell = math.sqrt(2.0 * mesh.area_mm2() / max_triangles)  # clustering leaves ~ 2 triangles per bin crossed
    poly = mesh.to_polydata()
    for _ in range(40):
        divisions = [max(2, int(e / cell)) for e in extent]
        clustering = vtkQuadricClustering()
        clustering.SetInputData(poly)
        clustering.AutoAdjustNumberOfDivisionsOff()
        clustering.SetNumberOfDivisions(*divisions)
        clustering.CopyCellDataOff()
        clustering.Update()
        reduced = Mesh.from_polydata(pv.wrap(clustering.GetOutput()), name=mesh.name, color=mesh.color,
                                     opacity=mesh.opacity)
        if reduced.n_triangles <= max_triangles:
            return reduced
        cell *= max(1.05, 1.03 * math.sqrt(reduced.n_triangles / max_triangles))
    raise RuntimeError(f"could not reduce {mesh.name!r} to {max_triangles} triangles")  # pragma: no cover


# ----------------------------------------------------------------------------- grids


def _block_mean(volume: np.ndarray, factors: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``volume`` over blocks of ``factors`` voxels, float32 (of a bool mask: the fraction of True).

    Returns the coarse volume and the 4x4 map from its voxel indices to the original voxel indices (block
    centres). The grid is edge-padded to whole blocks first: ``block_reduce`` would pad with a constant,
    which pulls the last blocks toward it and moves a surface that leaves the field of view.
    """
    if all(f == 1 for f in factors):
        return np.asarray(volume, dtype=np.float32), np.eye(4)
    pad = [(0, (-n) % f) for n, f in zip(volume.shape, factors, strict=True)]
    padded = np.pad(volume, pad, mode="edge") if any(p[1] for p in pad) else volume
    coarse = block_reduce(padded, factors, func=np.mean, func_kwargs={"dtype": np.float32})
    transform = np.eye(4)
    for axis, f in enumerate(factors):
        transform[axis, axis] = f
        transform[axis, 3] = (f - 1) / 2.0
    return coarse, transform


def _factors_for_voxels(shape: tuple[int, ...], spacing: np.ndarray, max_voxels: int) -> tuple[int, int, int]:
    """Smallest block factors (finest axes first) that bring the grid to at most ``max_voxels``."""
    factors = (1, 1, 1)
    while math.prod(math.ceil(n / f) for n, f in zip(shape, factors, strict=True)) > max_voxels:
        factors = _coarser(factors, spacing, 1.25)
    return factors


def _coarser(factors: tuple[int, int, int], spacing: np.ndarray, scale: float) -> tuple[int, int, int]:
    """Block factors whose voxels are ``scale`` times larger, growing the finest axes first (at least one step)."""
    effective = np.asarray(factors) * spacing
    target = max(float(np.exp(np.log(effective).mean())) * max(scale, 1.0), float(effective.min()) * 1.01)
    new = tuple(max(f, int(round(target / s))) for f, s in zip(factors, spacing, strict=True))
    if new == factors:
        finest = int(np.argmin(effective))
        new = tuple(f + (1 if axis == finest else 0) for axis, f in enumerate(factors))
    return new  # type: ignore[return-value]


def _fill_holes_in_slices(mask: np.ndarray, *, axis: int) -> np.ndarray:
    """Fill background regions that do not touch the in-plane border of their slice (slices ⟂ ``axis``)."""

    structure = np.zeros((3, 3, 3), bool)
    index: list[slice | int] = [slice(None)] * 3
    index[axis] = 1
    structure[tuple(index)] = ndimage.generate_binary_structure(2, 1)
    labels, count = ndimage.label(~mask, structure=structure)
    if count == 0:
        return mask
    touching = np.zeros(count + 1, bool)
    for other in (a for a in range(3) if a != axis):
        for end in (0, -1):
            touching[np.take(labels, end, axis=other).ravel()] = True
    holes = ~touching[labels]
    return mask | holes


def _axial_axis(affine: np.ndarray) -> int:
    """The voxel axis closest to the world superior–inferior direction."""
    columns = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return int(np.argmax(np.abs(columns[2])))


def _spacing(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)


# ----------------------------------------------------------------------------- checks


def _check_volume(volume: np.ndarray, affine: np.ndarray, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(volume)
    if data.ndim != 3 or min(data.shape) < 2:
        raise InputError(f"{what}: expected a 3D volume with at least 2 voxels per axis, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise InputError(f"{what}: expected real numbers, got dtype {data.dtype}")
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise InputError(f"{what}: the affine must be a finite 4x4 matrix, got shape {matrix.shape}")
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-9:
        raise InputError(f"{what}: the affine is singular (zero voxel size?); check the image header")
    return data.astype(np.float32, copy=False), matrix


def _check_labels(labels: np.ndarray, affine: np.ndarray, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(labels)
    if not np.issubdtype(data.dtype, np.integer) and data.dtype != bool:
        raise InputError(f"{what}: expected integer labels, got dtype {data.dtype}")
    _check_volume(np.zeros((2, 2, 2), np.float32), affine, what=what)
    if data.ndim != 3 or min(data.shape) < 2:
        raise InputError(f"{what}: expected a 3D volume with at least 2 voxels per axis, got shape {data.shape}")
    return data.astype(np.int64, copy=False) if data.dtype == bool else data, np.asarray(affine, dtype=np.float64)


def _check_level(level: float, what: str) -> None:
    if not math.isfinite(float(level)):
        raise ValueError(f"{what} must be a finite number, not {level}")


def _check_budget(max_triangles: int) -> None:
    if int(max_triangles) < MIN_TRIANGLES:
        raise ValueError(f"max_triangles must be at least {MIN_TRIANGLES}, not {max_triangles}")


def _need(affine: np.ndarray | None, what: str) -> np.ndarray:
    if affine is None:
        raise ValueError(f"{what} is required when its volume is given")
    return affine
