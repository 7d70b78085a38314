"""pfs_core.viz.mesh: meshes land at known world positions, budgets hold, renderings are not blank."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pfs_core.errors import InputError
from pfs_core.viz import mesh as geometry
from pfs_core.viz.mesh import Mesh


def rotation_z(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])


def affine_lps_anisotropic() -> np.ndarray:
    """LPS-flipped x and y, anisotropic voxels, offset origin."""
    return np.array([[-1.2, 0.0, 0.0, 85.0], [0.0, -0.9, 0.0, 40.0], [0.0, 0.0, 2.5, -310.0], [0, 0, 0, 1.0]])


def affine_oblique_permuted() -> np.ndarray:
    """Voxel axes permuted (j → -z, k → y), x mirrored, rotated 25° about z, offset origin."""
    matrix = np.array([[-1.5, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, -2.5, 0.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation_z(25.0) @ matrix
    affine[:3, 3] = (-20.0, 130.0, 75.0)
    return affine


def world_of_voxels(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    return index @ affine[:3, :3].T + affine[:3, 3]


def sphere_volume(shape: tuple[int, int, int], affine: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance ``radius - |x - centre|`` (mm) sampled at every voxel centre: level 0 is the sphere."""
    return (radius - np.linalg.norm(world_of_voxels(shape, affine) - centre, axis=-1)).astype(np.float32)


