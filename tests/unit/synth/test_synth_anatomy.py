"""Anatomy of the simulated torso: liver shape and volume, organ contact, hepatomegaly, habitus."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from pfs_core.synth.anatomy import (
    SUBCUTANEOUS_FAT_MM,
    VARIED_KIDNEY_SHIFT_MM,
    VARIED_SCALE,
    Anatomy,
    draw_anatomy,
    organ_map,
    paint_tissues,
    tissue_at,
)
from pfs_core.synth.constants import LABEL
from pfs_core.synth.geometry import (
    PROBE_DIRECTIONS,
    CutEllipsoid,
    Cylinder,
    Ellipsoid,
    Grid,
    Liver,
    compound_volume_ml,
    rotation,
)

N_MAPS = 16  # patients whose organ maps are rendered (seeds 0..15)
NEIGHBOURS = np.ones((3, 3, 3), dtype=bool)  # 26-neighbourhood


def _anatomy(seed: int, **kwargs: float) -> Anatomy:
    return draw_anatomy(np.random.default_rng(seed), **kwargs)


@pytest.fixture(scope="module")
def organ_maps() -> list[tuple[Anatomy, Grid, np.ndarray]]:
    """Organ label maps on each patient's phantom grid (CT lattice, with the smooth deformation)."""
    out = []
    for seed in range(N_MAPS):
        anat = _anatomy(seed)
        grid = anat.phantom_grid()
        ux, uy, uz = anat.deformation.template_coords(grid)
        out.append((anat, grid, organ_map(paint_tissues(anat, ux, uy, uz, grid))))
    return out


@pytest.fixture(scope="module")
def population() -> list[Anatomy]:
    return [_anatomy(seed) for seed in range(200)]


def _touch(a: np.ndarray, b: np.ndarray) -> bool:
    return bool((ndimage.binary_dilation(a, NEIGHBOURS) & b).any())


# ----------------------------------------------------------------------------- volume
def test_compound_volume_of_known_solids() -> None:
    e = Ellipsoid.make(np.array([5.0, -3.0, 7.0]), np.array([60.0, 45.0, 70.0]), rotation(0.3, -0.2, 0.7))
    assert compound_volume_ml((e,)) == pytest.approx(e.volume_ml, rel=2e-3)
    n = np.array([-0.6, -0.4, -0.7])
    cut = CutEllipsoid(e, tuple(n / np.linalg.norm(n)), 15.0)  # type: ignore[arg-type]
    assert compound_volume_ml((cut,)) == pytest.approx(cut.volume_ml, rel=2e-3)
    far = Ellipsoid.make(np.array([200.0, 0.0, 0.0]), np.array([20.0, 25.0, 30.0]))
    assert compound_volume_ml((e, far)) == pytest.approx(e.volume_ml + far.volume_ml, rel=2e-3)
    hole = Ellipsoid.make(np.array([5.0, -3.0, 7.0]), np.array([20.0, 15.0, 25.0]))
    assert compound_volume_ml((e,), None, (hole,)) == pytest.approx(e.volume_ml - hole.volume_ml, rel=3e-3)
    slab = Cylinder(0.0, 0.0, 1000.0, 1000.0, -10.0, 10.0)  # keeps |z| <= 10 of a sphere of radius 40
    ball = Ellipsoid.make(np.zeros(3), np.full(3, 40.0))
    exact = math.pi * (40.0**2 * 20.0 - 2.0 * 10.0**3 / 3.0) / 1000.0
    assert compound_volume_ml((ball,), slab) == pytest.approx(exact, rel=3e-3)


def test_liver_volume_matches_its_point_test(population: list[Anatomy]) -> None:
    """The lattice-free volume agrees with a brute-force count of ``Liver.inside`` (clip and exclusions)."""
    for anat in population[:3]:
        liver = anat.liver
        lo, hi = liver.bbox()
        h = 2.0
        axes = [np.arange(lo[a] + 0.5 * h, hi[a], h) for a in range(3)]
        inside = liver.inside(axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :])
        assert int(inside.sum()) * h**3 / 1000.0 == pytest.approx(liver.volume_ml, rel=0.01)
        assert len(liver.exclude) > 0  # neighbours painted over it are accounted for


