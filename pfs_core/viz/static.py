"""Static PNG images for printed reports (matplotlib, Agg backend: no display, no browser, no plotly.js).

- :func:`mip_png`: the coronal PET maximum-intensity projection (inverse grey) with the lesion outlines
  (SSTR-positive / SSTR-negative, :data:`pfs_core.viz.images.STATUS_COLORS`) and lesion ids.
- :func:`lesion_slice_png`: the axial PET-on-CT slice through one lesion (CT soft-tissue window in grey,
  PET SUV 0-10 in a hot colour at half opacity above a small threshold) with the outlines, the lesion's
  label, orientation letters and a 5-cm scale bar.
- :func:`bar_png`: signed horizontal bars (vermillion raises the risk, blue lowers it).

Orientation follows :mod:`pfs_core.viz.images` (its helpers do the geometry): volumes are viewed on their
nearest RAS grid, radiological convention (the patient's right on the image's left), axial slices from the
feet with anterior up, the projection from the front with superior up. Images are ~110 dpi PNGs reduced to
a 256-colour palette, so a report holding several stays small.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from PIL import Image  # noqa: E402

from pfs_core.errors import InputError  # noqa: E402
from pfs_core.viz._style import LOWERS_RISK, RAISES_RISK  # noqa: E402
from pfs_core.viz.images import (  # noqa: E402
    _PLANE,
    CT_WINDOW_HU,
    STATUS_COLORS,
    _contours,
    _coordinates,
    _label_planes,
    to_ras,
)

__all__ = ["DPI", "PET_FUSION_SUV", "axial_index", "bar_png", "lesion_slice_png", "mip_png"]

#: Resolution of every image (dots per inch of the matplotlib figure).
DPI = 110
#: Display range (SUVbw) of the PET fused on the CT; voxels below ``PET_FUSION_FLOOR`` are not coloured.
PET_FUSION_SUV = (0.0, 10.0)
PET_FUSION_FLOOR = 1.5
_LABEL_COLOR = "#E69F00"  # orientation letters and lesion ids (Okabe & Ito orange)
_FONT = "DejaVu Sans"


# ----------------------------------------------------------------------------- public


def mip_png(pet_on_ct: np.ndarray, affine: np.ndarray, lesion_labels: np.ndarray | None = None,
            lesion_status: Mapping[int, str] | None = None, *, labelled: Sequence[int] | None = None,
            suv_max: float | None = None, height_in: float = 6.0,
            title: str = "PET maximum-intensity projection (coronal)") -> bytes:
    """PNG of the coronal maximum-intensity projection of the PET with the projected lesion outlines.

    Args:
        pet_on_ct: ``(I, J, K)`` SUVbw (on the CT grid when lesions are drawn).
        affine: ``(4, 4)`` voxel index → world mm, RAS+, of ``pet_on_ct`` (and of ``lesion_labels``).
        lesion_labels: int ``(I, J, K)`` lesion ids (0 = none) on the same grid, or None.
        lesion_status: lesion id → ``"SSTR-positive"`` / ``"SSTR-negative"`` (outline colour); ids without one
            are not drawn.
        labelled: lesion ids written beside their outline (default: every outlined lesion, at most 15).
        suv_max: top of the grey scale (SUV); default the 99.5th percentile of the projection (at least 1).
        height_in: image height in inches (the width follows the field of view).
    """
    pet = np.asarray(pet_on_ct)
    status = _check_labels(pet.shape, lesion_labels, lesion_status)
    data, ras_affine = to_ras(pet, affine)
    mip = np.nan_to_num(np.asarray(data, dtype=np.float32)).max(axis=1)  # (X, Z)
    top = float(suv_max) if suv_max is not None else max(1.0, float(np.percentile(mip, 99.5)))
    x_mm, z_mm = _coordinates(ras_affine, data.shape, 0), _coordinates(ras_affine, data.shape, 2)
    width = float(np.clip(height_in * _span(x_mm) / max(_span(z_mm), 1e-6), 2.5, 8.0))
    fig = _figure(width + 0.9, height_in)
    ax = fig.add_axes((0.02, 0.02, 0.96 * width / (width + 0.9), 0.9))
    image = ax.imshow(mip.T, cmap="gray_r", vmin=0.0, vmax=top, origin="lower", extent=_extent(x_mm, z_mm),
                      interpolation="bilinear")
    if lesion_labels is not None and status:
        labels = to_ras(np.asarray(lesion_labels), affine)[0]
        ids = sorted(status)
        planes = dict(_label_planes(labels, ids, True))
        shown = set(list(status)[:15] if labelled is None else labelled)
        for lesion_id in ids:
            mask = planes[lesion_id]
            for x, y in _contours(mask, x_mm, z_mm):
                ax.plot(x, y, color=STATUS_COLORS[status[lesion_id]], linewidth=1.2)
            if lesion_id in shown and mask.any():
                _lesion_label(ax, lesion_id, mask, x_mm, z_mm)
        _status_legend(ax, status)
    _orient(ax, x_mm, z_mm, _PLANE["coronal"][2])
    bar = fig.add_axes((0.02 + 0.96 * width / (width + 0.9) + 0.02, 0.1, 0.025, 0.35))
    fig.colorbar(image, cax=bar).set_label("SUV", fontsize=8)
    bar.tick_params(labelsize=7)
    ax.set_title(title, fontsize=10, loc="left")
    return _png(fig)


def axial_index(lesion_labels: np.ndarray, affine: np.ndarray, lesion_id: int) -> int:
    """Axial slice (RAS order, as :func:`pfs_core.viz.images.slice_figure`'s ``index``) with the most voxels of
    lesion ``lesion_id``; ValueError when the lesion has no voxel."""
    labels = to_ras(np.asarray(lesion_labels), affine)[0]
    counts = (labels == int(lesion_id)).sum(axis=(0, 1))
    if not counts.any():
        raise ValueError(f"lesion {lesion_id} has no voxel in the label map")
    return int(np.argmax(counts))


def lesion_slice_png(ct: np.ndarray, pet_on_ct: np.ndarray | None, affine: np.ndarray, lesion_labels: np.ndarray,
                     lesion_id: int, *, lesion_status: Mapping[int, str] | None = None, title: str | None = None,
                     size_in: float = 4.2, pet_range: tuple[float, float] = PET_FUSION_SUV,
                     pet_floor: float = PET_FUSION_FLOOR) -> bytes:
    """PNG of the axial slice through lesion ``lesion_id`` (where its cross-section is largest), PET on CT.

    Args:
        ct: ``(I, J, K)`` HU, shown in the soft-tissue window (:data:`pfs_core.viz.images.CT_WINDOW_HU`).
        pet_on_ct: ``(I, J, K)`` SUVbw on the CT grid (hot colour, 50 % opacity, SUV ``pet_range``,
            transparent below ``pet_floor``), or None for the CT alone.
        affine: ``(4, 4)`` voxel index → world mm, RAS+, shared by the three volumes.
        lesion_labels: int ``(I, J, K)`` lesion ids (0 = none).
        lesion_id: the lesion the slice goes through; its outline is thicker and labelled.
        lesion_status: lesion id → SSTR status (outline colour); default every lesion SSTR-positive.
        title: image title (default: the lesion id and the slice position).
        size_in: image height in inches.
    """
    ct = np.asarray(ct)
    labels_in = np.asarray(lesion_labels)
    status = _check_labels(ct.shape, labels_in, lesion_status)
    if pet_on_ct is not None and np.shape(pet_on_ct) != ct.shape:
        raise InputError(f"the PET's shape {np.shape(pet_on_ct)} differs from the CT's {ct.shape}; resample it "
                         "onto the CT grid first (pfs_core.preprocessing.resample.resample_onto)")
    if not status:
        status = {int(i): "SSTR-positive" for i in np.unique(labels_in) if i > 0}
    index = axial_index(labels_in, affine, lesion_id)
    data, ras_affine = to_ras(ct, affine)
    labels = to_ras(labels_in, affine)[0][:, :, index]
    x_mm, y_mm = _coordinates(ras_affine, data.shape, 0), _coordinates(ras_affine, data.shape, 1)
    z_mm = float(ras_affine[2, 3] + np.linalg.norm(ras_affine[:3, 2]) * index)
    extent = _extent(x_mm, y_mm)
    width = float(np.clip(size_in * _span(x_mm) / max(_span(y_mm), 1e-6), 2.5, 8.0))
    fig = _figure(width, size_in)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.89))
    ax.set_facecolor("black")
    ax.imshow(np.asarray(data[:, :, index], dtype=np.float32).T, cmap="gray", vmin=CT_WINDOW_HU[0],
              vmax=CT_WINDOW_HU[1], origin="lower", extent=extent, interpolation="bilinear")
    if pet_on_ct is not None:
        pet = np.nan_to_num(np.asarray(to_ras(np.asarray(pet_on_ct), affine)[0][:, :, index], dtype=np.float32))
        ax.imshow(np.ma.masked_less(pet, pet_floor).T, cmap="hot", vmin=pet_range[0], vmax=pet_range[1], alpha=0.5,
                  origin="lower", extent=extent, interpolation="bilinear")
    for other in sorted(status):
        mask = labels == other
        if not mask.any():
            continue
        target = other == int(lesion_id)
        for x, y in _contours(mask, x_mm, y_mm):
            ax.plot(x, y, color=STATUS_COLORS[status[other]], linewidth=2.0 if target else 0.9)
        if target:
            _lesion_label(ax, other, mask, x_mm, y_mm, arrow=True)
    _orient(ax, x_mm, y_mm, _PLANE["axial"][2])
    _scale_bar(ax, x_mm, y_mm)
    heading = title or f"Lesion {int(lesion_id)}"
    ax.set_title(f"{heading}\naxial slice at z = {z_mm:.0f} mm; PET SUV {pet_range[0]:g}–{pet_range[1]:g} on CT "
                 f"({CT_WINDOW_HU[0]:g} to {CT_WINDOW_HU[1]:g} HU)" if pet_on_ct is not None else
                 f"{heading}\naxial CT slice at z = {z_mm:.0f} mm", fontsize=9, loc="left")
    return _png(fig)


def bar_png(labels: Sequence[str], values: Sequence[float] | np.ndarray, title: str, xlabel: str, *,
            width_in: float = 6.5, max_bars: int = 15) -> bytes:
    """PNG of signed horizontal bars, largest |value| on top (vermillion > 0 raises the risk, blue < 0 lowers it).

    ``values`` in the units of ``xlabel``; bars beyond ``max_bars`` are summed into one "N others" bar, so the
    total is kept.
    """
    values = np.asarray(values, dtype=float).ravel()
    if len(labels) != values.size:
        raise ValueError(f"labels and values need one length; got {len(labels)} and {values.size}")
    order = np.argsort(-np.abs(values), kind="stable")
    names = [str(labels[i]) for i in order[:max_bars]]
    shown = [float(values[i]) for i in order[:max_bars]]
    if values.size > max_bars:
        names.append(f"{values.size - max_bars} others")
        shown.append(float(values[order[max_bars:]].sum()))
    n = max(len(shown), 1)
    fig = _figure(width_in, 0.9 + 0.28 * n)
    ax = fig.add_axes((0.45, 0.55 / (0.9 + 0.28 * n), 0.5, 0.28 * n / (0.9 + 0.28 * n)))
    y = np.arange(len(shown))[::-1]
    ax.barh(y, shown, color=[RAISES_RISK if v > 0 else LOWERS_RISK for v in shown], height=0.7)
    ax.set_yticks(y, [_shorten(s) for s in names], fontsize=7)
    ax.axvline(0.0, color="#555555", linewidth=0.8)
    span = max((abs(v) for v in shown), default=1.0) or 1.0
    ax.set_xlim(-1.35 * span, 1.35 * span)
    for yi, v in zip(y, shown, strict=True):
        ax.text(v, yi, f" {v:+.2f} " if abs(v) < 10 else f" {v:+.1f} ", va="center",
                ha="left" if v >= 0 else "right", fontsize=7)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=9, loc="left")
    return _png(fig)


# ----------------------------------------------------------------------------- helpers


def _check_labels(shape: tuple[int, ...], labels: np.ndarray | None,
                  status: Mapping[int, str] | None) -> dict[int, str]:
    """The status map with int keys; InputError when the label map is not on the background's grid."""
    if labels is not None and np.shape(labels) != tuple(shape):
        raise InputError(f"the lesion label map's shape {np.shape(labels)} differs from the background's "
                         f"{tuple(shape)}; resample it onto the background's grid first")
    out = {int(k): str(v) for k, v in (status or {}).items()}
    unknown = sorted(set(out.values()) - set(STATUS_COLORS))
    if unknown:
        raise ValueError(f"lesion status must be one of {sorted(STATUS_COLORS)}, not {unknown}")
    return out


def _figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    fig.patch.set_facecolor("white")
    return fig


def _png(fig: Figure) -> bytes:
    """The figure as a palette PNG (256 colours, no dithering), optimised."""
    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=DPI, facecolor="white")
    image = Image.open(raw).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                    dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _span(coordinates: np.ndarray) -> float:
    step = float(abs(coordinates[1] - coordinates[0])) if coordinates.size > 1 else 1.0
    return float(abs(coordinates[-1] - coordinates[0])) + step


