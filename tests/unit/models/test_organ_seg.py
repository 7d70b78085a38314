"""The CT organ network: bundle checks, grids, sides, the simulator code table, and Dice on the real CT.

Tiny random-weight bundles test the plumbing; the shipped bundle (models/organ_seg/) is used for the
side test on a simulated case and for the Dice floor on the real TotalSegmentator example CT
(skipped when the shared data are absent). docs/organ_seg.md gives the measured figures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pfs_core.errors import BundleError
from pfs_core.io import load_ct
from pfs_core.io.organs import ORGAN_CODE, ORGANS
from pfs_core.io.volume import Volume
from pfs_core.models.organ_seg import (
    DEFAULT_BUNDLE,
    WEIGHTS,
    OrganSegConfig,
    build_net,
    clean_labels,
    inference_window,
    load_organ_bundle,
    network_digest,
    save_organ_bundle,
    segment_organs,
)
from pfs_core.training.organ_seg import (
    SIM_CODE,
    SIM_TISSUE_CODES,
    SIM_TO_ORGAN,
    OrganTrainConfig,
    map_sim_labels,
    train_organ_seg,
)

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real"
TOTALSEG = REAL / "totalseg_ct"
# Measured with the shipped bundle 1.2.0 (docs/organ_seg.md): liver 0.782, spleen 0.742, kidney_right 0.482,
# kidney_left 0.000 (1.2.1, the same weights in wider windows: 0.785, 0.769, 0.520, 0.000) -- still below the targets (0.90/0.85/0.80); the floors
# are the measured values minus 0.05, so this test guards against regressions only and does NOT show that
# the transfer works (kidney_left has no floor: it is 0).
TOTALSEG_DICE_FLOOR = {"liver": 0.73, "spleen": 0.69, "kidney_right": 0.43}
TINY = OrganSegConfig(channels=(4, 8), strides=(2,), num_res_units=0, spacing_mm=8.0, patch_size=(16, 16, 16))


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_organ_bundle(tmp_path_factory.mktemp("organ") / "tiny", build_net(TINY), TINY,
                             manifest={"note": "random weights"}, model_card="# tiny\n")


def _ct(shape: tuple[int, int, int], affine: np.ndarray) -> Volume:
    rng = np.random.default_rng(0)
    data = np.full(shape, -1000.0, dtype=np.float32)
    i, j = np.mgrid[: shape[0], : shape[1]]
    body = ((i - shape[0] / 2) / (shape[0] / 2.5)) ** 2 + ((j - shape[1] / 2) / (shape[1] / 3)) ** 2 < 1
    data[body] = 40.0
    data += rng.normal(0, 10, shape).astype(np.float32)
    return Volume(data=data, affine=affine, source="test", modality="CT", units="HU")


def test_simulator_code_table_matches_the_simulator() -> None:
    from pfs_core.synth.constants import ORGAN_LABELS

    assert SIM_TISSUE_CODES == ORGAN_LABELS
    for sim_name, ours in SIM_TO_ORGAN.items():
        assert sim_name in ORGAN_LABELS.values()
        for name in (ours,) if isinstance(ours, str) else ours:
            assert name in ORGANS.values()


def test_map_sim_labels_splits_kidneys_by_world_x() -> None:
    tissue = np.zeros((20, 6, 6), dtype=np.uint8)
    tissue[2:18] = 1  # body, midline at i = 9.5
    tissue[3:5, 2:4, 2:4] = 5  # kidney at low i
    tissue[15:17, 2:4, 2:4] = 5  # kidney at high i
    ras = np.diag([2.0, 2.0, 2.0, 1.0])
    out = map_sim_labels(tissue, ras)
    assert (out[3:5, 2:4, 2:4] == ORGAN_CODE["kidney_left"]).all()  # RAS: low x is the patient's left
    assert (out[15:17, 2:4, 2:4] == ORGAN_CODE["kidney_right"]).all()
    las = np.diag([-2.0, 2.0, 2.0, 1.0])  # x decreases with i: the sides swap
    out = map_sim_labels(tissue, las)
    assert (out[3:5, 2:4, 2:4] == ORGAN_CODE["kidney_right"]).all()


def _tiny_case() -> dict[str, object]:
    """A 24-voxel cube on TINY's grid: body, a liver block and a kidney on each side."""
    tissue = np.full((24, 24, 24), SIM_CODE["soft_tissue"], dtype=np.uint8)
    tissue[2:12, 4:20, 6:18] = SIM_CODE["liver"]
    tissue[14:18, 8:12, 8:14] = SIM_CODE["kidney"]
    tissue[19:22, 8:12, 8:14] = SIM_CODE["kidney"]
    hu = np.where(tissue == SIM_CODE["liver"], 60.0, 40.0).astype(np.float32)
    hu[tissue == SIM_CODE["kidney"]] = 150.0
    affine = np.diag([TINY.spacing_mm] * 3 + [1.0])
    label = map_sim_labels(tissue, affine)
    return {"image": torch.from_numpy(hu)[None], "tissue": torch.from_numpy(tissue)[None],
            "label": torch.from_numpy(label)[None], "phase": "portal_venous"}


