"""2D views of a volume: one slice with an overlay, and the coronal maximum-intensity projection.

Volumes are shown in the radiological convention whatever their stored
orientation: the voxel axes are permuted/flipped to the nearest RAS grid
(nibabel ``io_orientation``, no resampling; an oblique grid is shown as its
nearest orthogonal one), then

- axial: viewed from the feet, anterior up, patient's right on the screen's left;
- coronal: viewed from the front, superior up, patient's right on the left;
- sagittal: viewed from the patient's left, superior up, anterior on the left.

Axes are in world millimetres with one data unit per screen unit on both axes,
so the aspect ratio follows the voxel spacing. ``index`` counts slices in RAS
order (0 = most right / posterior / inferior slice); :func:`slice_count` gives
the number of slices for a slider.

Label maps on the same grid (lesions coloured by SSTR status, organs as an optional
layer) are drawn as outlines (:class:`Outlines`): one line trace per SSTR status and
one dotted trace per organ, contoured at the voxel boundaries (scikit-image
``find_contours`` at 0.5 between voxel centres).

The PET/CT viewer (:func:`fused_slice_figure`, :func:`clickable_mip_figure`) shares one crosshair point, a
voxel index ``(i, j, k)`` of the CT grid as stored; :func:`to_ras_index` / :func:`from_ras_index` turn it into
the RAS slice indices of the three planes and back, :func:`mip_pick` turns a click on the projection into a
voxel, and :func:`label_centres` gives each lesion's centre voxel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import plotly.graph_objects as go
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform
from scipy import ndimage
from skimage.measure import find_contours

from pfs_core.errors import InputError
from pfs_core.viz._style import FONT

Axis = Literal["axial", "coronal", "sagittal"]
BackgroundKind = Literal["ct", "pet"]
CT_WINDOW_HU = (-160.0, 240.0)  # soft tissue: level 40, width 400
GREY = [[0.0, "rgb(0, 0, 0)"], [1.0, "rgb(255, 255, 255)"]]
INVERSE_GREY = [[0.0, "rgb(255, 255, 255)"], [1.0, "rgb(0, 0, 0)"]]
_NORMAL = {"sagittal": 0, "coronal": 1, "axial": 2}  # RAS axis perpendicular to the slice
# In-plane RAS axes (screen x, screen y) and the letters at the left, right, bottom and top edges.
# Screen x always runs against its RAS axis (radiological convention), screen y with it.
_PLANE = {
    "axial": (0, 1, ("R", "L", "P", "A")),
    "coronal": (0, 2, ("R", "L", "I", "S")),
    "sagittal": (1, 2, ("A", "P", "I", "S")),
}
_AXIS_NAMES = ("x", "y", "z")
#: Outline colour per SSTR status (Okabe & Ito: vermillion and sky blue, told apart with every colour-vision
#: deficiency and visible on both the dark CT and the white PET projection). Used by the 3D view too.
STATUS_COLORS: dict[str, str] = {"SSTR-positive": "#D55E00", "SSTR-negative": "#56B4E9"}
#: Organ outline colours (dotted lines, so they never read as lesions).
ORGAN_COLORS: dict[str, str] = {
    "liver": "#009E73", "spleen": "#CC79A7", "kidney_right": "#F0E442", "kidney_left": "#F0E442",
    "urinary_bladder": "#0072B2", "pancreas": "#E69F00", "adrenal_gland_right": "#999999",
    "adrenal_gland_left": "#999999",
}
OTHER_ORGAN_COLOR = "#BBBBBB"

#: CT window presets (low, high) HU by name: width/level as radiologists name them.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft tissue (W400/L40)": (-160.0, 240.0),
    "liver (W150/L90)": (15.0, 165.0),
    "bone (W1800/L400)": (-500.0, 1300.0),
}
#: PET display ranges (SUVbw, g/mL) by name; the viewer adds an automatic one (:func:`auto_suv_range`).
SUV_RANGES: dict[str, tuple[float, float]] = {"SUV 0–10": (0.0, 10.0), "SUV 0–20": (0.0, 20.0)}
PET_TITLE = "PET SUVbw (g/mL)"
CT_TITLE = "CT (HU)"
#: PET colour scale over the CT: transparent at the bottom of the range, then dark red → red → yellow → white.
PET_FUSION_COLORS = [[0.0, "rgba(0, 0, 0, 0)"], [0.04, "rgba(96, 0, 0, 0.55)"], [0.3, "rgb(200, 0, 0)"],
                     [0.6, "rgb(255, 140, 0)"], [0.85, "rgb(255, 235, 60)"], [1.0, "rgb(255, 255, 255)"]]
CROSSHAIR_COLOR = "#00E676"
#: Figure height (px) of one viewer plane; three side by side fit a 1280-px-wide page.
VIEWER_HEIGHT = 520
_PET_FLOOR = 0.04  # PET below this fraction of its display range is not drawn (the CT shows through)

__all__ = ["CT_TITLE", "CT_WINDOWS", "ORGAN_COLORS", "PET_TITLE", "STATUS_COLORS", "SUV_RANGES", "Outlines",
           "auto_suv_range", "clickable_mip_figure", "from_ras_index", "fused_slice_figure", "hottest_voxel",
           "label_centres", "mip_figure", "mip_pick", "organ_label", "slice_count", "slice_figure", "to_ras",
           "to_ras_index"]


@dataclass(frozen=True, eq=False)
class Outlines:
    """Label maps drawn as outlines over a slice or projection; on the same grid as the background.

    Attributes:
        lesions: int ``(I, J, K)`` lesion ids (0 = no lesion), or None.
        lesion_status: lesion id → ``"SSTR-positive"`` or ``"SSTR-negative"`` (its outline colour,
            :data:`STATUS_COLORS`); ids without a status are not drawn.
        organs: int ``(I, J, K)`` organ codes (0 = none), or None to leave the organ layer out.
        organ_names: organ code → name (e.g. :data:`pfs_core.io.organs.ORGANS`); codes without a name are
            not drawn.
    """

    lesions: np.ndarray | None = None
    lesion_status: Mapping[int, str] = field(default_factory=dict)
    organs: np.ndarray | None = None
    organ_names: Mapping[int, str] = field(default_factory=dict)

    def check(self, shape: tuple[int, ...]) -> None:
        """InputError when a label map is not on a grid of ``shape``; ValueError for an unknown status."""
        for what, labels in (("lesion", self.lesions), ("organ", self.organs)):
            if labels is not None and np.shape(labels) != tuple(shape):
                raise InputError(f"the {what} label map's shape {np.shape(labels)} differs from the background's "
                                 f"{tuple(shape)}; resample it onto the background's grid first")
        unknown = sorted(set(self.lesion_status.values()) - set(STATUS_COLORS))
        if unknown:
            raise ValueError(f"lesion status must be one of {sorted(STATUS_COLORS)}, not {unknown}")


def organ_label(name: str) -> str:
    """Legend name of an organ: ``"kidney_right"`` → ``"kidney (right)"``."""
    for side in ("right", "left"):
        if name.endswith(f"_{side}"):
            return f"{name[: -len(side) - 1].replace('_', ' ')} ({side})"
    return name.replace("_", " ")


def to_ras(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip the voxel axes to the nearest RAS grid (no resampling).

    Returns the view ``(X, Y, Z)`` and its ``(4, 4)`` affine.
    """

    data = np.asarray(volume)
    matrix = np.asarray(affine, dtype=float)
    if data.ndim != 3:
        raise InputError(f"expected a 3D volume, got shape {data.shape}")
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:3, :3])) < 1e-9:
        raise InputError("the affine must be a finite, invertible 4x4 matrix; check the image header")
    transform = ornt_transform(io_orientation(matrix), axcodes2ornt("RAS"))
    return apply_orientation(data, transform), matrix @ inv_ornt_aff(transform, data.shape)