def centre_off_grid(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """A world point near (not at) the middle of the grid, off the voxel centres."""
    index = np.array([0.41, 0.57, 0.46]) * (np.array(shape) - 1) + np.array([0.3, -0.2, 0.35])
    return affine[:3, :3] @ index + affine[:3, 3]


@pytest.mark.parametrize("make_affine", [affine_lps_anisotropic, affine_oblique_permuted])
def test_sphere_lands_at_its_world_position(make_affine) -> None:
    affine = make_affine()
    shape = (48, 70, 40)  # the sphere lies well inside the grid along every axis
    centre = centre_off_grid(shape, affine)
    radius = 22.0
    mesh = geometry.isosurface(sphere_volume(shape, affine, centre, radius), affine, level=0.0, name="sphere",
                               color="#E69F00")
    voxel = np.linalg.norm(affine[:3, :3], axis=0)
    assert not mesh.is_empty
    assert np.linalg.norm(mesh.centroid() - centre) < 0.5 * voxel.min()
    distance = np.linalg.norm(mesh.vertices.astype(float) - centre, axis=1)
    assert np.abs(distance - radius).max() < 0.5 * voxel.max()
    assert mesh.enclosed_volume_mm3() == pytest.approx(4.0 / 3.0 * np.pi * radius**3, rel=0.05)


@pytest.mark.parametrize("make_affine", [lambda: np.diag([2.0, 3.0, 1.5, 1.0]), affine_lps_anisotropic,
                                         affine_oblique_permuted])
def test_closed_surfaces_have_outward_normals(make_affine) -> None:
    affine = make_affine()
    shape = (30, 30, 30)
    mesh = geometry.isosurface(sphere_volume(shape, affine, centre_off_grid(shape, affine), 15.0), affine,
                               level=0.0, name="s", color="#000000")
    a, b, c = (mesh.vertices[mesh.faces[:, i]].astype(float) for i in range(3))
    assert np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0 > 0


def test_surface_touching_the_edge_is_capped_at_the_outer_voxel_centres() -> None:
    affine = affine_lps_anisotropic()
    shape = (6, 5, 4)
    mesh = geometry.isosurface(np.ones(shape, np.float32), affine, level=0.5, name="box", color="#000000")
    corners = world_of_voxels(shape, affine).reshape(-1, 3)
    low, high = mesh.bounds()
    np.testing.assert_allclose(low, corners.min(axis=0), atol=0.05)
    np.testing.assert_allclose(high, corners.max(axis=0), atol=0.05)
    box = np.prod((np.array(shape) - 1) * np.abs(np.diag(affine)[:3]))
    assert mesh.enclosed_volume_mm3() == pytest.approx(box, rel=0.02)


def test_budget_holds_on_a_big_noisy_volume() -> None:
    noise = np.random.default_rng(1).normal(size=(80, 80, 80)).astype(np.float32)
    mesh = geometry.isosurface(noise, np.diag([1.0, 1.0, 2.0, 1.0]), level=0.0, name="noise", color="#000000",
                               max_triangles=5_000)
    assert 0 < mesh.n_triangles <= 5_000


def test_reduced_sphere_keeps_its_position_and_volume() -> None:
    affine = affine_lps_anisotropic()
    shape = (70, 90, 36)
    centre = centre_off_grid(shape, affine)
    volume = sphere_volume(shape, affine, centre, 30.0)
    full = geometry.isosurface(volume, affine, level=0.0, name="s", color="#000000", max_triangles=10**6)
    reduced = geometry.isosurface(volume, affine, level=0.0, name="s", color="#000000", max_triangles=2_000)
    assert full.n_triangles > 2_000 >= reduced.n_triangles
    assert np.linalg.norm(reduced.centroid() - centre) < 1.0
    assert reduced.enclosed_volume_mm3() == pytest.approx(4.0 / 3.0 * np.pi * 30.0**3, rel=0.10)


def test_no_hotspot_gives_an_empty_mesh() -> None:
    pet = np.full((20, 20, 20), 2.0, np.float32)
    mesh = geometry.pet_hotspots(pet, np.eye(4), suv_level=5.0)
    assert mesh.is_empty and mesh.n_triangles == 0 and mesh.vertices.shape == (0, 3)
    assert mesh.name == "PET SUV ≥ 5"
    assert np.isnan(mesh.centroid()).all()


def test_hotspots_follow_the_suv_level() -> None:
    pet = np.zeros((30, 30, 30), np.float32)
    pet[5:10, 5:10, 5:10] = 8.0
    pet[20:25, 20:25, 20:25] = 3.0
    both = geometry.pet_hotspots(pet, np.eye(4), suv_level=2.0)
    hot = geometry.pet_hotspots(pet, np.eye(4), suv_level=5.0)
    assert hot.bounds()[1].max() < 11 < both.bounds()[1].max()


def test_block_mean_averages_edge_padded_blocks_and_maps_to_their_centres() -> None:
    volume = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)  # value 12 i + 3 j + k
    coarse, transform = geometry._block_mean(volume, (2, 2, 1))
    assert coarse.shape == (3, 2, 3) and coarse.dtype == np.float32
    assert coarse[0, 0, 0] == 7.5  # i 0-1, j 0-1: 12 * 0.5 + 3 * 0.5
    assert coarse[1, 1, 2] == 39.5  # i 2-3, j 2-3, k 2: 12 * 2.5 + 3 * 2.5 + 2
    assert coarse[2, 0, 1] == 50.5  # i 4 and its edge copy (a zero pad would give 25.25): 48 + 1.5 + 1
    np.testing.assert_allclose(transform @ [2.0, 1.0, 2.0, 1.0], [4.5, 2.5, 2.0, 1.0])  # the block's centre
    mask = np.zeros((4, 4, 3), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = mask[3, 2, 1] = mask[2, 2, 2] = True
    fraction, transform = geometry._block_mean(mask, (2, 2, 2))
    assert fraction.dtype == np.float32
    np.testing.assert_array_equal(fraction[:, :, 0], [[0.25, 0.0], [0.0, 0.125]])  # 2 and 1 of 8 voxels
    np.testing.assert_array_equal(fraction[:, :, 1], [[0.0, 0.0], [0.0, 0.25]])  # (2, 2, 2) + its k copy: 2 of 8
    np.testing.assert_allclose(transform @ [0.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 1.0])
    same, identity = geometry._block_mean(mask, (1, 1, 1))
    np.testing.assert_array_equal(same, mask.astype(np.float32))
    np.testing.assert_array_equal(identity, np.eye(4))


def body_phantom() -> tuple[np.ndarray, np.ndarray, float]:
    """CT with an elliptic body (lungs inside, open at the top) and a separate table; returns ct, affine, body volume."""
    shape = (56, 44, 30)
    affine = np.diag([-6.0, -6.0, 8.0, 1.0])
    affine[:3, 3] = (165.0, 129.0, -116.0)
    world = world_of_voxels(shape, affine)
    x, y = world[..., 0], world[..., 1]
    ct = np.full(shape, -1000.0, np.float32)
    body = (x / 140.0) ** 2 + (y / 90.0) ** 2 < 1.0
    ct[body] = 40.0
    ct[((np.abs(x) - 55.0) / 35.0) ** 2 + (y / 45.0) ** 2 < 1.0] = -850.0  # lungs reach the top slice
    ct[(y < -105.0) & (y > -120.0) & (np.abs(x) < 150.0)] = 200.0  # table, separated by air
    length = (shape[2] - 1) * 8.0
    return ct, affine, np.pi * 140.0 * 90.0 * length


def test_body_surface_is_the_skin_only() -> None:
    ct, affine, expected = body_phantom()
    mesh = geometry.body_surface(ct, affine, max_triangles=20_000)
    assert 0 < mesh.n_triangles <= 20_000
    low, high = mesh.bounds()
    assert low[1] > -100.0  # the table (y < -105 mm) is not part of it
    # lungs filled: one closed surface whose volume is the body's, not body minus lungs
    assert mesh.enclosed_volume_mm3() == pytest.approx(expected, rel=0.10)
    assert np.linalg.norm(mesh.centroid()[:2]) < 6.0


def test_body_surface_on_a_block_averaged_ct_keeps_its_place(monkeypatch) -> None:
    ct, affine, expected = body_phantom()
    monkeypatch.setattr(geometry, "BODY_MAX_VOXELS", ct.size // 10)  # forces 2-4x coarser blocks
    mesh = geometry.body_surface(ct, affine, max_triangles=20_000)
    assert mesh.enclosed_volume_mm3() == pytest.approx(expected, rel=0.10)
    assert np.linalg.norm(mesh.centroid()[:2]) < 6.0


def test_body_surface_of_air_is_empty() -> None:
    assert geometry.body_surface(np.full((10, 10, 10), -1000.0), np.eye(4)).is_empty


def test_case_scene_respects_the_total_budget() -> None:
    ct, ct_affine, _ = body_phantom()
    pet_affine = np.diag([4.0, 4.0, 4.0, 1.0])
    pet_affine[:3, 3] = (-100.0, -80.0, -100.0)
    centre = np.array([30.0, 10.0, 0.0])
    pet = 1.0 + 10.0 * np.clip(sphere_volume((50, 40, 50), pet_affine, centre, 20.0), 0, None)
    cam = np.clip(sphere_volume(ct.shape, ct_affine, centre, 30.0) / 30.0, 0.0, 1.0)
    meshes = geometry.case_scene(ct, ct_affine, pet, pet_affine, cam, ct_affine, suv_level=5.0, cam_level=0.5,
                                 max_triangles_total=8_000)
    assert [m.name for m in meshes] == ["Body surface", "PET SUV ≥ 5", "Grad-CAM ≥ 0.5"]
    assert all(not m.is_empty for m in meshes)
    assert sum(m.n_triangles for m in meshes) <= 8_000
    assert np.linalg.norm(meshes[1].centroid() - centre) < 4.0
    without_pet = geometry.case_scene(ct, ct_affine, None, None, None, None, suv_level=5.0)
    assert [m.name for m in without_pet] == ["Body surface"]
    with pytest.raises(ValueError, match="max_triangles_total"):
        geometry.case_scene(ct, ct_affine, None, None, None, None, suv_level=5.0, max_triangles_total=3_000)


def test_mesh_round_trips_through_polydata_and_is_read_only() -> None:
    mesh = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]),
                np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]), name="tet", color="#0072B2", opacity=0.4)
    back = Mesh.from_polydata(mesh.to_polydata(), name="tet", color="#0072B2", opacity=0.4)
    np.testing.assert_array_equal(back.vertices, mesh.vertices)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    assert mesh.enclosed_volume_mm3() == pytest.approx(1.0 / 6.0)
    with pytest.raises(ValueError):
        mesh.vertices[0, 0] = 5.0
    assert dataclasses.replace(mesh, color="#E69F00").color == "#E69F00"
    with pytest.raises(ValueError, match="face indices"):
        Mesh(np.zeros((3, 3)), np.array([[0, 1, 3]]), name="bad")
    with pytest.raises(ValueError, match="color"):
        Mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]), name="bad", color="orange")


