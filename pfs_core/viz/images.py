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

__all__ = ["ORGAN_COLORS", "STATUS_COLORS", "Outlines", "mip_figure", "organ_label", "slice_count", "slice_figure",
           "to_ras"]


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
