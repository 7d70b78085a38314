"""Geometry and intensities of the simulated PET/CT."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from pfs_core.synth import ORGAN_LABELS, imaging
from pfs_core.synth.anatomy import paint_tissues
from pfs_core.synth.constants import CONTRAST_PHASES
from pfs_core.synth.geometry import Ellipsoid
from pfs_core.synth.lesions import Lesion
from pfs_core.synth.patient import PatientAttributes, draw_attributes, patient_streams

LABEL = {v: k for k, v in ORGAN_LABELS.items()}


def _load(folder: Path, pid: str, kind: str) -> nib.Nifti1Image:
    return nib.load(str(folder / "images" / f"{pid}_{kind}.nii.gz"))


def _ids(folder: Path) -> list[str]:
    return list(pd.read_csv(folder / "cohort.csv")["patient_id"])


def _box(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    corners = np.array([[i, j, k, 1] for i in (0, img.shape[0] - 1) for j in (0, img.shape[1] - 1)
                        for k in (0, img.shape[2] - 1)], dtype=float)
    world = (img.affine @ corners.T).T[:, :3]
    return world.min(axis=0), world.max(axis=0)


def _sample(img: nib.Nifti1Image, data: np.ndarray, world: np.ndarray) -> np.ndarray:
    """Trilinear sample of ``data`` at world points (N, 3) mm."""
    idx = (np.linalg.inv(img.affine) @ np.c_[world, np.ones(len(world))].T)[:3]
    return ndimage.map_coordinates(data, idx, order=1, mode="nearest")


def test_files_types_and_grids(image_cohort: Path) -> None:
    cohort = pd.read_csv(image_cohort / "cohort.csv")
    for _, row in cohort.iterrows():
        ct = nib.load(str(image_cohort / row["ct"]))
        pet = nib.load(str(image_cohort / row["pet"]))
        les = _load(image_cohort, row["patient_id"], "lesions")
        org = _load(image_cohort, row["patient_id"], "organs")
        assert ct.get_data_dtype() == np.int16 and pet.get_data_dtype() == np.float32
        assert les.get_data_dtype() == np.uint16 and org.get_data_dtype() == np.uint8
        assert les.shape == org.shape == ct.shape
        assert np.allclose(les.affine, ct.affine) and np.allclose(org.affine, ct.affine)
        assert nib.aff2axcodes(ct.affine) == ("R", "A", "S") == nib.aff2axcodes(pet.affine)
        zooms_ct, zooms_pet = ct.header.get_zooms(), pet.header.get_zooms()
        assert 2.5 <= zooms_ct[0] <= 3.0 and zooms_ct[0] == zooms_ct[1] and zooms_ct[2] == pytest.approx(3.0)
        assert 4.0 <= zooms_pet[0] <= 4.7 and 4.0 <= zooms_pet[2] <= 5.0
        assert 330 <= ct.shape[2] * zooms_ct[2] <= 381
        # real affines with an origin, different between PET and CT
        assert np.abs(ct.affine[:3, 3]).max() > 100
        assert not np.allclose(ct.affine[:3, 3], pet.affine[:3, 3], atol=1.0)
        # the world boxes overlap by a large fraction of the CT
        (c0, c1), (p0, p1) = _box(ct), _box(pet)
        inter = np.clip(np.minimum(c1, p1) - np.maximum(c0, p0), 0, None).prod()
        assert inter / (c1 - c0).prod() > 0.7


def test_lesion_centres_land_in_labels_and_hotspots(image_cohort: Path) -> None:
    """Cohort lesions: centres in their labels, SSTR-positive ones hot, SSTR-negative ones cold.

    Hot = PET maximum over the lesion's voxels (a necrotic core or the breathing motion may
    lower the centre); cold lesions of drawn patients are checked where the cohort has any,
    synthetic ones always (test_negative_necrotic_and_graded_lesions).
    """
    lesions = pd.read_csv(image_cohort / "lesions.csv")
    truth = pd.read_csv(image_cohort / "ground_truth.csv").set_index("patient_id")
    assert "liver" in set(lesions["site"]) and lesions["site"].nunique() >= 2
    checked_hot = 0
    for pid, rows in lesions.groupby("patient_id"):
        les_img = _load(image_cohort, pid, "lesions")
        pet_img = _load(image_cohort, pid, "pet")
        les, pet = np.asarray(les_img.dataobj), pet_img.get_fdata(dtype=np.float32)
        centres = rows[["centre_x_mm", "centre_y_mm", "centre_z_mm"]].to_numpy()
        idx = np.rint((np.linalg.inv(les_img.affine) @ np.c_[centres, np.ones(len(rows))].T)[:3]).astype(int)
        assert (les[tuple(idx)] == rows["lesion_label"].to_numpy()).all()
        assert set(np.unique(les)) - {0} == set(rows["lesion_label"])
        liver_suv = truth.loc[pid, "liver_suv"]
        at_centre = _sample(pet_img, pet, centres)
        for (_, row), value in zip(rows.iterrows(), at_centre, strict=True):
            if row["volume_ml"] < 2.0:
                continue
            if row["sstr_negative"] == 0 and row["suv_mean"] >= 1.8 * liver_suv:
                world = nib.affines.apply_affine(les_img.affine, np.argwhere(les == row["lesion_label"]))
                assert float(_sample(pet_img, pet, world).max()) > 1.2 * liver_suv, row.to_dict()
                checked_hot += 1
            elif row["sstr_negative"] == 1:
                assert value < liver_suv, row.to_dict()
    assert checked_hot >= 3


def test_tissue_values(image_cohort: Path) -> None:
    # portal-venous phase (the default)
    hu_range = {
        "lung": (-900, -780), "fat": (-130, -70), "soft_tissue": (40, 80), "liver": (95, 130), "spleen": (95, 135),
        "kidney": (125, 210), "bladder": (-10, 25), "bone": (200, 900), "heart_vessels": (120, 200),
    }
    for pid in _ids(image_cohort):
        ct_img, pet_img = _load(image_cohort, pid, "ct"), _load(image_cohort, pid, "pet")
        ct = np.asarray(ct_img.dataobj)
        organs = np.asarray(_load(image_cohort, pid, "organs").dataobj)
        assert (ct[organs == 0] == -1000).all()
        for name, (lo, hi) in hu_range.items():
            median = float(np.median(ct[organs == LABEL[name]]))
            assert lo <= median <= hi, (pid, name, median)
        # PET ordering spleen > kidney > liver > background, away from organ borders
        pet = pet_img.get_fdata(dtype=np.float32)
        lesion_free = np.asarray(_load(image_cohort, pid, "lesions").dataobj) == 0
        medians = {}
        for name in ("spleen", "kidney", "liver", "soft_tissue"):
            core = ndimage.binary_erosion(organs == LABEL[name], iterations=2) & lesion_free
            world = nib.affines.apply_affine(ct_img.affine, np.argwhere(core))
            medians[name] = float(np.median(_sample(pet_img, pet, world)))
        assert medians["spleen"] > medians["kidney"] > medians["liver"] > 2 * medians["soft_tissue"], medians
        assert 0.3 < medians["soft_tissue"] < 2.0 and 4.0 < medians["liver"] < 10.0, medians
        assert float(pet.min()) >= 0.0


def test_liver_volume_matches_ground_truth(image_cohort: Path) -> None:
    lesions = pd.read_csv(image_cohort / "lesions.csv")
    truth = pd.read_csv(image_cohort / "ground_truth.csv").set_index("patient_id")
    for pid in _ids(image_cohort):
        liver_lesions = lesions[(lesions.patient_id == pid) & (lesions.site == "liver")]
        if liver_lesions.empty or truth.loc[pid, "liver_tumour_fraction"] < 1e-3:
            continue
        analytic = liver_lesions["volume_ml"].sum() / truth.loc[pid, "liver_tumour_fraction"]
        img = _load(image_cohort, pid, "organs")
        voxels = int((np.asarray(img.dataobj) == LABEL["liver"]).sum())
        image_ml = voxels * float(np.prod(img.header.get_zooms())) / 1000.0
        assert abs(image_ml / analytic - 1.0) < 0.1, (pid, image_ml, analytic)


# ----------------------------------------------------------------------------------------------
# Rendering of one synthetic patient (simulator 2.0: contrast phases, lesion profiles, pitfalls)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Case:
    attrs: PatientAttributes  # lesions removed
    template: Lesion  # a drawn lesion, the template of the synthetic ones
    image_seed: np.random.SeedSequence
    liver_centre: np.ndarray  # deepest liver point (patient frame, mm)
    liver_depth_mm: float


@pytest.fixture(scope="module")
def case() -> _Case:
    for streams in patient_streams(2027, 12):
        attrs = draw_attributes(streams[0])
        if attrs.lesions:
            break
    anat = attrs.anatomy
    grid = anat.phantom_grid()
    tissue = paint_tissues(anat, *anat.deformation.template_coords(grid), grid)
    depth = ndimage.distance_transform_edt(tissue == LABEL["liver"], sampling=grid.spacing)
    idx = np.unravel_index(int(np.argmax(depth)), depth.shape)
    centre = np.array([grid.origin[a] + grid.spacing[a] * idx[a] for a in range(3)])
    return _Case(dataclasses.replace(attrs, lesions=()), attrs.lesions[0], streams[2], centre, float(depth.max()))


def _lesion(case: _Case, label: int, centre: np.ndarray, radius: float, **fields: object) -> Lesion:
    shape = Ellipsoid.make(centre, np.array([radius, radius, radius]))
    base = {"label": label, "shape": shape, "site": "liver", "sstr_negative": False, "ct_visible": True,
            "necrotic_radius": 0.0, "gradient": 0.0, "core_suv": 0.0, "core_hu": 20.0}
    return dataclasses.replace(case.template, **{**base, **fields})  # type: ignore[arg-type]


def _with(case: _Case, *lesions: Lesion) -> PatientAttributes:
    return dataclasses.replace(case.attrs, lesions=tuple(lesions))


def _ct_rho(attrs: PatientAttributes, les: Lesion) -> np.ndarray:
    """Normalised radius of ``les`` at every CT voxel."""
    x, y, z = attrs.anatomy.ct_grid.axes()
    return np.sqrt(les.shape.q(x[:, None, None], y[None, :, None], z[None, None, :]))


def _pet_at(im: imaging.RenderedImages, attrs: PatientAttributes, points: np.ndarray) -> np.ndarray:
    """Trilinear PET samples at patient-frame points (N, 3) mm."""
    world = np.asarray(points, dtype=float) + np.asarray(attrs.anatomy.offset)
    idx = (np.linalg.inv(im.pet_affine) @ np.c_[world, np.ones(len(world))].T)[:3]
    return ndimage.map_coordinates(im.pet, idx, order=1, mode="nearest")


def _organ_median(im: imaging.RenderedImages, name: str) -> float:
    core = ndimage.binary_erosion(im.organs == LABEL[name], iterations=1) & (im.lesions == 0)
    return float(np.median(im.ct[core]))


def test_portal_venous_enhancement(case: _Case) -> None:
    pv = imaging.render(case.attrs, case.image_seed)  # default phase
    plain = imaging.render(case.attrs, case.image_seed, contrast="none")
    assert CONTRAST_PHASES == ("portal_venous", "none")
    pv_hu = {name: _organ_median(pv, name) for name in ("liver", "spleen", "kidney", "heart_vessels", "pancreas",
                                                       "soft_tissue", "fat", "bone", "bladder")}
    plain_hu = {name: _organ_median(plain, name) for name in pv_hu}
    assert 95.0 <= pv_hu["liver"] <= 130.0 and 45.0 <= plain_hu["liver"] <= 75.0, (pv_hu, plain_hu)
    assert pv_hu["liver"] > plain_hu["liver"] + 30.0
    assert 95.0 <= pv_hu["spleen"] <= 135.0 and 130.0 <= pv_hu["kidney"] <= 210.0, pv_hu
    assert 125.0 <= pv_hu["heart_vessels"] <= 200.0 and 80.0 <= pv_hu["pancreas"] <= 120.0, pv_hu
    assert 45.0 <= pv_hu["soft_tissue"] <= 75.0, pv_hu
    for name in ("fat", "bone", "bladder"):  # no enhancement (urine: no excretion yet)
        assert abs(pv_hu[name] - plain_hu[name]) <= 3.0, (name, pv_hu[name], plain_hu[name])
    # the phase changes only the CT: same PET and label maps, same noise realisation
    assert np.array_equal(pv.pet, plain.pet) and np.array_equal(pv.organs, plain.organs)
    with pytest.raises(ValueError, match="contrast"):
        imaging.render(case.attrs, case.image_seed, contrast="arterial")


def test_lesion_ct_follows_the_phase_and_core(case: _Case) -> None:
    c = case.liver_centre
    radius = min(20.0, 0.6 * case.liver_depth_mm)
    relative = _lesion(case, 1, c, radius, ct_relative=True, ct_hu=-10.0, ct_hu_pv=-45.0, necrotic_radius=0.5,
                       core_hu=12.0)
    absolute = _lesion(case, 2, c + np.array([0.0, 0.0, -radius - 14.0]), 9.0, ct_relative=False, ct_hu=300.0,
                       ct_hu_pv=420.0)
    attrs = _with(case, relative, absolute)
    rho_rel, rho_abs = _ct_rho(attrs, relative), _ct_rho(attrs, absolute)
    for contrast, offset, absolute_hu in (("portal_venous", -45.0, 420.0), ("none", -10.0, 300.0)):
        im = imaging.render(attrs, case.image_seed, contrast=contrast)
        liver = _organ_median(im, "liver")
        viable = float(np.median(im.ct[(rho_rel > 0.65) & (rho_rel < 0.85)]))
        core = float(np.median(im.ct[rho_rel < 0.35]))
        assert viable == pytest.approx(liver + offset, abs=8.0), (contrast, viable, liver)
        assert core == pytest.approx(12.0, abs=8.0), (contrast, core)
        assert float(np.median(im.ct[rho_abs < 0.5])) == pytest.approx(absolute_hu, abs=15.0), contrast
        assert (im.lesions[rho_rel <= 0.95] == 1).all() and (im.lesions[rho_abs <= 0.95] == 2).all()


def test_negative_necrotic_and_graded_lesions(case: _Case) -> None:
    c = case.liver_centre
    radius = min(22.0, 0.7 * case.liver_depth_mm)
    liver_suv = case.attrs.anatomy.suv_of("liver")
    # rim samples in the transverse plane (the breathing motion is along z)
    rim = c + 0.75 * radius * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], dtype=float)
    values = {}
    for name, fields in (("uniform", {}), ("necrotic", {"necrotic_radius": 0.55, "core_suv": 0.5}),
                         ("graded", {"gradient": 0.85}), ("negative", {"suv": 1.0, "sstr_negative": True})):
        les = _lesion(case, 1, c, radius, **{"suv": 6.0 * liver_suv, **fields})
        im = imaging.render(_with(case, les), case.image_seed)
        values[name] = (float(_pet_at(im, case.attrs, c[None])[0]), float(_pet_at(im, case.attrs, rim).mean()))
    centre, edge = values["necrotic"]
    assert centre < 0.6 * edge, values
    assert values["graded"][0] < 0.8 * values["graded"][1], values
    assert values["uniform"][0] > 0.95 * values["uniform"][1], values  # control: no dip without a core
    assert values["uniform"][0] > 3.0 * liver_suv and values["negative"][0] < 0.5 * liver_suv, values


def test_ct_occult_lesion_keeps_the_ct(case: _Case) -> None:
    c = case.liver_centre
    occult = _lesion(case, 1, c, 12.0, site="bone", ct_relative=False, ct_hu=600.0, ct_hu_pv=600.0,
                     ct_visible=False, suv=8.0 * case.attrs.anatomy.suv_of("liver"))
    without = imaging.render(case.attrs, case.image_seed)
    hidden = imaging.render(_with(case, occult), case.image_seed)
    visible = imaging.render(_with(case, dataclasses.replace(occult, ct_visible=True)), case.image_seed)
    assert np.array_equal(hidden.ct, without.ct)
    assert (hidden.lesions == 1).sum() > 100 and np.array_equal(hidden.lesions, visible.lesions)
    assert float(_pet_at(hidden, case.attrs, c[None])[0]) > 2.0 * float(_pet_at(without, case.attrs, c[None])[0])
    assert np.median(visible.ct[visible.lesions == 1]) > 400  # control: the same lesion, CT-visible


def test_respiratory_blur_conserves_activity_and_widens_the_dome(case: _Case) -> None:
    anat = case.attrs.anatomy
    grid = anat.phantom_grid()
    tissue = paint_tissues(anat, *anat.deformation.template_coords(grid), grid)
    lut = np.full(int(tissue.max()) + 1, 0.5, dtype=np.float32)
    lut[LABEL["liver"]], lut[LABEL["lung"]], lut[0] = 7.0, 0.4, 0.0
    act = lut[tissue]
    moved = imaging.respiratory_blur(act, tissue, grid, anat.z_diaphragm, 15.0, 0.1)
    assert moved.dtype == np.float32 and moved.shape == act.shape
    assert float(moved.sum(dtype=np.float64)) == pytest.approx(float(act.sum(dtype=np.float64)), rel=0.01)
    assert not np.array_equal(moved, act)
    # z profile through the top of the liver dome (liver below, lung above)
    liver = tissue == LABEL["liver"]
    top = np.where(liver.any(axis=2), liver.shape[2] - 1 - np.argmax(liver[:, :, ::-1], axis=2), -1)
    k = int(top.max())
    cols = np.argwhere(top >= k - 1)

    def edge_slices(vol: np.ndarray) -> int:
        prof = np.mean([vol[i, j, k - 15: k + 10] for i, j in cols], axis=0)
        norm = (prof - prof[-1]) / (prof[0] - prof[-1])
        return int(((norm > 0.2) & (norm < 0.8)).sum())

    assert edge_slices(act) <= 1 and edge_slices(moved) >= edge_slices(act) + 2
    # slices far below the diaphragm do not move; no motion, no change
    far = grid.axes()[2] < anat.z_diaphragm - 140.0
    assert np.array_equal(moved[:, :, far], act[:, :, far])
    assert np.array_equal(imaging.respiratory_blur(act, tissue, grid, anat.z_diaphragm, 0.0, 0.1), act)


def test_physiology_draws(case: _Case) -> None:
    draws = [imaging.draw_physiology(np.random.default_rng(s[2])) for s in patient_streams(5, 300)]
    bladder = np.array([d.bladder_suv for d in draws])
    assert bladder.min() >= 5.0 and bladder.max() <= 200.0
    assert bladder.min() < 10.0 and bladder.max() > 100.0  # wide, log-uniform
    uncinate = np.array([d.uncinate_suv for d in draws])
    assert 0.3 <= float(np.mean(uncinate > 0)) <= 0.65
    assert uncinate[uncinate > 0].min() >= 6.0 and uncinate.max() <= 16.0
    amp = np.array([d.resp_amplitude_mm for d in draws])
    assert amp.min() >= 5.0 and amp.max() <= 20.0
    gain = np.array([d.hu_pv["liver"] - d.hu["liver"] for d in draws])  # per-patient liver enhancement
    assert 38.0 <= gain.min() and gain.max() <= 72.0 and gain.std() > 3.0
    liver_pv = np.array([d.hu_pv["liver"] for d in draws])
    assert 92.0 <= liver_pv.min() and liver_pv.max() <= 135.0 and 105.0 <= np.median(liver_pv) <= 120.0
    # the render uses exactly these first draws of the image stream
    first = imaging.draw_physiology(np.random.default_rng(case.image_seed))
    assert first == imaging.draw_physiology(np.random.default_rng(case.image_seed))


def test_uncinate_hot_spot_at_the_pancreatic_head(case: _Case) -> None:
    anat = case.attrs.anatomy
    for streams in patient_streams(6, 40):
        seed = streams[2]
        phys = imaging.draw_physiology(np.random.default_rng(seed))
        if phys.uncinate_suv > 10.0:
            break
    e = anat.pancreas
    rot = np.asarray(e.rot)
    head = anat.deformation.from_template((np.asarray(e.centre) - (e.radii[0] - phys.uncinate_radius_mm) * rot[:, 0])[None])
    middle = anat.deformation.from_template(np.asarray(e.centre)[None])
    im = imaging.render(case.attrs, seed)
    hot, body = float(_pet_at(im, case.attrs, head)[0]), float(_pet_at(im, case.attrs, middle)[0])
    assert hot > 4.0 and hot > 1.8 * body, (hot, body)
    assert hot > anat.suv_of("pancreas") + 1.5


def test_organ_masks_read_as_a_user_would_give_them(image_cohort: Path) -> None:
    """``<id>_organ_masks.nii.gz`` carries its label names and splits kidneys by side (RAS+: +x = right)."""
    import nibabel as nib
    import numpy as np

    from pfs_core.io import load_ct
    from pfs_core.io.organ_files import read_organ_masks
    from pfs_core.io.organs import ORGAN_CODE

    first = sorted((image_cohort / "images").glob("*_organ_masks.nii.gz"))[0]
    pid = first.name.split("_")[0]
    organs = read_organ_masks(first, ct=load_ct(image_cohort / "images" / f"{pid}_ct.nii.gz"))
    assert {"liver", "spleen", "kidney_right", "kidney_left"} <= set(organs.present)
    x = lambda name: (organs.affine @ np.r_[np.argwhere(organs.mask(name)).mean(axis=0), 1.0])[0]  # noqa: E731
    assert x("kidney_right") > x("kidney_left") and x("liver") > x("spleen")  # liver on the right, spleen left
    tissue = np.asarray(nib.load(str(image_cohort / "images" / f"{pid}_organs.nii.gz")).dataobj)
    assert organs.mask("liver").sum() == (tissue == 3).sum() and ORGAN_CODE["liver"] == 1
    row = next(r for r in (image_cohort / "cohort.csv").read_text().splitlines()[1:] if r.startswith(pid))
    assert row.endswith(f"images/{first.name}")