def test_bad_inputs_are_reported() -> None:
    with pytest.raises(InputError, match="3D volume"):
        geometry.isosurface(np.zeros((10, 10)), np.eye(4), level=0.5, name="flat", color="#000000")
    with pytest.raises(InputError, match="singular"):
        geometry.isosurface(np.zeros((4, 4, 4)), np.diag([1.0, 0.0, 1.0, 1.0]), level=0.5, name="v",
                            color="#000000")
    with pytest.raises(ValueError, match="max_triangles"):
        geometry.isosurface(np.zeros((4, 4, 4)), np.eye(4), level=0.5, name="v", color="#000000", max_triangles=10)


def two_spheres() -> list[Mesh]:
    """Orange sphere at the patient's right (+x), blue at the left (-x)."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -40.0
    shape = (41, 41, 41)
    right = geometry.isosurface(sphere_volume(shape, affine, np.array([20.0, 0, 0]), 12.0), affine, level=0.0,
                                name="right", color="#E69F00", opacity=1.0)
    left = geometry.isosurface(sphere_volume(shape, affine, np.array([-20.0, 0, 0]), 12.0), affine, level=0.0,
                               name="left", color="#0072B2", opacity=1.0)
    return [right, left]


def test_render_png_writes_a_radiological_picture(tmp_path) -> None:
    from PIL import Image

    path = geometry.render_png(two_spheres(), tmp_path / "out" / "scene.png", size=(240, 200), view="anterior",
                               legend=False)
    assert path.is_file() and path.stat().st_size > 1_000
    image = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert image.shape == (200, 240, 3)
    assert image.std() > 10.0
    red, blue = image[..., 0], image[..., 2]
    orange = (red > 120) & (red - blue > 60)  # shaded orange: red well above blue
    bluish = (blue > 80) & (blue - red > 40)
    assert orange.sum() > 200 and bluish.sum() > 200
    columns = np.arange(image.shape[1])[None, :]
    # viewed from the front, the patient's right lies on the picture's left
    assert (columns * orange).sum() / orange.sum() < 0.5 * image.shape[1] < (columns * bluish).sum() / bluish.sum()


def test_render_png_shows_translucent_surfaces(tmp_path) -> None:
    from PIL import Image

    translucent = [dataclasses.replace(m, opacity=0.3) for m in two_spheres()]
    path = geometry.render_png(translucent, tmp_path / "glass.png", size=(120, 100), view="iso", legend=False)
    image = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert (np.abs(image - 255.0).max(axis=-1) > 30).sum() > 500  # not a white page


def test_render_png_of_an_empty_scene_still_writes(tmp_path) -> None:
    path = geometry.render_png([Mesh.empty(name="PET SUV ≥ 4")], tmp_path / "empty.png", size=(64, 64))
    assert path.stat().st_size > 100
    with pytest.raises(ValueError, match="view"):
        geometry.render_png([], tmp_path / "x.png", view="sideways")  # type: ignore[arg-type]