def test_training_starts_from_given_weights() -> None:
    """Fine-tuning (``init_state``): with a zero learning rate the weights stay the ones given."""
    torch.manual_seed(1)
    start = build_net(TINY).state_dict()
    train = OrganTrainConfig(iterations=2, batch_size=1, lr=0.0, warmup=1, fov_min_z_vox=8, val_every=2)
    net, history = train_organ_seg([_tiny_case()], config=TINY, train=train, log=lambda _: None, init_state=start)
    assert [h["iteration"] for h in history] == [2]
    for name, value in net.state_dict().items():
        assert torch.equal(value, start[name]), name
    fresh, _ = train_organ_seg([_tiny_case()], config=TINY, train=train, log=lambda _: None)
    assert any(not torch.equal(v, start[k]) for k, v in fresh.state_dict().items())  # a random start differs
    with pytest.raises(RuntimeError):
        bad = {k: v for k, v in start.items() if not k.endswith("bias")}
        train_organ_seg([_tiny_case()], config=TINY, train=train, log=lambda _: None, init_state=bad)


def test_bundle_loads_and_refuses_a_tampered_or_pickled_file(tiny_bundle: Path, tmp_path: Path) -> None:
    net, config, manifest = load_organ_bundle(tiny_bundle, device="cpu")
    assert config == TINY and manifest["name"] == "organ_seg"
    tampered = shutil.copytree(tiny_bundle, tmp_path / "tampered")
    raw = bytearray((tampered / WEIGHTS).read_bytes())
    raw[-1] ^= 0xFF
    (tampered / WEIGHTS).write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="sha256"):
        load_organ_bundle(tampered, device="cpu")
    pickled = shutil.copytree(tiny_bundle, tmp_path / "pickled")
    (pickled / "extra.pt").write_bytes(b"x")
    with pytest.raises(BundleError, match="pickle"):
        load_organ_bundle(pickled, device="cpu")
    missing = shutil.copytree(tiny_bundle, tmp_path / "missing")
    (missing / WEIGHTS).unlink()
    with pytest.raises(BundleError, match="missing"):
        load_organ_bundle(missing, device="cpu")
    with pytest.raises(BundleError, match="not found"):
        load_organ_bundle(tmp_path / "nowhere", device="cpu")


def test_network_digest_changes_with_the_weights_or_the_config(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    before = network_digest(copy)
    for name in (WEIGHTS, "config.json"):
        changed = {**manifest, "files": {**manifest["files"], name: "0" * 64}}
        (copy / "manifest.json").write_text(json.dumps(changed))
        assert network_digest(copy) != before
    assert network_digest(tmp_path / "nowhere") == "-"


def test_config_round_trips_through_json() -> None:
    config = OrganSegConfig()
    assert OrganSegConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError):
        OrganSegConfig.from_dict({**config.to_dict(), "surprise": 1})


WIDE = OrganSegConfig(max_window_voxels=160 ** 3)


@pytest.mark.parametrize(("shape", "expected"), [
    ((60, 50, 40), (96, 96, 80)),      # smaller than the training patch: one padded window of it
    ((103, 85, 90), (112, 96, 96)),    # an abdomen: one window, sides rounded up to the total stride 16
    ((93, 72, 225), (96, 96, 240)),    # a whole body along z, still within the cap
])
def test_inference_window_covers_the_grid_in_one_window_when_it_can(shape: tuple[int, int, int],
                                                                    expected: tuple[int, int, int]) -> None:
    assert inference_window(shape, WIDE) == expected
    assert inference_window(shape, OrganSegConfig()) == (96, 96, 80)  # without a cap: the training patch


def test_inference_window_is_capped_and_never_below_the_training_patch() -> None:
    window = inference_window((130, 130, 450), WIDE)
    assert int(np.prod(window)) <= WIDE.max_window_voxels
    assert all(w >= p and w % 16 == 0 for w, p in zip(window, WIDE.patch_size, strict=True))
    assert window[2] < 450  # the long axis is the one cut into several windows
    assert inference_window((500, 500, 500), OrganSegConfig(max_window_voxels=1)) == WIDE.patch_size