def _extent(x_mm: np.ndarray, y_mm: np.ndarray) -> tuple[float, float, float, float]:
    """imshow extent in world mm (``x``, ``y`` ascending; :func:`_orient` then turns the x axis round)."""
    hx = 0.5 * (abs(x_mm[1] - x_mm[0]) if x_mm.size > 1 else 1.0)
    hy = 0.5 * (abs(y_mm[1] - y_mm[0]) if y_mm.size > 1 else 1.0)
    return float(x_mm.min()) - hx, float(x_mm.max()) + hx, float(y_mm.min()) - hy, float(y_mm.max()) + hy


def _orient(ax: Axes, x_mm: np.ndarray, y_mm: np.ndarray, letters: tuple[str, str, str, str]) -> None:
    """Radiological view (larger RAS x, the patient's right, on the image's left); axes off; edge letters
    (left, right, bottom, top) in orange."""
    left, right, bottom, top = letters
    extent = _extent(x_mm, y_mm)
    ax.set_xlim(extent[1], extent[0])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    style: dict[str, Any] = {"color": _LABEL_COLOR, "fontsize": 10, "fontweight": "bold",
                             "transform": ax.transAxes}
    ax.text(0.01, 0.5, left, ha="left", va="center", **style)
    ax.text(0.99, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.01, bottom, ha="center", va="bottom", **style)
    ax.text(0.5, 0.99, top, ha="center", va="top", **style)