def test_liver_volume_matches_rasterised_liver(organ_maps: list[tuple[Anatomy, Grid, np.ndarray]]) -> None:
    for anat, grid, organs in organ_maps:
        voxels_ml = int((organs == LABEL["liver"]).sum()) * float(np.prod(grid.spacing)) / 1000.0
        assert voxels_ml == pytest.approx(anat.liver_volume_ml, rel=0.03)


def test_liver_volume_distribution(population: list[Anatomy]) -> None:
    vol = np.array([a.liver_volume_ml for a in population])
    assert 1350.0 <= float(np.median(vol)) <= 1700.0
    assert 950.0 <= float(np.percentile(vol, 5)) and float(np.percentile(vol, 95)) <= 2400.0
    assert vol.min() > 700.0 and vol.max() < 2800.0


# ---------------------------------------------------------------------------- interior
def test_interior_on_a_ball() -> None:
    ball = Liver.make((Ellipsoid.make(np.zeros(3), np.full(3, 40.0)),))
    for d in (PROBE_DIRECTIONS[0], PROBE_DIRECTIONS[3], PROBE_DIRECTIONS[9]):  # an axis and a diagonal
        pts = np.outer([34.5, 35.5, 20.0, 41.0], d)
        assert ball.interior(pts, 5.0).tolist() == [True, False, True, False]
    assert ball.interior(np.zeros((1, 3)), 39.5).tolist() == [True]
    assert ball.interior(np.zeros((1, 3)), 40.5).tolist() == [False]


def test_interior_near_the_surface_matches_the_painted_liver(population: list[Anatomy]) -> None:
    anat = population[0]
    rng = np.random.default_rng(0)
    lo, hi = anat.liver.bbox()
    pts = lo + rng.uniform(size=(6000, 3)) * (hi - lo)
    pts = pts[anat.liver.inside(pts[:, 0], pts[:, 1], pts[:, 2])][:600]
    margin = 8.0
    got = anat.liver.interior(pts, margin)
    probes = np.concatenate([pts[:, None], pts[:, None] + margin * PROBE_DIRECTIONS[None]], axis=1)
    painted = tissue_at(anat, probes.reshape(-1, 3)).reshape(len(pts), -1) == LABEL["liver"]
    np.testing.assert_array_equal(got, painted.all(axis=1))
    assert 0.1 < got.mean() < 0.9  # both deep points and points near the surface were checked
    outside = pts + 500.0
    assert not anat.liver.interior(outside, 0.0).any()


# ------------------------------------------------------------------------- hepatomegaly
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_liver_scale_scales_the_volume_by_its_cube(seed: int) -> None:
    base, big = _anatomy(seed), _anatomy(seed, liver_scale=1.2)
    k3 = 1.2**3
    assert compound_volume_ml(big.liver.parts) / compound_volume_ml(base.liver.parts) == pytest.approx(k3, rel=5e-3)
    # the painted liver loses a little more to the cavity wall and its neighbours
    assert 0.88 * k3 < big.liver_volume_ml / base.liver_volume_ml < 1.01 * k3
    # nothing else moves and the random stream is consumed alike
    assert big.kidneys == base.kidneys and big.spleen == base.spleen and big.stomach == base.stomach
    assert big.body == base.body and big.ct_grid == base.ct_grid and big.suv == base.suv
    assert big.liver_scale == 1.2 and base.liver_scale == 1.0


def test_draw_is_deterministic() -> None:
    assert _anatomy(5) == _anatomy(5)
    assert _anatomy(5) != _anatomy(6)


