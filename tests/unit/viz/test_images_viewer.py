"""pfs_core.viz.images, the PET/CT viewer: fused planes, crosshair, colour bars, the clickable MIP."""

from __future__ import annotations

import numpy as np
import pytest

from pfs_core.errors import InputError
from pfs_core.viz import images as vi

PLANES = {"sagittal": (0, (1, 2)), "coronal": (1, (0, 2)), "axial": (2, (0, 1))}  # normal, screen (x, y) RAS axes


def lps_affine() -> np.ndarray:
    """Stored as DICOM usually is: x towards the left, y posterior; anisotropic voxels."""
    affine = np.diag([-0.8, -0.8, 3.0, 1.0])
    affine[:3, 3] = (20.0, 15.0, -60.0)
    return affine


def case(shape=(40, 30, 20)) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int], np.ndarray]:
    """CT noise, a PET with one hot voxel at a known (i, j, k), the affine and that voxel's world position."""
    affine = lps_affine()
    ct = np.random.default_rng(0).normal(0.0, 30.0, shape).astype(np.float32)
    pet = np.full(shape, 1.0, np.float32)
    voxel = (7, 21, 13)
    pet[voxel] = 25.0
    return ct, pet, affine, voxel, (affine @ np.array([*voxel, 1.0]))[:3]


def hottest(trace) -> tuple[float, float]:
    z = np.nan_to_num(np.asarray(trace.z, dtype=float), nan=-np.inf)
    row, col = np.unravel_index(np.argmax(z), z.shape)
    return float(trace.x[col]), float(trace.y[row])


def test_ras_index_round_trip_and_slice_positions() -> None:
    ct, _, affine, voxel, world = case()
    ras = vi.to_ras_index(voxel, ct.shape, affine)
    view, ras_affine = vi.to_ras(ct, affine)
    assert view[ras] == ct[voxel]
    assert vi.from_ras_index(ras, ct.shape, affine) == voxel
    assert (ras_affine @ np.array([*ras, 1.0]))[:3] == pytest.approx(world)


@pytest.mark.parametrize("plane", list(PLANES))
def test_hot_voxel_and_crosshair_sit_at_its_world_position_in_each_plane(plane: str) -> None:
    ct, pet, affine, voxel, world = case()
    normal, (sx, sy) = PLANES[plane]
    index = vi.to_ras_index(voxel, ct.shape, affine)[normal]
    fig = vi.fused_slice_figure(ct, pet, affine=affine, axis=plane, index=index, crosshair=voxel)
    assert [t.name for t in fig.data] == ["CT", "PET"]
    assert hottest(fig.data[1]) == pytest.approx((world[sx], world[sy]))
    assert fig.layout.meta["position_mm"] == pytest.approx(world[normal])
    assert fig.layout.meta["crosshair_mm"] == pytest.approx((world[sx], world[sy]))
    vertical, horizontal = fig.layout.shapes
    assert vertical.x0 == vertical.x1 == pytest.approx(world[sx])
    assert horizontal.y0 == horizontal.y1 == pytest.approx(world[sy])
    assert fig.layout.xaxis.range[0] > fig.layout.xaxis.range[1]  # radiological


def test_pet_below_the_floor_is_transparent_and_windows_apply() -> None:
    ct, pet, affine, voxel, _ = case()
    index = vi.to_ras_index(voxel, ct.shape, affine)[2]
    fig = vi.fused_slice_figure(ct, pet, affine=affine, axis="axial", index=index,
                                ct_window=vi.CT_WINDOWS["liver (W150/L90)"], suv_range=(0.0, 20.0), opacity=0.3)
    suv = np.asarray(fig.data[1].z, dtype=float)
    assert np.isfinite(suv).sum() == suv.size  # SUV 1 > 4 % of 20: all drawn
    assert (fig.data[0].zmin, fig.data[0].zmax) == (15.0, 165.0)
    assert (fig.data[1].zmin, fig.data[1].zmax, fig.data[1].opacity) == (0.0, 20.0, 0.3)
    high = vi.fused_slice_figure(ct, pet * 0.1, affine=affine, axis="axial", index=index)
    assert np.isnan(np.asarray(high.data[1].z, dtype=float)).sum() == suv.size - 1  # only the hot voxel is shown


