"""Case Explorer, PET/CT viewer: fused PET-on-CT slices in three planes with one crosshair, the PET MIP, the lesions.

One crosshair point, a voxel ``(i, j, k)`` of the CT grid, is kept in ``st.session_state`` (:data:`CROSS_KEY`,
with a token of the result it belongs to, so that a new prediction starts afresh). Every control moves it:

- a plane's slice slider moves it along that plane's normal (``on_change``, before the page is drawn);
- a click on the coronal PET MIP moves it to that x and z, and to the y of the hottest voxel on the ray;
- a row picked in the lesion table centres it on that lesion (its centre voxel in ``lesion_labels``).

The sliders are then set from the crosshair (their session-state keys written before they are drawn), so they
always follow it. It starts on the lesion with the largest share of the risk, else the largest lesion, else the
PET's hottest voxel. The viewer uses no tabs and keeps every widget under a stable key, so nothing jumps.

The overlay maps (lesion contributions, Grad-CAM, read-out maps) are built here (:func:`overlay_maps`) and named
by :func:`map_title` wherever they are shown: colour bars and the 3D view's legend name the map that is drawn.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from pfs_ui import lesion_view
from pfs_ui.common import show_chart

# pfs_core.viz (plotly, scikit-image, nibabel) is imported inside the functions, so a page paints first.

CROSS_KEY = "viewer_crosshair"
HANDLED_KEY = "viewer_handled"
TABLE_KEY = "viewer_lesion_table"
MIP_KEY = "viewer_mip"
PLANES = ("axial", "coronal", "sagittal")
SLIDER_KEYS = {plane: f"viewer_{plane}" for plane in PLANES}
CHART_KEYS = {plane: f"viewer_plane_{plane}" for plane in PLANES}
NORMAL = {"sagittal": 0, "coronal": 1, "axial": 2}  # RAS axis perpendicular to each plane
AUTO_SUV = "auto"
LESION_MAP = "Lesion contributions"
#: The viewer's lesion table: measurement columns, in this order (labels from ``LESION_COLUMN_LABELS``).
TABLE_COLUMNS = ("lesion_id", "sstr_status", "site", "volume_ml", "suv_max", "tumour_to_liver", "contribution")

Voxel = tuple[int, int, int]


# ----------------------------------------------------------------------------- the maps


def overlay_maps(e: Any) -> dict[str, Any]:
    """Overlay maps on the CT grid by label: lesion contributions, Grad-CAM per branch, then the read-out maps.

    Labels: ``"Lesion contributions"``, ``"Grad-CAM PET"``/``"Grad-CAM CT"``, ``"Read-outs PET"``/``"Read-outs CT"``
    (:func:`map_title` gives each one's name with its unit). Values are nibabel images.
    """
    maps = {}
    if e.lesions is not None and e.measurement is not None:
        maps[LESION_MAP] = positive_contributions(e)
    maps.update({f"Grad-CAM {m.upper()}": image for m, image in sorted(e.gradcam.items())})
    maps.update({f"Read-outs {m.upper()}": image for m, image in sorted(e.readout_maps.items())})
    return maps


def positive_contributions(e: Any) -> Any:
    """The lesions that raise the risk, each filled with its share scaled to the largest (0-1, CT grid)."""
    import nibabel as nib

    from pfs_core.explain.lesions import contribution_map

    image = contribution_map(e.measurement, e.lesions)
    values = np.clip(np.asarray(image.dataobj, dtype=np.float32), 0.0, None)
    top = float(values.max())
    return nib.Nifti1Image(values / top if top > 0 else values, image.affine)


def map_name(label: str) -> str:
    """The map in words, for a legend: "Lesion contribution", "Grad-CAM PET", "Read-out map PET"."""
    if label == LESION_MAP:
        return "Lesion contribution"
    if label.startswith("Read-outs"):
        return f"Read-out map {label.split()[-1]}"
    return label


def map_title(label: str) -> str:
    """A colour bar's title: the map's name and unit, e.g. "Lesion contribution (relative)"."""
    return f"{map_name(label)} (relative)"


def map_note(e: Any, label: str) -> None:
    """What the map ``label`` shows, as a caption (or an info box for an empty Grad-CAM)."""
    from pfs_core.explain.gradcam import GRADCAM_NOTE
    from pfs_core.explain.readout_map import READOUT_MAP_NOTE

    if label == LESION_MAP:
        st.caption("Lesion contribution map: each lesion that raises the risk, filled with its share of the risk "
                   "relative to the largest (1 = the lesion that raises it most); lesions that lower it are not "
                   "filled. The shares are listed in the Why and Lesions tabs.")
        return
    modality = label.split()[-1].lower()
    note = e.gradcam_note(modality)
    if label.startswith("Grad-CAM") and note:
        st.info(f"Grad-CAM of the {modality.upper()} branch is {note}.")
    elif label.startswith("Grad-CAM"):
        st.caption(f"Grad-CAM: {GRADCAM_NOTE}.")
    elif label.startswith("Read-outs"):
        st.caption(f"Read-out map: {READOUT_MAP_NOTE}.")


def pet_on_ct(result: Any) -> Any:
    """The PET (SUVbw) resampled onto the CT grid, float32 of the CT's shape, built once per result."""
    from pfs_core.preprocessing.resample import resample_onto

    ct = result.ct
    return result.remember("pet_on_ct", lambda: resample_onto(result.pet, affine=ct.affine, shape=ct.data.shape))


def _map_arrays(result: Any) -> dict[str, np.ndarray]:
    """:func:`overlay_maps` as float32 arrays on the CT grid (those of another shape left out), built once."""
    def build() -> dict[str, np.ndarray]:
        arrays = {label: np.asarray(image.dataobj, dtype=np.float32)
                  for label, image in overlay_maps(result.explanation).items()}
        return {label: a for label, a in arrays.items() if a.shape == tuple(result.ct.data.shape)}

    return result.remember("viewer_maps", build)


# ----------------------------------------------------------------------------- the crosshair


def _token(result: Any) -> str:
    """A name of this result for the session state (a new prediction gets a new one)."""
    return str(result.memo.setdefault("viewer_token", uuid.uuid4().hex))


def _measurement(result: Any) -> Any:
    """The lesion measurement shown (the Lesions tab's, else the model's own), or None."""
    return lesion_view.measurement_of(result)


def lesion_centres(result: Any) -> dict[int, Voxel]:
    """Each lesion's centre voxel ``(i, j, k)`` on the CT grid (inside the lesion), built once per measurement."""
    from pfs_core.viz.images import label_centres

    m = _measurement(result)
    if m is None or result.ct is None or np.shape(m.lesion_labels) != tuple(result.ct.data.shape):
        return {}
    cache = result.memo.setdefault("viewer_centres", {})
    if id(m) not in cache:
        cache.clear()
        cache[id(m)] = (m, label_centres(m.lesion_labels))  # the measurement kept, so its id stays its own
    return dict(cache[id(m)][1])


def default_crosshair(result: Any) -> Voxel:
    """The lesion with the largest share of the risk, else the largest lesion, else the PET's hottest voxel."""
    from pfs_core.viz.images import hottest_voxel

    centres = lesion_centres(result)
    e = result.explanation
    top = e.lesions.top_lesion() if e.lesions is not None else None
    if top is not None and top in centres:
        return centres[top]
    m = _measurement(result)
    if centres and m is not None and len(m.lesions):
        for lesion_id in m.lesions.sort_values("volume_ml", ascending=False, kind="stable")["lesion_id"]:
            if int(lesion_id) in centres:
                return centres[int(lesion_id)]
    if result.pet is not None:
        return hottest_voxel(pet_on_ct(result))
    shape = result.ct.data.shape
    return int(shape[0]) // 2, int(shape[1]) // 2, int(shape[2]) // 2


def crosshair(result: Any) -> Voxel:
    """The crosshair voxel of ``result`` from the session state (its default the first time)."""
    saved = st.session_state.get(CROSS_KEY)
    if isinstance(saved, dict) and saved.get("case") == _token(result):
        return tuple(int(v) for v in saved["voxel"])  # type: ignore[return-value]
    return set_crosshair(result, default_crosshair(result))


def set_crosshair(result: Any, voxel: Voxel) -> Voxel:
    """Store ``voxel`` (clipped to the CT grid) as the crosshair of ``result``; returns it."""
    shape = result.ct.data.shape
    clipped = tuple(int(np.clip(int(v), 0, int(n) - 1)) for v, n in zip(voxel, shape, strict=True))
    st.session_state[CROSS_KEY] = {"case": _token(result), "voxel": clipped}
    return clipped  # type: ignore[return-value]


def centre_on_lesion(result: Any, lesion_id: int) -> Voxel | None:
    """Move the crosshair to the centre voxel of lesion ``lesion_id``; None (and no move) for an unknown id."""
    centre = lesion_centres(result).get(int(lesion_id))
    return None if centre is None else set_crosshair(result, centre)


def _slider_moved(result: Any, plane: str) -> None:
    """A slice slider moved: the crosshair follows along that plane's normal (runs before the page)."""
    from pfs_core.viz.images import from_ras_index, to_ras_index

    shape, affine = result.ct.data.shape, result.ct.affine
    ras = list(to_ras_index(crosshair(result), shape, affine))
    ras[NORMAL[plane]] = int(st.session_state[SLIDER_KEYS[plane]]) - 1
    set_crosshair(result, from_ras_index((ras[0], ras[1], ras[2]), shape, affine))


def _handle_events(result: Any, table: pd.DataFrame) -> None:
    """Apply a new lesion-table row or MIP click (their states from the last run) to the crosshair, once each."""
    from pfs_core.viz.images import mip_pick

    token = _token(result)
    rows = tuple(_selection(st.session_state.get(TABLE_KEY), "rows"))
    points = _selection(st.session_state.get(MIP_KEY), "points")
    point = None if not points else (float(points[-1].get("x", np.nan)), float(points[-1].get("y", np.nan)))
    handled = st.session_state.get(HANDLED_KEY)
    if not isinstance(handled, dict) or handled.get("case") != token:  # a new result: old selections are stale
        st.session_state[HANDLED_KEY] = {"case": token, "rows": rows, "point": point}
        return
    if rows != handled.get("rows"):
        handled["rows"] = rows
        if rows and 0 <= rows[0] < len(table):
            centre_on_lesion(result, int(table.iloc[rows[0]]["lesion"]))
    if point != handled.get("point"):
        handled["point"] = point
        if point is not None and result.pet is not None and np.isfinite(point).all():
            step = int(result.memo.get("viewer_click_step", 1))
            set_crosshair(result, mip_pick(pet_on_ct(result), affine=result.ct.affine, x_mm=point[0],
                                           z_mm=point[1], radius=step // 2))


def _selection(state: Any, what: str) -> list[Any]:
    """``state.selection[what]`` of a dataframe or chart state (a dict-like), or [] when there is none."""
    try:
        return list(state["selection"][what])
    except (KeyError, TypeError):
        return []


# ----------------------------------------------------------------------------- the lesion table


def lesion_table(result: Any) -> pd.DataFrame:
    """The viewer's lesion table: id, SSTR status, site, volume, SUVmax, tumour-to-liver, share of the risk.

    Labelled with units (``LESION_COLUMN_LABELS``), sites in words, the largest share of the risk first (else
    the SSTR-positive lesions by SUVmax, as in the Lesions tab). Empty without a measurement.
    """
    from pfs_core.results.report import LESION_COLUMN_LABELS, lesion_display_table

    m = _measurement(result)
    if m is None:
        return pd.DataFrame()
    e = result.explanation
    source = e.lesions.lesions if e.lesions is not None and "sstr_status" in e.lesions.lesions else m.lesions
    table = lesion_display_table(source[[c for c in TABLE_COLUMNS if c in source.columns]])
    share = LESION_COLUMN_LABELS["contribution"]
    if share in table:
        table = table.sort_values(share, ascending=False, kind="stable", key=lambda s: s.abs()).reset_index(drop=True)
    if "site" in table:
        table["site"] = table["site"].astype(str).str.replace("_", " ")
    return table.rename(columns={LESION_COLUMN_LABELS["lesion_id"]: "lesion", **SHORT_COLUMNS})


#: Shorter headers for the two long labels of the lesion table, so that all its columns fit at 1280 px (the
#: full wording is each column's help).
SHORT_COLUMNS = {"tumour-to-liver (SUVmax / liver SUV)": "tumour-to-liver",
                 "share of the risk (percentage points)": "share of risk (pp)"}


def _table_config(table: pd.DataFrame) -> dict[str, Any]:
    from pfs_core.results.report import LESION_COLUMN_LABELS as L

    helps = {"tumour-to-liver": "SUVmax of the lesion / the liver's reference SUV",
             "share of risk (pp)": "the lesion's part of the predicted probability, in percentage points (+ raises it)"}
    formats = {L["volume_ml"]: "%.1f", L["suv_max"]: "%.1f", "tumour-to-liver": "%.2f", "share of risk (pp)": "%+.2f"}
    return {c: st.column_config.NumberColumn(c, format=formats.get(c), help=helps.get(c))
            for c in table.columns if c in formats}


# ----------------------------------------------------------------------------- drawing


def render_viewer(result: Any) -> None:
    """The PET/CT viewer of ``result`` (a :class:`pfs_ui.case_view.CaseResult`): three planes, the MIP, lesions."""
    from pfs_core.viz.images import CT_WINDOWS, SUV_RANGES, auto_suv_range, to_ras_index

    if result.ct is None:
        st.info("The PET/CT viewer needs a CT (and a model that reads images, so that it is loaded).")
        return
    ct = result.ct
    pet = pet_on_ct(result) if result.pet is not None else None
    maps = _map_arrays(result)
    table = lesion_table(result)
    _handle_events(result, table)
    point = crosshair(result)

    c1, c2, c3, c4 = st.columns(4)
    window = c1.selectbox("CT window", list(CT_WINDOWS), key="viewer_ct_window")
    auto = result.remember("viewer_auto_suv", lambda: auto_suv_range(pet)) if pet is not None else (0.0, 10.0)
    suv_name = c2.selectbox("PET range", [*SUV_RANGES, AUTO_SUV], key="viewer_suv", disabled=pet is None,
                            format_func=lambda n: f"auto (SUV 0–{auto[1]:g})" if n == AUTO_SUV else n)
    opacity = c3.slider("PET opacity", 0.0, 1.0, 0.6, 0.05, key="viewer_pet_opacity", disabled=pet is None)
    label = c4.selectbox("Map", ["none", *maps], key="viewer_overlay", format_func=_option_name,
                         help="a map drawn over the PET/CT; its colour bar names it")
    c1, c2, c3 = st.columns([1, 1, 2])
    measured = _measurement(result) is not None
    show_lesions = c1.checkbox("Lesion outlines", value=True, disabled=not measured, key="viewer_lesions")
    show_organs = c2.checkbox("Organ outlines", value=False, disabled=not measured, key="viewer_organs")
    map_opacity = c3.slider("Map opacity", 0.0, 1.0, 0.6, 0.05, key="viewer_map_opacity", disabled=label == "none")
    if label != "none":
        map_note(result.explanation, label)
    _lesion_list(st, table)
    drawn = _outlines(result, lesions=show_lesions and measured, organs=show_organs and measured)

    ras = to_ras_index(point, ct.data.shape, ct.affine)
    suv_range = auto if suv_name == AUTO_SUV else SUV_RANGES[suv_name]
    style: dict[str, Any] = {"ct_window": CT_WINDOWS[window], "suv_range": suv_range, "opacity": opacity}
    for column, plane in zip(st.columns(3), PLANES, strict=True):
        _plane(column, result, plane, ras=ras, point=point, pet=pet, style=style, outlines=drawn,
               overlay=None if label == "none" else maps[label], overlay_label=map_title(label),
               overlay_opacity=map_opacity)
    centred = next((f" (the centre of lesion {i})" for i, c in lesion_centres(result).items() if tuple(c) == tuple(point)),
                   "")
    st.caption(f"Crosshair (green) at voxel {point} of the CT grid{centred}. Outlines: vermillion SSTR-positive, sky-blue "
               "SSTR-negative lesions; dotted organs. Pick a lesion in the table or click on the MIP to centre the "
               "three planes there; the sliders move them one slice at a time.")
    left, _right = st.columns([2, 3])
    if pet is not None:
        _mip(left, result, pet, point=point, outlines=drawn, suv_range=suv_range)
    else:
        left.info("No PET: no projection.")


def _option_name(label: str) -> str:
    return "none" if label == "none" else map_name(label)


def _outlines(result: Any, *, lesions: bool, organs: bool) -> Any:
    import dataclasses

    if not (lesions or organs):
        return None
    drawn = lesion_view.outlines(result, organs=organs)
    if drawn is not None and not lesions:
        drawn = dataclasses.replace(drawn, lesions=None, lesion_status={})
    return drawn


def _plane(where: Any, result: Any, plane: str, *, ras: Voxel, point: Voxel, pet: Any, style: dict[str, Any],
           outlines: Any, overlay: Any, overlay_label: str, overlay_opacity: float) -> None:
    """One plane: its slice slider (set from the crosshair before it is drawn) and the fused figure."""
    from pfs_core.viz.images import fused_slice_figure, slice_count

    ct = result.ct
    count = slice_count(ct.data.shape, ct.affine, plane)  # type: ignore[arg-type]
    st.session_state[SLIDER_KEYS[plane]] = int(ras[NORMAL[plane]]) + 1
    where.slider(f"{plane.capitalize()} slice", 1, max(count, 2), key=SLIDER_KEYS[plane], disabled=count < 2,
                 on_change=_slider_moved, args=(result, plane))
    figure = fused_slice_figure(ct.data, pet, affine=ct.affine, axis=plane, index=int(ras[NORMAL[plane]]),  # type: ignore[arg-type]
                                outlines=outlines, crosshair=point, overlay=overlay, overlay_label=overlay_label,
                                overlay_opacity=overlay_opacity, **style)
    show_chart(where, figure, key=CHART_KEYS[plane], name=f"pet_ct_{plane}")


def _mip(where: Any, result: Any, pet: Any, *, point: Voxel, outlines: Any, suv_range: tuple[float, float]) -> None:
    """The coronal PET MIP with its click layer; a click is applied on the next run (:func:`_handle_events`)."""
    from pfs_core.viz.images import clickable_mip_figure

    figure = clickable_mip_figure(pet, affine=result.ct.affine, suv_range=suv_range, crosshair=point,
                                  outlines=outlines)
    result.memo["viewer_click_step"] = int(figure.layout.meta["click_step"])
    show_chart(where, figure, key=MIP_KEY, name="pet_mip", on_select="rerun", selection_mode="points")


def _lesion_list(where: Any, table: pd.DataFrame) -> None:
    if table.empty:
        where.info("No lesion measurement for this case (see the Lesions tab).")
        return
    where.dataframe(table, key=TABLE_KEY, on_select="rerun", selection_mode="single-row", hide_index=True,
                    column_config=_table_config(table))
    where.caption("Pick a row to centre the planes below on that lesion. Share of risk: the lesion's part of the "
                  "predicted probability (percentage points, + raises it); tumour-to-liver: SUVmax / liver SUV.")


__all__: list[str] = ["centre_on_lesion", "crosshair", "default_crosshair", "lesion_centres", "lesion_table",
                      "map_name", "map_note", "map_title", "overlay_maps", "pet_on_ct", "positive_contributions",
                      "render_viewer", "set_crosshair"]