# ----------------------------------------------------------------------------- contact
def test_organ_contacts(organ_maps: list[tuple[Anatomy, Grid, np.ndarray]]) -> None:
    kidney = spleen = single = 0
    for _, grid, organs in organ_maps:
        liver = organs == LABEL["liver"]
        right = grid.axes()[0][:, None, None] > 0.0  # RAS: +x is the patient's right
        kidney += _touch(liver, (organs == LABEL["kidney"]) & right)
        spleen += _touch(liver, organs == LABEL["spleen"])
        single += ndimage.label(liver, NEIGHBOURS)[1] == 1
    assert kidney > N_MAPS // 2  # hepatorenal contact in most patients
    assert 1 <= spleen < N_MAPS // 2  # liver-spleen contact in a minority
    assert single >= N_MAPS - 1  # the lobes form one liver


def test_torso_fits_the_grid_and_organs_present(organ_maps: list[tuple[Anatomy, Grid, np.ndarray]]) -> None:
    for _, _, organs in organ_maps:
        for face in (organs[0], organs[-1], organs[:, 0], organs[:, -1]):
            assert not face.any()
        present = set(np.unique(organs).tolist())
        assert {LABEL[n] for n in ("liver", "spleen", "kidney", "adrenal", "pancreas", "bowel")} <= present


# ------------------------------------------------------------------------------ habitus
def test_habitus_and_spleen_vary(population: list[Anatomy]) -> None:
    fat = np.array([a.body.fat_mm for a in population])
    assert SUBCUTANEOUS_FAT_MM[0] <= fat.min() and fat.max() <= SUBCUTANEOUS_FAT_MM[1]
    assert np.percentile(fat, 10) < 10.0 and np.percentile(fat, 90) > 25.0
    spleen = np.array([a.spleen.volume_ml for a in population])
    assert 150.0 < float(np.median(spleen)) < 260.0
    assert (spleen > 500.0).any()  # occasional splenomegaly
    right_kidney_z = np.array([a.kidneys[0].centre[2] - a.z_diaphragm for a in population])
    assert float(np.std(right_kidney_z)) > 8.0  # kidney level varies by about a vertebra


# ------------------------------------------------------------------- varied anatomy
def _varied(seed: int) -> tuple[Anatomy, Anatomy, bool]:
    """(standard, varied) anatomy of one seed, and whether both left ``rng`` in the same state."""
    rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
    standard = draw_anatomy(rng_a)
    varied = draw_anatomy(rng_b, variation=np.random.default_rng(1000 + seed))
    return standard, varied, rng_a.random() == rng_b.random()


def test_varied_anatomy_moves_kidneys_and_spleen() -> None:
    for seed in range(6):
        standard, varied, same_stream = _varied(seed)
        assert same_stream  # the variation's draws come from its own generator
        # the right lobe, body and spine stay (the left lobe's tip follows the spleen, as in the standard draw)
        assert varied.liver.parts[0] == standard.liver.parts[0]
        assert varied.body == standard.body and varied.spine == standard.spine
        assert varied.spleen != standard.spleen
        left_std, left_var = standard.kidneys[1], varied.kidneys[1]
        shift = np.asarray(left_var.centre) - np.asarray(left_std.centre)
        lateral = -shift[0]  # the left kidney: lateral is -x (RAS)
        for value, (lo, hi) in zip((lateral, shift[1], shift[2]), VARIED_KIDNEY_SHIFT_MM, strict=True):
            assert lo - 1e-9 <= value <= hi + 1e-9
        assert len(varied.organs) == len(standard.organs) + 2  # the two quadratus lumborum muscles
        k = np.asarray(left_var.radii) / np.asarray(left_std.radii)
        assert np.allclose(k, k[0]) and VARIED_SCALE[0] <= k[0] <= VARIED_SCALE[1]


def test_varied_right_kidney_stays_outside_the_liver() -> None:
    for seed in range(12):
        _, varied, _ = _varied(seed)
        kidney = varied.kidneys[0]
        grid = varied.phantom_grid()
        ux, uy, uz = (np.asarray(a, float) for a in np.meshgrid(*grid.axes(), indexing="ij"))
        inside = kidney.inside(ux, uy, uz)
        painted_liver = varied.liver.inside(ux[inside], uy[inside], uz[inside])
        assert painted_liver.mean() < 0.5  # never moved deep into the liver