def slice_count(shape: tuple[int, ...], affine: np.ndarray, axis: Axis) -> int:
    """Number of ``axis`` slices of a volume of ``shape`` (the range of ``index`` is 0 … count − 1)."""

    ornt = io_orientation(np.asarray(affine, dtype=float))
    voxel_axis = int(np.flatnonzero(ornt[:, 0] == _NORMAL[_check_axis(axis)])[0])
    return int(shape[voxel_axis])


def slice_figure(background: np.ndarray, overlay: np.ndarray | None, *, affine: np.ndarray, axis: Axis,
                 index: int, opacity: float = 0.5, background_kind: BackgroundKind = "ct",
                 window: tuple[float, float] | None = None, pet_colormap: Literal["inverse_grey", "hot"] = "inverse_grey",
                 overlay_colorscale: str = "Jet", overlay_floor: float = 0.1, overlay_label: str = "Grad-CAM",
                 title: str | None = None, outlines: Outlines | None = None) -> go.Figure:
    """One slice of ``background`` (CT or PET) with an optional overlay and outlines on the same grid.

    Args:
        background: ``(I, J, K)`` HU (``background_kind="ct"``) or SUVbw (``"pet"``).
        overlay: ``(I, J, K)`` on the same grid (e.g. Grad-CAM in [0, 1]) or None.
        affine: ``(4, 4)`` voxel index → world mm, RAS+ (shared by both volumes).
        axis: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        index: slice in RAS order, 0 … :func:`slice_count` − 1.
        opacity: overlay opacity (0–1).
        window: display range; default CT soft tissue (−160, 240) HU, PET 0 … 99.5th percentile of the slice.
        pet_colormap: ``"inverse_grey"`` (dark = high uptake) or ``"hot"``.
        overlay_colorscale: plotly colour scale of the overlay.
        overlay_floor: overlay values below this fraction of the overlay's maximum are transparent.
        outlines: lesion (by SSTR status) and organ label maps drawn as outlines, or None.

    ``layout.meta`` holds the spacing (mm) of the screen x and y axes and the slice position (mm).
    """
    axis = _check_axis(axis)
    data, ras_affine = to_ras(background, affine)
    over = None
    if overlay is not None:
        if np.shape(overlay) != np.shape(background):
            raise InputError(f"the overlay's shape {np.shape(overlay)} differs from the background's "
                             f"{np.shape(background)}; resample it onto the background's grid first")
        over, _ = to_ras(overlay, affine)
    if outlines is not None:
        outlines.check(np.shape(background))
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], not {opacity}")
    normal = _NORMAL[axis]
    count = data.shape[normal]
    if not 0 <= int(index) < count:
        raise ValueError(f"{axis} slice index must lie in 0 … {count - 1}, not {index}")
    picked: list[slice | int] = [slice(None)] * 3
    picked[normal] = int(index)
    image = np.asarray(data[tuple(picked)], dtype=np.float32)
    sx_axis, sy_axis, letters = _PLANE[axis]
    x_mm, y_mm = _coordinates(ras_affine, data.shape, sx_axis), _coordinates(ras_affine, data.shape, sy_axis)
    position = float((ras_affine @ np.array([*(int(index) if a == normal else 0 for a in range(3)), 1.0]))[normal])
    low, high, colorscale, unit = _background_style(image, background_kind, window, pet_colormap)
    heading = title or f"{axis.capitalize()} slice {int(index)} of {count - 1} ({_AXIS_NAMES[normal]} = {position:.1f} mm)"
    fig = _image_figure(heading, dark=background_kind == "ct" or pet_colormap == "hot")
    fig.add_trace(go.Heatmap(z=image.T, x=x_mm, y=y_mm, zmin=low, zmax=high, colorscale=colorscale,
                             showscale=False, name=background_kind.upper(),
                             hovertemplate="%{x:.1f}, %{y:.1f} mm<br>%{z:.1f} " + unit + "<extra></extra>"))
    if over is not None:
        layer = np.asarray(over[tuple(picked)], dtype=np.float32)
        _add_overlay(fig, layer.T, x_mm, y_mm, opacity=opacity, colorscale=overlay_colorscale,
                     floor=overlay_floor, label=overlay_label)
    if outlines is not None:
        _add_outlines(fig, outlines, affine, x_mm, y_mm, lambda labels: labels[tuple(picked)])
    spacing = (float(abs(x_mm[1] - x_mm[0])) if x_mm.size > 1 else 1.0,
               float(abs(y_mm[1] - y_mm[0])) if y_mm.size > 1 else 1.0)
    _orient_axes(fig, x_mm, y_mm, letters=letters, x_name=_AXIS_NAMES[sx_axis], y_name=_AXIS_NAMES[sy_axis])
    fig.update_layout(meta={"axis": axis, "index": int(index), "position_mm": position, "spacing_mm": spacing})
    return fig


