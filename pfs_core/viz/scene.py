"""Interactive 3D scene of one case and the 2D embedding of the cohort (plotly, rotate/zoom in the browser)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from pfs_core.viz._style import FONT, OUTCOME, PALETTE, new_figure
from pfs_core.viz.mesh import Mesh

OUTCOME_NAMES = {1: OUTCOME, 0: "PFS > 12 months"}
_SYMBOLS = ("circle", "diamond", "square", "x", "triangle-up", "cross", "star", "hexagon")

__all__ = ["mesh3d_figure", "embedding_figure"]


def mesh3d_figure(meshes: Sequence[Mesh], *, title: str = "3D view (world coordinates)") -> go.Figure:
    """One ``go.Mesh3d`` trace per non-empty mesh (name, colour, opacity kept), axes in mm, true proportions.

    Empty meshes get no trace; they are listed under the title ("not shown: …").
    The initial camera looks from the front (patient's right on the screen's left).
    """
    fig = go.Figure()
    empty = [m.name for m in meshes if m.is_empty]
    for mesh in meshes:
        if mesh.is_empty:
            continue
        v, f = mesh.vertices, mesh.faces
        fig.add_trace(go.Mesh3d(
            x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2], name=mesh.name, color=mesh.color,
            opacity=mesh.opacity, showlegend=True, flatshading=False,
            lighting={"ambient": 0.45, "diffuse": 0.7, "specular": 0.15, "roughness": 0.6},
            hovertemplate="%{x:.0f}, %{y:.0f}, %{z:.0f} mm<extra>" + mesh.name + "</extra>",
            meta={"n_triangles": mesh.n_triangles}))
    heading = title if not empty else f"{title}<br><sup>not shown (empty): {', '.join(empty)}</sup>"
    axis = {"showbackground": False, "showgrid": True, "gridcolor": "#DDD", "zeroline": False}
    fig.update_layout(
        template="plotly_white", title={"text": heading, "x": 0.0, "xanchor": "left"}, height=650,
        font={"family": FONT, "size": 13}, margin={"l": 0, "r": 0, "t": 60, "b": 0},
        legend={"x": 0.0, "y": 0.95, "bgcolor": "rgba(255, 255, 255, 0.8)"}, uirevision="scene",
        scene={
            "aspectmode": "data",
            "xaxis": {**axis, "title": {"text": "x (mm), → patient's right"}},
            "yaxis": {**axis, "title": {"text": "y (mm), → anterior"}},
            "zaxis": {**axis, "title": {"text": "z (mm), → superior"}},
            "camera": {"eye": {"x": -0.9, "y": 1.8, "z": 0.6}, "up": {"x": 0, "y": 0, "z": 1}},
        },
    )
    return fig


def embedding_figure(points_2d: np.ndarray, labels: Sequence[object], *, title: str = "Embedding of fused features",
                     hover: Sequence[str] | None = None, highlight_index: int | None = None,
                     axis_titles: tuple[str, str] = ("Component 1", "Component 2")) -> go.Figure:
    """Scatter of a 2D embedding (PCA/UMAP of fused features), one trace per outcome label.

    Args:
        points_2d: ``(N, 2)`` embedding coordinates (arbitrary units).
        labels: ``(N,)`` outcome per point; 1/0 (or True/False) become "PFS ≤ 12 months" / "PFS > 12 months",
            NaN/None "no label", strings are kept.
        hover: ``(N,)`` text per point (e.g. patient ids).
        highlight_index: a point drawn as a large star (the current patient).
    """
    points = np.asarray(points_2d, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points_2d must have shape (N, 2), not {points.shape}")
    if len(labels) != len(points) or (hover is not None and len(hover) != len(points)):
        raise ValueError(f"labels ({len(labels)}) and hover need one entry per point ({len(points)})")
    names = [_outcome_name(v) for v in labels]
    order = [n for n in (OUTCOME_NAMES[0], OUTCOME_NAMES[1]) if n in names]
    order += sorted({n for n in names if n not in order and n != "no label"})
    order += ["no label"] if "no label" in names else []
    fig = new_figure(title=title, x_title=f"{axis_titles[0]} (a.u.)", y_title=f"{axis_titles[1]} (a.u.)", height=520)
    text = np.asarray(hover if hover is not None else [""] * len(points), dtype=object)
    group = np.asarray(names, dtype=object)
    for i, name in enumerate(order):
        rows = group == name
        marker_color = "#999999" if name == "no label" else PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=points[rows, 0], y=points[rows, 1], mode="markers", name=f"{name} (n={rows.sum()})",
                                 marker={"color": marker_color, "symbol": _SYMBOLS[i % len(_SYMBOLS)], "size": 9,
                                         "opacity": 0.85, "line": {"width": 0.5, "color": "white"}},
                                 text=text[rows], meta={"label": name},
                                 hovertemplate="%{text}<br>(%{x:.2f}, %{y:.2f})<extra>" + name + "</extra>"))
    if highlight_index is not None:
        if not 0 <= highlight_index < len(points):
            raise ValueError(f"highlight_index must lie in 0 … {len(points) - 1}, not {highlight_index}")
        x, y = points[highlight_index]
        fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", name="This patient",
                                 marker={"symbol": "star", "size": 20, "color": "#000000",
                                         "line": {"width": 1.5, "color": "white"}}))
    return fig


def _outcome_name(value: object) -> str:
    if value is None:
        return "no label"
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | np.integer | np.floating | np.bool_):
        number = float(value)
        if np.isnan(number):
            return "no label"
        if number in (0.0, 1.0):
            return OUTCOME_NAMES[int(number)]
    return str(value)
