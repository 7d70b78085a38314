"""Case Explorer, PET/CT viewer: three fused planes and the MIP after Predict; a lesion row and a slider move the
crosshair (one Predict of a sample case, then two cheap reruns)."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from pfs_ui import viewer

PAGE = "pages/case_explorer.py"


def _charts(at: AppTest) -> dict[str, dict]:
    """Plotly specs by title."""
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return {s["layout"].get("title", {}).get("text", ""): s for s in specs}


def _voxel(at: AppTest) -> tuple[int, int, int]:
    return tuple(at.session_state[viewer.CROSS_KEY]["voxel"])


def test_viewer_draws_three_planes_and_the_mip_and_follows_the_lesion_table(app_path):
    from pfs_core.viz.images import to_ras_index

    at = AppTest.from_file(app_path, default_timeout=240)
    at.switch_page(PAGE).run()
    at.selectbox(key="sample_id").set_value("SIM0003").run()  # SSTR-positive and SSTR-negative lesions
    at.button(key="predict").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    at.button_group(key="result_view").set_value("PET/CT viewer").run()
    assert not at.exception, at.exception

    charts = _charts(at)
    planes = {p: next((s for t, s in charts.items() if t.startswith(f"{p.capitalize()} ·")), None)
              for p in viewer.PLANES}
    assert all(planes.values()), list(charts)
    mip = next(s for t, s in charts.items() if t.startswith("PET MIP"))
    assert any(t.get("meta", {}).get("layer") == "click" for t in mip["data"])
    for spec in planes.values():
        titles = [t["colorbar"]["title"]["text"] for t in spec["data"] if t["type"] == "heatmap"]
        assert titles == ["CT (HU)", "PET SUVbw (g/mL)"]
        assert len(spec["layout"]["shapes"]) == 2  # the crosshair

    result = at.session_state["case_result"]
    ct = result.ct
    centres = viewer.lesion_centres(result)
    top = result.explanation.lesions.top_lesion() if result.explanation.lesions is not None else None
    assert centres and _voxel(at) == viewer.default_crosshair(result)
    if top is not None:
        assert _voxel(at) == centres[top]  # the lesion with the largest share of the risk, not the middle slice

    table = next(d.value for d in at.dataframe if d.key == viewer.TABLE_KEY)
    assert list(table.columns) == ["lesion", "SSTR status", "site", "volume (mL)", "SUVmax (g/mL)",
                                   "tumour-to-liver", "share of risk (pp)"]  # full wording in each column's help
    shares = table["share of risk (pp)"].abs().tolist()
    assert shares == sorted(shares, reverse=True)
    assert _voxel(at) == centres[int(table.iloc[0]["lesion"])]  # the first row: the largest share of the risk
    assert not any("_" in str(s) for s in table["site"])
    row = len(table) - 1
    at.session_state[viewer.TABLE_KEY] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception
    wanted = centres[int(table.iloc[row]["lesion"])]
    assert _voxel(at) == wanted
    ras = to_ras_index(wanted, ct.data.shape, ct.affine)
    assert [at.slider(key=viewer.SLIDER_KEYS[p]).value for p in ("sagittal", "coronal", "axial")] == [
        r + 1 for r in ras]

    at.slider(key=viewer.SLIDER_KEYS["axial"]).set_value(ras[2] + 3).run()  # one slider moves one axis
    assert not at.exception, at.exception
    moved = to_ras_index(_voxel(at), ct.data.shape, ct.affine)
    assert moved == (ras[0], ras[1], ras[2] + 2)


def test_a_click_on_the_mip_moves_the_crosshair_to_the_hottest_voxel_on_the_ray(monkeypatch):
    """The MIP's selection (a point of its click layer) as Streamlit hands it back, without a browser."""
    from types import SimpleNamespace

    import numpy as np

    affine = np.diag([-2.0, -2.0, 3.0, 1.0])
    ct = SimpleNamespace(data=np.zeros((30, 24, 16), np.float32), affine=affine)
    suv = np.ones(ct.data.shape, np.float32)
    suv[(6, 17, 9)] = 12.0
    suv[(20, 3, 4)] = 30.0  # the hottest voxel: the default crosshair without lesions
    pet = SimpleNamespace(data=suv, affine=affine)
    memo: dict = {}
    result = SimpleNamespace(ct=ct, pet=pet, memo=memo, explanation=SimpleNamespace(
        lesions=None, measurement=None, gradcam={}, readout_maps={}),
        remember=lambda key, build: memo[key] if key in memo else memo.setdefault(key, build()))
    monkeypatch.setattr(viewer, "st", SimpleNamespace(session_state={}))
    state = viewer.st.session_state
    empty = viewer.lesion_table(result)
    viewer._handle_events(result, empty)
    assert viewer.crosshair(result) == (20, 3, 4)
    x, _, z = (affine @ np.array([6, 17, 9, 1.0]))[:3]
    state[viewer.MIP_KEY] = {"selection": {"points": [{"x": x, "y": z, "curve_number": 1}]}}
    viewer._handle_events(result, empty)
    assert viewer.crosshair(result) == (6, 17, 9)
    viewer.set_crosshair(result, (0, 0, 0))
    viewer._handle_events(result, empty)  # the same selection again: no second move
    assert viewer.crosshair(result) == (0, 0, 0)