def mip_figure(pet_suv: np.ndarray, overlay: np.ndarray | None, *, affine: np.ndarray, opacity: float = 0.5,
               suv_max: float | None = None, overlay_colorscale: str = "Jet", overlay_floor: float = 0.1,
               overlay_label: str = "Grad-CAM", title: str = "PET maximum-intensity projection (coronal)",
               outlines: Outlines | None = None) -> go.Figure:
    """Coronal maximum-intensity projection of the PET (inverse grey) with the overlay's MIP.

    Args:
        pet_suv: ``(I, J, K)`` SUVbw.
        overlay: ``(I, J, K)`` on the PET grid, or None.
        affine: ``(4, 4)`` voxel index → world mm, RAS+.
        opacity: overlay opacity (0–1).
        suv_max: top of the grey scale (SUV); default the 99.5th percentile of the projection (at least 1).
        outlines: label maps on the PET grid; each lesion and organ is outlined where it projects.
    """
    if outlines is not None:
        outlines.check(np.shape(pet_suv))
    data, ras_affine = to_ras(pet_suv, affine)
    mip = np.nan_to_num(np.asarray(data, dtype=np.float32)).max(axis=1)  # (X, Z), projected along y
    top = float(suv_max) if suv_max is not None else max(1.0, float(np.percentile(mip, 99.5)))
    x_mm, z_mm = _coordinates(ras_affine, data.shape, 0), _coordinates(ras_affine, data.shape, 2)
    fig = _image_figure(title, dark=False)
    fig.add_trace(go.Heatmap(z=mip.T, x=x_mm, y=z_mm, zmin=0.0, zmax=top, colorscale=INVERSE_GREY,
                             name="PET MIP", colorbar={"title": {"text": "SUV"}, "x": 1.0, "len": 0.45, "y": 0.25},
                             hovertemplate="%{x:.1f}, %{y:.1f} mm<br>SUV max %{z:.1f}<extra></extra>"))
    if overlay is not None:
        if np.shape(overlay) != np.shape(pet_suv):
            raise InputError(f"the overlay's shape {np.shape(overlay)} differs from the PET's {np.shape(pet_suv)}; "
                             "resample it onto the PET grid first")
        over, _ = to_ras(overlay, affine)
        _add_overlay(fig, np.nan_to_num(np.asarray(over, dtype=np.float32)).max(axis=1).T, x_mm, z_mm,
                     opacity=opacity, colorscale=overlay_colorscale, floor=overlay_floor, label=overlay_label)
    if outlines is not None:
        _add_outlines(fig, outlines, affine, x_mm, z_mm, lambda labels: labels, project=True)
    _orient_axes(fig, x_mm, z_mm, letters=_PLANE["coronal"][2], x_name="x", y_name="z")
    fig.update_layout(meta={"suv_max": top})
    return fig


# ----------------------------------------------------------------------------- the PET/CT viewer


Voxel = tuple[int, int, int]