def test_shipped_network_reads_one_window_per_abdomen() -> None:
    config = OrganSegConfig.from_dict(json.loads((DEFAULT_BUNDLE / "config.json").read_text()))
    assert inference_window((103, 85, 90), config) == (112, 96, 96)


@pytest.mark.parametrize("flip", [False, True])
def test_output_is_on_the_ct_grid(tiny_bundle: Path, flip: bool) -> None:
    affine = np.diag([-1.5 if flip else 1.5, 1.7, 4.0, 1.0])
    affine[:3, 3] = [30.0, -40.0, 100.0]
    ct = _ct((60, 50, 22), affine)
    masks = segment_organs(ct, device="cpu", bundle_dir=tiny_bundle)
    assert masks.labels.shape == ct.shape and masks.labels.dtype == np.uint8
    assert np.array_equal(masks.affine, ct.affine)
    assert set(np.unique(masks.labels)) <= {0, *ORGANS}
    assert "simulated" in masks.source and "organ_seg" in masks.source
    assert set(masks.present) == set(ORGANS.values())


def test_clean_labels_names_pairs_by_world_x() -> None:
    config = OrganSegConfig()
    labels = np.zeros((30, 10, 10), dtype=np.uint8)
    labels[3:8, 3:7, 3:7] = ORGAN_CODE["kidney_right"]  # wrong side on purpose: low x is left in RAS
    labels[22:27, 3:7, 3:7] = ORGAN_CODE["kidney_right"]
    labels[23, 4, 4] = ORGAN_CODE["kidney_left"]
    labels[0, 0, 0] = ORGAN_CODE["liver"]  # a stray voxel...
    labels[10:20, 0:3, 0:3] = ORGAN_CODE["liver"]  # ...and the liver: only the largest piece stays
    out = clean_labels(labels, np.diag([4.0, 4.0, 4.0, 1.0]), config)
    assert out["kidney_left"][3:8, 3:7, 3:7].all() and not out["kidney_left"][22:27].any()
    assert out["kidney_right"][22:27, 3:7, 3:7].all()
    assert not out["liver"][0, 0, 0] and out["liver"].sum() == 90


def _simulated_case(seed: int = 123) -> tuple[Volume, np.ndarray]:
    from pfs_core.synth.imaging import render
    from pfs_core.synth.patient import draw_attributes, patient_streams

    attrs_seed, _, image_seed = patient_streams(seed, 1)[0]
    im = render(draw_attributes(attrs_seed), image_seed, contrast="none")
    ct = Volume(data=im.ct.astype(np.float32), affine=im.ct_affine, source="sim", modality="CT", units="HU")
    return ct, map_sim_labels(im.organs, im.ct_affine)


def _centroid_x(mask: np.ndarray, affine: np.ndarray) -> float:
    return float((affine @ np.append(np.argwhere(mask).mean(axis=0), 1.0))[0])


@pytest.mark.skipif(not (DEFAULT_BUNDLE / "manifest.json").is_file(), reason="shipped organ bundle absent")
def test_shipped_network_puts_kidneys_on_their_sides_in_any_storage_order() -> None:
    ct, truth = _simulated_case()
    flipped = Volume(data=np.ascontiguousarray(ct.data[::-1]), affine=ct.affine @ _flip_i(ct.shape[0]),
                     source="sim flipped", modality="CT", units="HU")
    for volume in (ct, flipped):
        masks = segment_organs(volume, device="cpu")
        right, left = masks.mask("kidney_right"), masks.mask("kidney_left")
        assert right.any() and left.any()
        assert _centroid_x(right, volume.affine) > _centroid_x(left, volume.affine)
    assert _centroid_x(truth == ORGAN_CODE["kidney_right"], ct.affine) > \
        _centroid_x(truth == ORGAN_CODE["kidney_left"], ct.affine)


def _flip_i(n: int) -> np.ndarray:
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, n - 1
    return flip


@pytest.mark.skipif(not (TOTALSEG / "organs").is_dir(), reason=f"shared real CT not found at {TOTALSEG}")
@pytest.mark.skipif(not (DEFAULT_BUNDLE / "manifest.json").is_file(), reason="shipped organ bundle absent")
def test_dice_on_the_real_totalsegmentator_ct() -> None:
    ct = load_ct(TOTALSEG / "example_ct.nii.gz")
    masks = segment_organs(ct, device="cpu")
    for organ, floor in TOTALSEG_DICE_FLOOR.items():
        ref = np.asarray(nib.load(str(TOTALSEG / "organs" / f"{organ}.nii.gz")).dataobj) > 0.5
        pred = masks.mask(organ)
        dice = 2.0 * (pred & ref).sum() / (pred.sum() + ref.sum())
        assert dice >= floor, f"{organ}: Dice {dice:.3f} < {floor}"