def test_colour_bars_name_quantity_and_unit_and_never_grad_cam_for_a_read_out() -> None:
    ct, pet, affine, voxel, _ = case()
    overlay = pet / 25.0
    fig = vi.fused_slice_figure(ct, pet, affine=affine, axis="coronal", index=3, overlay=overlay,
                                overlay_label="Read-out map PET (relative)")
    titles = [t.colorbar.title.text for t in fig.data]
    assert titles == ["CT (HU)", "PET SUVbw (g/mL)", "Read-out map PET (relative)"]
    assert fig.layout.meta["colorbars"] == titles
    assert not any("Grad-CAM" in t for t in titles)
    assert all(t.colorbar.orientation == "h" for t in fig.data)
    ys = [t.colorbar.y for t in fig.data]
    assert ys == sorted(ys, reverse=True) and max(ys) < 0  # stacked below the image
    area = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    assert -min(ys) * area + 50 <= fig.layout.margin.b  # the last bar ends inside the figure
    assert len(fig.layout.title.text) <= 32  # no cut title at ~380 px
    ct_only = vi.fused_slice_figure(ct, None, affine=affine, axis="sagittal", index=3)
    assert [t.colorbar.title.text for t in ct_only.data] == ["CT (HU)"]


def test_outlines_have_no_legend_and_bad_inputs_are_refused() -> None:
    ct, pet, affine, voxel, _ = case()
    lesions = np.zeros(ct.shape, np.int32)
    lesions[5:10, 19:24, 12:15] = 1
    outlines = vi.Outlines(lesions=lesions, lesion_status={1: "SSTR-positive"})
    index = vi.to_ras_index(voxel, ct.shape, affine)[2]
    fig = vi.fused_slice_figure(ct, pet, affine=affine, axis="axial", index=index, outlines=outlines)
    assert "SSTR-positive lesions" in {t.name for t in fig.data} and fig.layout.showlegend is False
    with pytest.raises(InputError, match="PET"):
        vi.fused_slice_figure(ct, pet[:-1], affine=affine, axis="axial", index=0)
    with pytest.raises(ValueError, match="0 … 19"):
        vi.fused_slice_figure(ct, pet, affine=affine, axis="axial", index=20)
    with pytest.raises(ValueError, match="CT, a PET"):
        vi.fused_slice_figure(None, None, affine=affine, axis="axial", index=0)


def test_label_centres_lie_inside_each_label() -> None:
    labels = np.zeros((20, 20, 20), np.int32)
    labels[2:5, 2:5, 2:5] = 1
    labels[10:18, 10, 10] = 2
    labels[10:18, 10:18, 15] = 3
    labels[11:17, 11:17, 15] = 0  # a ring: its centroid is outside it
    centres = vi.label_centres(labels)
    assert centres[1] == (3, 3, 3)
    assert centres[2][1:] == (10, 10) and 13 <= centres[2][0] <= 14
    assert all(labels[v] == code for code, v in centres.items())


def test_clickable_mip_and_pick_find_the_hot_voxel() -> None:
    _, pet, affine, voxel, world = case()
    fig = vi.clickable_mip_figure(pet, affine=affine, suv_range=(0.0, 10.0), crosshair=voxel, max_points=200)
    heatmap, layer = fig.data[0], fig.data[-1]
    assert heatmap.colorbar.title.text == "PET SUVbw (g/mL)" and (heatmap.zmin, heatmap.zmax) == (0.0, 10.0)
    assert layer.mode == "markers" and layer.meta["layer"] == "click" and 0 < len(layer.x) <= 200
    assert "rgba(0, 0, 0, 0)" == layer.marker.color
    step = fig.layout.meta["click_step"]
    assert step >= 2 and fig.layout.meta["crosshair_mm"] == pytest.approx((world[0], world[2]))
    assert vi.mip_pick(pet, affine=affine, x_mm=world[0], z_mm=world[2]) == voxel
    near = np.argmin(np.hypot(np.asarray(layer.x) - world[0], np.asarray(layer.y) - world[2]))
    picked = vi.mip_pick(pet, affine=affine, x_mm=layer.x[near], z_mm=layer.y[near], radius=step // 2)
    assert picked == voxel  # a click on the nearest point of the click layer finds the lesion it covers


def test_hottest_voxel_and_auto_range() -> None:
    _, pet, _, voxel, _ = case()
    pet[0, 0, 0] = np.nan
    assert vi.hottest_voxel(pet) == voxel
    assert vi.auto_suv_range(pet) == (0.0, 2.0)
    assert vi.auto_suv_range(np.linspace(0, 30, 10_000).reshape(10, 10, 100))[1] == pytest.approx(30.0, abs=0.1)


def test_a_large_plane_is_drawn_every_other_voxel_with_the_crosshair_in_full_detail() -> None:
    ct, pet, affine, voxel, world = case(shape=(100, 30, 20))
    index = vi.to_ras_index(voxel, ct.shape, affine)[2]
    fig = vi.fused_slice_figure(ct, pet, affine=affine, axis="axial", index=index, crosshair=voxel, max_side=50)
    assert fig.layout.meta["step"] == 2 and np.shape(fig.data[0].z) == (15, 50)
    assert np.diff(fig.data[0].x) == pytest.approx(np.full(49, 1.6))
    assert fig.layout.meta["crosshair_mm"] == pytest.approx((world[0], world[1]))
