"""Lesion and organ outlines in the slices and the projection, lesion and organ surfaces in 3D."""

from __future__ import annotations

import numpy as np
import pytest

from pfs_core.errors import InputError
from pfs_core.io.organs import ORGANS
from pfs_core.viz import images as vi
from pfs_core.viz import mesh as geometry
from pfs_core.viz.scene import mesh3d_figure

STATUS = {1: "SSTR-positive", 2: "SSTR-negative", 3: "SSTR-positive"}


def case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CT, affine (LPS-stored, anisotropic), lesion ids 1-3 and an organ map (liver, spleen) on one grid."""
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])
    affine[:3, 3] = (30.0, 20.0, -40.0)
    ct = np.full((30, 24, 16), 40.0, np.float32)
    lesions = np.zeros(ct.shape, np.int32)
    lesions[4:9, 4:9, 6:10] = 1
    lesions[15:20, 12:16, 6:10] = 2
    lesions[22:25, 3:6, 2:4] = 3  # not in slice 7
    organs = np.zeros(ct.shape, np.uint8)
    organs[2:14, 2:20, 3:13] = 1  # liver
    organs[18:28, 16:22, 5:9] = 2  # spleen
    return ct, affine, lesions, organs


def axial_index(affine: np.ndarray, voxel_k: int, shape: tuple[int, int, int]) -> int:
    ras, _ = vi.to_ras(np.arange(np.prod(shape)).reshape(shape), affine)
    return int(np.argwhere(ras == np.ravel_multi_index((0, 0, voxel_k), shape))[0][2])


def traces(fig, layer: str) -> dict[str, object]:
    return {t.name: t for t in fig.data if t.meta and t.meta.get("layer") == layer}


def test_slice_outlines_one_trace_per_status_in_its_colour() -> None:
    ct, affine, lesions, organs = case()
    outlines = vi.Outlines(lesions=lesions, lesion_status=STATUS)
    fig = vi.slice_figure(ct, None, affine=affine, axis="axial", index=axial_index(affine, 7, ct.shape),
                          outlines=outlines)
    drawn = traces(fig, "lesions")
    assert list(drawn) == ["SSTR-positive lesions", "SSTR-negative lesions"]
    assert [t.line.color for t in drawn.values()] == [vi.STATUS_COLORS["SSTR-positive"],
                                                     vi.STATUS_COLORS["SSTR-negative"]]
    assert vi.STATUS_COLORS["SSTR-positive"] != vi.STATUS_COLORS["SSTR-negative"]
    positive, negative = drawn.values()
    assert positive.meta["n_outlines"] == 1 and positive.meta["n_lesions"] == 2  # lesion 3 is in another slice
    assert set(t for t in positive.text if t) == {"lesion 1 (SSTR-positive)"}
    assert set(t for t in negative.text if t) == {"lesion 2 (SSTR-negative)"}
    assert not traces(fig, "organs")  # the organ layer is off unless given


def test_outline_lies_on_the_lesion_boundary_in_world_mm() -> None:
    ct, affine, lesions, _ = case()
    fig = vi.slice_figure(ct, None, affine=affine, axis="axial", index=axial_index(affine, 7, ct.shape),
                          outlines=vi.Outlines(lesions=lesions, lesion_status={1: "SSTR-positive"}))
    line = traces(fig, "lesions")["SSTR-positive lesions"]
    x = np.array([v for v in line.x if v is not None])
    y = np.array([v for v in line.y if v is not None])
    corners = np.array([affine @ [i, j, 7, 1] for i in (4, 8) for j in (4, 8)])[:, :2]  # voxel centres
    # halfway between the outermost lesion voxels and their neighbours: one voxel wider than the centres
    assert (x.min(), x.max()) == pytest.approx((corners[:, 0].min() - 1.0, corners[:, 0].max() + 1.0))
    assert (y.min(), y.max()) == pytest.approx((corners[:, 1].min() - 1.0, corners[:, 1].max() + 1.0))


def test_organ_layer_toggles_and_uses_dotted_named_lines() -> None:
    ct, affine, lesions, organs = case()
    names = {1: "liver", 2: "spleen"}
    index = axial_index(affine, 7, ct.shape)
    on = vi.slice_figure(ct, None, affine=affine, axis="axial", index=index,
                         outlines=vi.Outlines(lesions=lesions, lesion_status=STATUS, organs=organs, organ_names=names))
    off = vi.slice_figure(ct, None, affine=affine, axis="axial", index=index,
                          outlines=vi.Outlines(lesions=lesions, lesion_status=STATUS))
    drawn = traces(on, "organs")
    assert list(drawn) == ["liver", "spleen"]
    assert all(t.line.dash == "dot" for t in drawn.values())
    assert drawn["liver"].line.color == vi.ORGAN_COLORS["liver"]
    assert not traces(off, "organs") and len(traces(on, "lesions")) == len(traces(off, "lesions")) == 2
    assert vi.organ_label("kidney_right") == "kidney (right)"


def test_mip_outlines_every_projected_lesion() -> None:
    ct, affine, lesions, organs = case()
    pet = np.ones(ct.shape, np.float32)
    fig = vi.mip_figure(pet, None, affine=affine, outlines=vi.Outlines(
        lesions=lesions, lesion_status=STATUS, organs=organs, organ_names=dict(ORGANS)))
    drawn = traces(fig, "lesions")
    assert drawn["SSTR-positive lesions"].meta["n_outlines"] == 2  # lesions 1 and 3, whatever their slice
    assert drawn["SSTR-negative lesions"].meta["n_outlines"] == 1
    organ_traces = traces(fig, "organs")
    assert organ_traces["liver"].meta["n_outlines"] == 1 and organ_traces["pancreas"].meta["n_outlines"] == 0


def test_outline_errors() -> None:
    ct, affine, lesions, _ = case()
    with pytest.raises(InputError, match="lesion label map"):
        vi.slice_figure(ct, None, affine=affine, axis="axial", index=0,
                        outlines=vi.Outlines(lesions=lesions[:-1], lesion_status=STATUS))
    with pytest.raises(ValueError, match="status"):
        vi.mip_figure(ct, None, affine=affine, outlines=vi.Outlines(lesions=lesions, lesion_status={1: "hot"}))


def test_lesion_surfaces_by_status_and_optional_organs() -> None:
    _, affine, lesions, organs = case()
    meshes = geometry.lesion_surfaces(lesions, affine, STATUS)
    assert [(m.name, m.color) for m in meshes] == [("SSTR-positive lesions", vi.STATUS_COLORS["SSTR-positive"]),
                                                   ("SSTR-negative lesions", vi.STATUS_COLORS["SSTR-negative"])]
    assert all(not m.is_empty for m in meshes)
    low, high = meshes[1].bounds()  # lesion 2: voxels 15-19, 12-15, 6-9, within about half a voxel (smoothing moves it a little)
    centres = np.array([affine @ [i, j, k, 1] for i in (15, 19) for j in (12, 15) for k in (6, 9)])[:, :3]
    assert np.all(low >= centres.min(axis=0) - [1.3, 1.3, 1.9]) and np.all(high <= centres.max(axis=0) + [1.3, 1.3, 1.9])
    only_negative = geometry.lesion_surfaces(lesions, affine, {2: "SSTR-negative"})
    assert [m.name for m in only_negative] == ["SSTR-negative lesions"]
    organ_meshes = geometry.organ_surfaces(organs, affine, ORGANS)
    assert [m.name for m in organ_meshes] == ["liver", "spleen"]
    assert organ_meshes[0].color == vi.ORGAN_COLORS["liver"] and organ_meshes[0].opacity < 0.5
    fig = mesh3d_figure([*meshes, *organ_meshes])
    assert [t.color for t in fig.data[:2]] == [vi.STATUS_COLORS["SSTR-positive"], vi.STATUS_COLORS["SSTR-negative"]]
    with pytest.raises(InputError, match="integer"):
        geometry.lesion_surfaces(lesions.astype(float), affine, STATUS)