def _scale_bar(ax: Axes, x_mm: np.ndarray, y_mm: np.ndarray, length_mm: float = 50.0) -> None:
    """A white ``length_mm`` bar in the bottom-right corner (x runs from right to left on screen)."""
    if _span(x_mm) < 2.5 * length_mm:
        length_mm = 10.0
    start = float(x_mm.min()) + 0.05 * _span(x_mm)
    y = float(y_mm.min()) + 0.06 * _span(y_mm)
    ax.plot([start, start + length_mm], [y, y], color="white", linewidth=2.5)
    ax.text(start + 0.5 * length_mm, y + 0.015 * _span(y_mm), f"{length_mm:g} mm", color="white", fontsize=7,
            ha="center", va="bottom")


def _lesion_label(ax: Axes, lesion_id: int, mask: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray, *,
                  arrow: bool = False) -> None:
    """The lesion id beside its outline, on the image's right of it (left when too near the edge)."""
    i, j = np.nonzero(mask)
    cy = float(y_mm[int(round(j.mean()))])
    span = _span(x_mm)
    gap = (0.08 if arrow else 0.01) * span
    screen_right = float(x_mm[int(i.min())])  # x runs from max to min on screen: smallest x is rightmost
    if screen_right - gap - float(x_mm.min()) > 0.08 * span:
        edge, anchor, align = screen_right, screen_right - gap, "left"
    else:
        edge = float(x_mm[int(i.max())])
        anchor, align = edge + gap, "right"
    text = f"L{lesion_id}" if arrow else f"{lesion_id}"
    if arrow:
        ax.annotate(text, xy=(edge, cy), xytext=(anchor, cy), color=_LABEL_COLOR, fontsize=10, fontweight="bold",
                    ha=align, va="center", arrowprops={"arrowstyle": "->", "color": _LABEL_COLOR, "linewidth": 1.2})
    else:
        ax.text(anchor, cy, text, color=_LABEL_COLOR, fontsize=8, fontweight="bold", ha=align, va="center")


def _status_legend(ax: Axes, status: Mapping[int, str]) -> None:
    present = [s for s in STATUS_COLORS if s in set(status.values())]
    handles = [Line2D([0], [0], color=STATUS_COLORS[s], linewidth=1.5, label=f"{s} lesion") for s in present]
    ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.8)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