def _ras_transform(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    return ornt_transform(io_orientation(np.asarray(affine, dtype=float)), axcodes2ornt("RAS"))


def to_ras_index(voxel: Voxel, shape: tuple[int, ...], affine: np.ndarray) -> Voxel:
    """The index ``(x, y, z)`` in the RAS view (:func:`to_ras`) of the stored voxel ``(i, j, k)``.

    ``x``/``y``/``z`` are the sagittal/coronal/axial slice indices of :func:`slice_figure` and
    :func:`fused_slice_figure`.
    """
    transform = _ras_transform(shape, affine)
    out = [0, 0, 0]
    for axis, (target, flip) in enumerate(transform):
        value = int(voxel[axis])
        out[int(target)] = shape[axis] - 1 - value if flip < 0 else value
    return out[0], out[1], out[2]


def from_ras_index(ras: Voxel, shape: tuple[int, ...], affine: np.ndarray) -> Voxel:
    """The stored voxel ``(i, j, k)`` of the RAS-view index ``(x, y, z)`` (inverse of :func:`to_ras_index`)."""
    transform = _ras_transform(shape, affine)
    out = [0, 0, 0]
    for axis, (target, flip) in enumerate(transform):
        value = int(ras[int(target)])
        out[axis] = shape[axis] - 1 - value if flip < 0 else value
    return out[0], out[1], out[2]


def label_centres(labels: np.ndarray) -> dict[int, Voxel]:
    """Each label's centre voxel ``(i, j, k)``: the voxel of the label nearest to its centroid (so inside it)."""
    data = np.asarray(labels)
    if data.ndim != 3:
        raise InputError(f"expected a 3D label map, got shape {data.shape}")
    centres: dict[int, Voxel] = {}
    boxes = ndimage.find_objects(np.clip(data, 0, None).astype(np.int64, copy=False))
    for code, box in enumerate(boxes, start=1):
        if box is None:
            continue
        inside = np.argwhere(data[box] == code)
        if not inside.size:
            continue
        nearest = inside[int(np.argmin(((inside - inside.mean(axis=0)) ** 2).sum(axis=1)))]
        centres[code] = tuple(int(n + s.start) for n, s in zip(nearest, box, strict=True))  # type: ignore[assignment]
    return centres


def hottest_voxel(volume: np.ndarray) -> Voxel:
    """The voxel ``(i, j, k)`` of the largest finite value (the first one on ties)."""
    data = np.nan_to_num(np.asarray(volume, dtype=np.float32), nan=-np.inf)
    index = np.unravel_index(int(np.argmax(data)), data.shape)
    return int(index[0]), int(index[1]), int(index[2])


def auto_suv_range(pet_suv: np.ndarray) -> tuple[float, float]:
    """(0, 99.9th percentile of the PET above SUV 0.5), at least (0, 2): the automatic PET display range."""
    data = np.asarray(pet_suv, dtype=np.float32)
    uptake = data[np.isfinite(data) & (data > 0.5)]
    top = float(np.percentile(uptake, 99.9)) if uptake.size else 2.0
    return 0.0, max(2.0, round(top, 1))


def mip_pick(pet_suv: np.ndarray, *, affine: np.ndarray, x_mm: float, z_mm: float, radius: int = 0) -> Voxel:
    """The voxel ``(i, j, k)`` a click at ``(x_mm, z_mm)`` on :func:`clickable_mip_figure` points to.

    Its x and z are those of the click (nearest voxel column); its y is that of the hottest voxel along the
    projection ray. With ``radius`` > 0 the hottest ray within ± ``radius`` voxels in x and z is taken (so a click
    on a click-layer point finds the lesion it covers).
    """
    data, ras_affine = to_ras(pet_suv, affine)
    xs, zs = _coordinates(ras_affine, data.shape, 0), _coordinates(ras_affine, data.shape, 2)
    xi, zi = int(np.argmin(np.abs(xs - float(x_mm)))), int(np.argmin(np.abs(zs - float(z_mm))))
    if radius > 0:
        box = (slice(max(xi - radius, 0), xi + radius + 1), slice(None), slice(max(zi - radius, 0), zi + radius + 1))
        block = np.nan_to_num(np.asarray(data[box], dtype=np.float32), nan=-np.inf)
        bx, yi, bz = np.unravel_index(int(np.argmax(block)), block.shape)
        xi, zi = int(bx) + box[0].start, int(bz) + box[2].start
        return from_ras_index((xi, int(yi), zi), np.shape(pet_suv), affine)
    ray = np.nan_to_num(np.asarray(data[xi, :, zi], dtype=np.float32), nan=-np.inf)
    return from_ras_index((xi, int(np.argmax(ray)), zi), np.shape(pet_suv), affine)


def fused_slice_figure(ct: np.ndarray | None, pet: np.ndarray | None, *, affine: np.ndarray, axis: Axis, index: int,
                       ct_window: tuple[float, float] = CT_WINDOW_HU, suv_range: tuple[float, float] = (0.0, 10.0),
                       opacity: float = 0.6, overlay: np.ndarray | None = None, overlay_label: str = "Overlay",
                       overlay_opacity: float = 0.6, overlay_floor: float = 0.1, outlines: Outlines | None = None,
                       crosshair: Voxel | None = None, height: int = VIEWER_HEIGHT, max_side: int = 384) -> go.Figure:
    """One plane of the PET/CT viewer: PET in colour over the CT in grey, an overlay, outlines and a crosshair.

    Args:
        ct: ``(I, J, K)`` HU, or None (PET only, on a black background).
        pet: ``(I, J, K)`` SUVbw on the same grid (e.g. resampled onto the CT), or None (CT only).
        affine: ``(4, 4)`` voxel index → world mm, RAS+, shared by every array.
        axis: ``"axial"``, ``"coronal"`` or ``"sagittal"``; ``index``: slice in RAS order (:func:`to_ras_index`).
        ct_window: CT display range (low, high) HU (:data:`CT_WINDOWS`).
        suv_range: PET display range (low, high) SUVbw; PET below 4 % of it is transparent.
        opacity: PET opacity over the CT (0–1).
        overlay: ``(I, J, K)`` map on the same grid (e.g. lesion contributions 0–1) or None; ``overlay_label``
            is its colour bar's title (the map's own name and unit, e.g. "Lesion contribution (relative)").
        overlay_opacity, overlay_floor: as in :func:`slice_figure`.
        outlines: lesion and organ label maps on the same grid, drawn as outlines (no legend: the caller says
            which colour is which; the traces are named as in :func:`slice_figure`).
        crosshair: voxel ``(i, j, k)`` of the shared point: a vertical and a horizontal line through it.
        max_side: a plane of more voxels than this along a side is drawn every ``step``-th voxel
            (``layout.meta["step"]``): a 512-voxel CT row is more than a third of a page shows, and lighter to send.

    Colour bars lie horizontally below the image, titled :data:`PET_TITLE`, :data:`CT_TITLE` and
    ``overlay_label``. ``layout.meta`` holds the axis, index, slice position (mm) and the crosshair (mm, screen
    x and y) when given.
    """
    axis = _check_axis(axis)
    given = [a for a in (ct, pet) if a is not None]
    if not given:
        raise ValueError("fused_slice_figure needs a CT, a PET or both")
    shape = tuple(np.shape(given[0]))
    for what, array in (("PET", pet), ("overlay", overlay)):
        if array is not None and tuple(np.shape(array)) != shape:
            raise InputError(f"the {what}'s shape {np.shape(array)} differs from the CT's {shape}; resample it onto "
                             "the CT grid first")
    if outlines is not None:
        outlines.check(shape)
    for name, value in (("opacity", opacity), ("overlay_opacity", overlay_opacity)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], not {value}")
    if not (suv_range[1] > suv_range[0] and ct_window[1] > ct_window[0]):
        raise ValueError(f"display ranges must have high > low, not SUV {suv_range} and HU {ct_window}")
    normal = _NORMAL[axis]
    first, ras_affine = to_ras(given[0], affine)
    count = first.shape[normal]
    if not 0 <= int(index) < count:
        raise ValueError(f"{axis} slice index must lie in 0 … {count - 1}, not {index}")
    picked: list[slice | int] = [slice(None)] * 3
    picked[normal] = int(index)

    sx_axis, sy_axis, letters = _PLANE[axis]
    x_mm, y_mm = _coordinates(ras_affine, first.shape, sx_axis), _coordinates(ras_affine, first.shape, sy_axis)
    # A plane wider than the screen is drawn every ``step``-th voxel (outlines and crosshair keep full detail).
    step = max(1, int(np.ceil(max(x_mm.size, y_mm.size) / max(1, max_side))))
    xs, ys = x_mm[::step], y_mm[::step]

    def plane(volume: np.ndarray) -> np.ndarray:
        return np.asarray(to_ras(volume, affine)[0][tuple(picked)], dtype=np.float32).T[::step, ::step]
    position = float(ras_affine[normal, 3] + np.linalg.norm(ras_affine[:3, normal]) * int(index))
    heading = f"{axis.capitalize()} · {_AXIS_NAMES[normal]} {position:.0f} mm · {int(index) + 1}/{count}"
    fig = _image_figure(heading, dark=True)
    bars = [b for b, shown in ((CT_TITLE, ct is not None), (PET_TITLE, pet is not None),
                               (overlay_label, overlay is not None)) if shown]
    bottom = _BAR_STEP * len(bars) + 34
    area = height - _TOP - bottom  # px of the plot area; colour bars hang below it (paper y < 0)
    place = {title: -(34 + _BAR_STEP * i) / area for i, title in enumerate(bars)}
    if ct is not None:
        fig.add_trace(go.Heatmap(z=plane(ct), x=xs, y=ys, zmin=float(ct_window[0]), zmax=float(ct_window[1]),
                                 colorscale=GREY, name="CT", colorbar=_bar(CT_TITLE, place[CT_TITLE]),
                                 hovertemplate="%{x:.0f}, %{y:.0f} mm<br>CT %{z:.0f} HU<extra></extra>"))
    if pet is not None:
        low, high = float(suv_range[0]), float(suv_range[1])
        suv = plane(pet)
        shown = np.where(suv > low + _PET_FLOOR * (high - low), suv, np.nan)
        fig.add_trace(go.Heatmap(z=shown, x=xs, y=ys, zmin=low, zmax=high,
                                 colorscale=PET_FUSION_COLORS if ct is not None else "Hot", opacity=opacity,
                                 name="PET", hoverongaps=False, colorbar=_bar(PET_TITLE, place[PET_TITLE]),
                                 hovertemplate="%{x:.0f}, %{y:.0f} mm<br>PET SUV %{z:.1f}<extra></extra>"))
    if overlay is not None:
        layer = plane(overlay)
        _add_overlay(fig, layer, xs, ys, opacity=overlay_opacity, colorscale="Viridis", floor=overlay_floor,
                     label=overlay_label)
        fig.data[-1].colorbar = _bar(overlay_label, place[overlay_label])
    if outlines is not None:
        _add_outlines(fig, outlines, affine, x_mm, y_mm, lambda labels: labels[tuple(picked)])
    _orient_axes(fig, x_mm, y_mm, letters=letters, x_name=_AXIS_NAMES[sx_axis], y_name=_AXIS_NAMES[sy_axis])
    fig.update_xaxes(title_text=None, tickfont={"size": 10})
    fig.update_yaxes(title_text=None, tickfont={"size": 10})
    meta: dict[str, object] = {"axis": axis, "index": int(index), "position_mm": position, "colorbars": bars,
                               "step": step}
    if crosshair is not None:
        ras = to_ras_index(crosshair, shape, affine)
        cx, cy = float(x_mm[ras[sx_axis]]), float(y_mm[ras[sy_axis]])
        _add_crosshair(fig, cx, cy, x_mm, y_mm)
        meta["crosshair_mm"] = (cx, cy)
    fig.update_yaxes(constraintoward="bottom")  # a wide image sits on its colour bars, not half a page above
    fig.update_layout(height=height, showlegend=False, margin={"l": 40, "r": 12, "t": _TOP, "b": bottom},
                      title={"font": {"size": 13}, "yref": "container", "y": 1.0 - 40.0 / height, "yanchor": "middle"},
                      meta=meta, uirevision=axis)  # the title below the chart's tool bar, never under it
    return fig


def clickable_mip_figure(pet_suv: np.ndarray, *, affine: np.ndarray, suv_range: tuple[float, float] | None = None,
                         crosshair: Voxel | None = None, outlines: Outlines | None = None, max_points: int = 4000,
                         title: str = "PET MIP (coronal): click to centre", height: int = 560) -> go.Figure:
    """Coronal PET maximum-intensity projection with a transparent layer of clickable points and a crosshair.

    A plotly heatmap gives no selection in Streamlit (streamlit/streamlit#8760), so a sparse grid of
    invisible markers (at most ``max_points``, every ``step`` voxels in x and z; ``layout.meta["click_step"]``)
    lies over it: a click selects one, and :func:`mip_pick` with ``radius = step // 2`` turns it into a voxel.

    Args:
        pet_suv: ``(I, J, K)`` SUVbw; ``affine`` its ``(4, 4)`` voxel → world mm, RAS+.
        suv_range: grey range (inverse grey: dark = high uptake); default (0, 99.5th percentile of the MIP).
        crosshair: voxel ``(i, j, k)`` on the same grid: lines at its x and z.
        outlines: lesion/organ label maps on the same grid, projected (legend below the image).
    """
    fig = mip_figure(pet_suv, None, affine=affine, suv_max=None if suv_range is None else suv_range[1],
                     title=title, outlines=outlines)
    heatmap = fig.data[0]
    heatmap.hoverinfo = "skip"
    heatmap.hovertemplate = None
    heatmap.colorbar = {"title": {"text": PET_TITLE, "side": "right"}, "len": 0.6, "y": 0.5, "thickness": 12}
    if suv_range is not None:
        heatmap.zmin = float(suv_range[0])
    data, ras_affine = to_ras(pet_suv, affine)
    x_mm, z_mm = _coordinates(ras_affine, data.shape, 0), _coordinates(ras_affine, data.shape, 2)
    step = max(1, int(np.ceil(np.sqrt(x_mm.size * z_mm.size / max(1, max_points)))))
    xi, zi = np.meshgrid(np.arange(step // 2, x_mm.size, step), np.arange(step // 2, z_mm.size, step), indexing="ij")
    mip = np.asarray(heatmap.z, dtype=np.float32).T  # (X, Z)
    invisible = {"color": "rgba(0, 0, 0, 0)", "size": 8}
    fig.add_trace(go.Scatter(x=x_mm[xi.ravel()], y=z_mm[zi.ravel()], mode="markers", name="click layer",
                             marker=invisible, selected={"marker": {"color": "rgba(0, 0, 0, 0)"}},
                             unselected={"marker": {"color": "rgba(0, 0, 0, 0)"}}, showlegend=False,
                             customdata=mip[xi.ravel(), zi.ravel()],
                             hovertemplate="%{x:.0f}, %{y:.0f} mm<br>SUV max %{customdata:.1f}<br>click: centre the "
                                           "slices here<extra></extra>", meta={"layer": "click"}))
    meta = {**(fig.layout.meta or {}), "click_step": step}
    if crosshair is not None:
        ras = to_ras_index(crosshair, np.shape(pet_suv), affine)
        cx, cz = float(x_mm[ras[0]]), float(z_mm[ras[2]])
        _add_crosshair(fig, cx, cz, x_mm, z_mm)
        meta["crosshair_mm"] = (cx, cz)
    fig.update_layout(height=height, meta=meta, hovermode="closest", uirevision="mip",
                      margin={"l": 50, "r": 10, "t": _TOP, "b": 110 if outlines is not None else 50},
                      title={"font": {"size": 13}, "yref": "container", "y": 1.0 - 40.0 / height, "yanchor": "middle"})
    return fig


_BAR_STEP = 50  # px per horizontal colour bar (title, bar, tick labels)
_TOP = 54  # px above the plot area: the chart's tool bar (on hover), then the title


def _bar(title: str, y: float) -> dict[str, object]:
    """A horizontal colour bar whose box (title on top) starts at paper ``y`` (< 0: below the plot area)."""
    return {"title": {"text": title, "side": "top", "font": {"size": 11}}, "orientation": "h", "x": 0.5,
            "xanchor": "center", "y": y, "yanchor": "top", "len": 0.95, "thickness": 9, "tickfont": {"size": 10}}


def _add_crosshair(fig: go.Figure, x: float, y: float, x_mm: np.ndarray, y_mm: np.ndarray) -> None:
    """A vertical line at screen ``x`` and a horizontal one at screen ``y`` (mm) across the image."""
    half_x = 0.5 * (abs(x_mm[1] - x_mm[0]) if x_mm.size > 1 else 1.0)
    half_y = 0.5 * (abs(y_mm[1] - y_mm[0]) if y_mm.size > 1 else 1.0)
    line = {"color": CROSSHAIR_COLOR, "width": 1}
    fig.add_shape(type="line", x0=x, x1=x, y0=float(y_mm.min()) - half_y, y1=float(y_mm.max()) + half_y, line=line,
                  opacity=0.8, name="crosshair x")
    fig.add_shape(type="line", x0=float(x_mm.min()) - half_x, x1=float(x_mm.max()) + half_x, y0=y, y1=y, line=line,
                  opacity=0.8, name="crosshair y")


# ----------------------------------------------------------------------------- helpers


def _check_axis(axis: str) -> Axis:
    if axis not in _NORMAL:
        raise ValueError(f"axis must be 'axial', 'coronal' or 'sagittal', not {axis!r}")
    return axis  # type: ignore[return-value]


def _coordinates(ras_affine: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """World coordinate (mm) along RAS axis ``axis`` of each voxel centre (nearest-orthogonal approximation)."""
    spacing = float(np.linalg.norm(ras_affine[:3, axis]))
    return ras_affine[axis, 3] + spacing * np.arange(shape[axis], dtype=float)


def _background_style(image: np.ndarray, kind: str, window: tuple[float, float] | None,
                      pet_colormap: str) -> tuple[float, float, list | str, str]:
    if kind == "ct":
        low, high = window or CT_WINDOW_HU
        return float(low), float(high), GREY, "HU"
    if kind != "pet":
        raise ValueError(f"background_kind must be 'ct' or 'pet', not {kind!r}")
    if pet_colormap not in ("inverse_grey", "hot"):
        raise ValueError(f"pet_colormap must be 'inverse_grey' or 'hot', not {pet_colormap!r}")
    finite = image[np.isfinite(image)]
    default_top = max(1.0, float(np.percentile(finite, 99.5))) if finite.size else 1.0
    low, high = window or (0.0, default_top)
    return float(low), float(high), INVERSE_GREY if pet_colormap == "inverse_grey" else "Hot", "SUV"


def _add_overlay(fig: go.Figure, layer: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray, *, opacity: float,
                 colorscale: str, floor: float, label: str) -> None:
    """Overlay heatmap; values below ``floor`` × max become NaN (transparent)."""
    peak = float(np.nanmax(layer)) if np.isfinite(layer).any() else 0.0
    shown = np.where(layer > floor * peak, layer, np.nan) if peak > 0 else np.full_like(layer, np.nan)
    fig.add_trace(go.Heatmap(z=shown, x=x_mm, y=y_mm, zmin=0.0, zmax=peak if peak > 0 else 1.0,
                             colorscale=colorscale, opacity=opacity, name=label, hoverongaps=False,
                             colorbar={"title": {"text": label}, "x": 1.0, "len": 0.45, "y": 0.75},
                             hovertemplate="%{x:.1f}, %{y:.1f} mm<br>" + label + " %{z:.2f}<extra></extra>"))


def _add_outlines(fig: go.Figure, outlines: Outlines, affine: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray,
                  plane: Callable[[np.ndarray], np.ndarray], *, project: bool = False) -> None:
    """One line trace per SSTR status (hover: lesion id), one dotted trace per organ; a legend below the image.

    ``plane`` takes a label map in RAS order and returns the 2D screen plane ``(X, Y)`` of the slice; with
    ``project`` it gets the whole map and each label is projected along the anterior–posterior axis.
    """
    if outlines.lesions is not None and outlines.lesion_status:
        lesions = plane(to_ras(np.asarray(outlines.lesions), affine)[0])
        by_status: dict[str, list[int]] = {}
        for lesion_id, status in sorted(outlines.lesion_status.items()):
            by_status.setdefault(status, []).append(int(lesion_id))
        for status in STATUS_COLORS:
            if status not in by_status:
                continue
            lines = [(f"lesion {i} ({status})", c) for i, m in _label_planes(lesions, by_status[status], project)
                     for c in _contours(m, x_mm, y_mm)]
            fig.add_trace(_line_trace(lines, name=f"{status} lesions", color=STATUS_COLORS[status], width=2.0,
                                      dash="solid", meta={"layer": "lesions", "status": status,
                                                          "n_lesions": len(by_status[status])}))
    if outlines.organs is not None and outlines.organ_names:
        organs = plane(to_ras(np.asarray(outlines.organs), affine)[0])
        for code, masks in _label_planes(organs, sorted(int(c) for c in outlines.organ_names), project):
            name = outlines.organ_names[code]
            lines = [(organ_label(name), c) for c in _contours(masks, x_mm, y_mm)]
            fig.add_trace(_line_trace(lines, name=organ_label(name), color=ORGAN_COLORS.get(name, OTHER_ORGAN_COLOR),
                                      width=1.5, dash="dot", meta={"layer": "organs", "organ": name}))
    fig.update_layout(legend={"orientation": "h", "x": 0.0, "y": -0.14, "yanchor": "top",
                              "bgcolor": "rgba(255, 255, 255, 0.8)"}, margin={"b": 110})


def _label_planes(labels: np.ndarray, codes: list[int], project: bool) -> list[tuple[int, np.ndarray]]:
    """``(code, boolean screen plane)`` for each code: its voxels in the slice, or projected along y."""
    if not project:
        return [(code, labels == code) for code in codes]
    out = []
    labels = labels.astype(np.int64) if labels.dtype == bool or labels.min(initial=0) < 0 else labels
    boxes = ndimage.find_objects(np.clip(labels, 0, None))
    for code in codes:
        plane = np.zeros((labels.shape[0], labels.shape[2]), dtype=bool)
        box = boxes[code - 1] if 0 < code <= len(boxes) else None
        if box is not None:
            plane[box[0], box[2]] = (labels[box] == code).any(axis=1)
        out.append((code, plane))
    return out


def _contours(mask: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Closed outlines (world mm) of the boolean screen plane ``mask`` ``(X, Y)``, halfway between voxel centres."""
    if not mask.any():
        return []
    padded = np.pad(mask.astype(np.float32), 1)
    dx = float(x_mm[1] - x_mm[0]) if x_mm.size > 1 else 1.0
    dy = float(y_mm[1] - y_mm[0]) if y_mm.size > 1 else 1.0
    return [(x_mm[0] + dx * (c[:, 0] - 1.0), y_mm[0] + dy * (c[:, 1] - 1.0)) for c in find_contours(padded, 0.5)]


def _line_trace(lines: list[tuple[str, tuple[np.ndarray, np.ndarray]]], *, name: str, color: str, width: float,
                dash: str, meta: dict[str, object]) -> go.Scatter:
    """All ``(hover text, (x, y))`` polylines in one trace, separated by gaps; an empty trace keeps the legend."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    text: list[str | None] = []
    for label, (x, y) in lines:
        xs += [*x.tolist(), None]
        ys += [*y.tolist(), None]
        text += [label] * len(x) + [None]
    return go.Scatter(x=xs, y=ys, text=text, mode="lines", name=name, line={"color": color, "width": width, "dash": dash},
                      connectgaps=False, hovertemplate="%{text}<extra></extra>", showlegend=True,
                      meta={**meta, "n_outlines": len(lines)})


def _image_figure(title: str, *, dark: bool) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(template="plotly_white", title={"text": title, "x": 0.0, "xanchor": "left"},
                      font={"family": FONT, "size": 13}, margin={"l": 60, "r": 20, "t": 50, "b": 50},
                      plot_bgcolor="black" if dark else "white", height=560)
    return fig


def _orient_axes(fig: go.Figure, x_mm: np.ndarray, y_mm: np.ndarray, *, letters: tuple[str, str, str, str],
                 x_name: str, y_name: str) -> None:
    """Screen x runs against its RAS axis (radiological), screen y with it; equal mm per pixel; edge letters."""
    left, right, bottom, top = letters
    half_x = 0.5 * (abs(x_mm[1] - x_mm[0]) if x_mm.size > 1 else 1.0)
    half_y = 0.5 * (abs(y_mm[1] - y_mm[0]) if y_mm.size > 1 else 1.0)
    fig.update_xaxes(range=[float(x_mm.max()) + half_x, float(x_mm.min()) - half_x], constrain="domain",
                     title_text=f"{x_name} (mm): {left} ← → {right}", showgrid=False, zeroline=False)
    fig.update_yaxes(range=[float(y_mm.min()) - half_y, float(y_mm.max()) + half_y], scaleanchor="x", scaleratio=1,
                     constrain="domain", title_text=f"{y_name} (mm): {bottom} ↓ ↑ {top}", showgrid=False,
                     zeroline=False)
    style = {"showarrow": False, "font": {"color": "#E69F00", "size": 16, "family": FONT}, "xref": "x domain",
             "yref": "y domain"}
    fig.add_annotation(text=left, x=0.01, y=0.5, xanchor="left", **style)
    fig.add_annotation(text=right, x=0.99, y=0.5, xanchor="right", **style)
    fig.add_annotation(text=top, x=0.5, y=0.99, yanchor="top", **style)
    fig.add_annotation(text=bottom, x=0.5, y=0.01, yanchor="bottom", **style)
