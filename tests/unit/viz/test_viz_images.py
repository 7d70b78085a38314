"""pfs_core.viz.images: radiological orientation, aspect ratio from the spacing, transparent overlay."""

from __future__ import annotations

import numpy as np
import pytest

from pfs_core.errors import InputError
from pfs_core.viz import images as vi


def lps_affine() -> np.ndarray:
    """Stored as DICOM usually is: x towards the left, y posterior; anisotropic voxels."""
    affine = np.diag([-0.8, -0.8, 3.0, 1.0])
    affine[:3, 3] = (20.0, 15.0, -60.0)
    return affine


def marked_volume(shape=(40, 30, 20)) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], np.ndarray]:
    """CT-like noise with one bright voxel; returns volume, affine, its voxel index and world position."""
    affine = lps_affine()
    volume = np.random.default_rng(0).normal(0.0, 30.0, shape).astype(np.float32)
    voxel = (7, 21, 13)
    volume[voxel] = 2000.0
    return volume, affine, voxel, (affine @ np.array([*voxel, 1.0]))[:3]


def hottest_position(trace) -> tuple[float, float]:
    z = np.asarray(trace.z, dtype=float)
    row, col = np.unravel_index(np.nanargmax(z), z.shape)
    return float(trace.x[col]), float(trace.y[row])


@pytest.mark.parametrize(("axis", "screen"), [("axial", (0, 1)), ("coronal", (0, 2)), ("sagittal", (1, 2))])
def test_bright_voxel_is_drawn_at_its_world_position(axis: str, screen: tuple[int, int]) -> None:
    volume, affine, _, world = marked_volume()
    normal = {"sagittal": 0, "coronal": 1, "axial": 2}[axis]
    ras, ras_affine = vi.to_ras(volume, affine)
    index = int(np.argwhere(ras == 2000.0)[0][normal])
    fig = vi.slice_figure(volume, None, affine=affine, axis=axis, index=index, opacity=0.5, background_kind="ct")
    x, y = hottest_position(fig.data[0])
    assert (x, y) == pytest.approx((world[screen[0]], world[screen[1]]), abs=1e-6)
    assert fig.layout.meta["position_mm"] == pytest.approx(world[normal])
    xr = fig.layout.xaxis.range
    assert xr[0] > xr[1]  # radiological: patient's right (larger x) / anterior (larger y) on the left
    assert fig.layout.yaxis.range[0] < fig.layout.yaxis.range[1]


def test_aspect_ratio_follows_the_spacing() -> None:
    volume, affine, _, _ = marked_volume()
    fig = vi.slice_figure(volume, None, affine=affine, axis="coronal", index=5, opacity=0.5, background_kind="ct")
    trace = fig.data[0]
    assert np.diff(trace.x) == pytest.approx(np.full(len(trace.x) - 1, 0.8))
    assert np.diff(trace.y) == pytest.approx(np.full(len(trace.y) - 1, 3.0))
    assert np.shape(trace.z) == (20, 40)  # rows = z slices, columns = x voxels
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio == 1
    assert fig.layout.meta["spacing_mm"] == pytest.approx((0.8, 3.0))
    letters = {a.text for a in fig.layout.annotations}
    assert letters == {"R", "L", "S", "I"}
    assert "mm" in fig.layout.xaxis.title.text and "mm" in fig.layout.yaxis.title.text


def test_overlay_is_transparent_where_it_is_near_zero() -> None:
    volume, affine, _, _ = marked_volume()
    cam = np.zeros_like(volume)
    cam[10:20, 10:20, 5:10] = 1.0
    cam[0, 0, :] = 0.02  # below 10 % of the peak
    fig = vi.slice_figure(volume, cam, affine=affine, axis="axial", index=7, opacity=0.4, background_kind="ct")
    assert [t.name for t in fig.data] == ["CT", "Grad-CAM"]
    overlay = np.asarray(fig.data[1].z, dtype=float)
    assert np.isnan(overlay).sum() == overlay.size - 100
    assert fig.data[1].opacity == 0.4
    assert (fig.data[0].zmin, fig.data[0].zmax) == (-160.0, 240.0)


def test_pet_background_and_bad_arguments() -> None:
    volume, affine, _, _ = marked_volume()
    pet = np.abs(volume) / 10.0
    fig = vi.slice_figure(pet, None, affine=affine, axis="axial", index=3, opacity=0.5, background_kind="pet")
    assert fig.data[0].zmin == 0.0 and fig.data[0].colorscale[0][1] == "rgb(255, 255, 255)"  # inverse grey
    assert vi.slice_count(volume.shape, affine, "axial") == 20
    with pytest.raises(ValueError, match="0 … 19"):
        vi.slice_figure(volume, None, affine=affine, axis="axial", index=20, opacity=0.5, background_kind="ct")
    with pytest.raises(InputError, match="shape"):
        vi.slice_figure(volume, volume[:-1], affine=affine, axis="axial", index=2, opacity=0.5, background_kind="ct")


def test_mip_projects_along_anterior_posterior() -> None:
    volume, affine, _, world = marked_volume()
    pet = np.full(volume.shape, 1.0, np.float32)
    pet[7, 21, 13] = 25.0
    fig = vi.mip_figure(pet, pet / 25.0, affine=affine, opacity=0.6)
    assert [t.name for t in fig.data] == ["PET MIP", "Grad-CAM"]
    assert hottest_position(fig.data[0]) == pytest.approx((world[0], world[2]))
    assert np.shape(fig.data[0].z) == (20, 40)
    assert fig.layout.xaxis.range[0] > fig.layout.xaxis.range[1]
