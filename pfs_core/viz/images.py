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
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import plotly.graph_objects as go
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

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

__all__ = ["slice_figure", "mip_figure", "slice_count", "to_ras"]


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
                 title: str | None = None) -> go.Figure:
    """One slice of ``background`` (CT or PET) with an optional overlay on the same grid.

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
    spacing = (float(abs(x_mm[1] - x_mm[0])) if x_mm.size > 1 else 1.0,
               float(abs(y_mm[1] - y_mm[0])) if y_mm.size > 1 else 1.0)
    _orient_axes(fig, x_mm, y_mm, letters=letters, x_name=_AXIS_NAMES[sx_axis], y_name=_AXIS_NAMES[sy_axis])
    fig.update_layout(meta={"axis": axis, "index": int(index), "position_mm": position, "spacing_mm": spacing})
    return fig


def mip_figure(pet_suv: np.ndarray, overlay: np.ndarray | None, *, affine: np.ndarray, opacity: float = 0.5,
               suv_max: float | None = None, overlay_colorscale: str = "Jet", overlay_floor: float = 0.1,
               overlay_label: str = "Grad-CAM", title: str = "PET maximum-intensity projection (coronal)") -> go.Figure:
    """Coronal maximum-intensity projection of the PET (inverse grey) with the overlay's MIP.

    Args:
        pet_suv: ``(I, J, K)`` SUVbw.
        overlay: ``(I, J, K)`` on the PET grid, or None.
        affine: ``(4, 4)`` voxel index → world mm, RAS+.
        opacity: overlay opacity (0–1).
        suv_max: top of the grey scale (SUV); default the 99.5th percentile of the projection (at least 1).
    """
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
