"""The organ network's frozen encoder as a CT feature extractor (pfs_core.models.ct_encoder)."""

from __future__ import annotations

import numpy as np
import torch

from pfs_core.io.organs import ORGAN_CODE, OrganMasks
from pfs_core.io.volume import Volume
from pfs_core.models.ct_encoder import MARGIN_MM, encoder_features, encoder_stages, feature_names, liver_crop
from pfs_core.models.organ_seg import cached_organ_net

AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _case(shape: tuple[int, int, int] = (110, 90, 70)) -> tuple[Volume, OrganMasks]:
    rng = np.random.default_rng(0)
    i, j, k = np.mgrid[: shape[0], : shape[1], : shape[2]]
    data = np.full(shape, -1000.0, np.float32)
    data[((i - 55) / 45) ** 2 + ((j - 45) / 35) ** 2 < 1] = 40.0
    liver = ((i - 35) / 15) ** 2 + ((j - 45) / 12) ** 2 + ((k - 35) / 12) ** 2 < 1
    data[liver] = 100.0
    data += rng.normal(0, 10, shape).astype(np.float32)
    labels = np.where(liver, ORGAN_CODE["liver"], 0).astype(np.uint8)
    ct = Volume(data=data, affine=AFFINE, source="test", modality="CT", units="HU")
    return ct, OrganMasks(labels=labels, affine=AFFINE, source="test masks", present=("liver",))


def test_one_value_per_name_finite_and_repeatable() -> None:
    ct, organs = _case()
    net, config = cached_organ_net(None, torch.device("cpu"))
    first, second = encoder_features(ct, organs, device="cpu"), encoder_features(ct, organs, device="cpu")
    assert first.shape == (len(feature_names(config)),) == (2 * sum(config.channels),)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)


def test_the_stages_chain_from_the_input_to_the_bottom_layer() -> None:
    net, config = cached_organ_net(None, torch.device("cpu"))
    stages = encoder_stages(net)
    x = torch.zeros(1, len(config.hu_windows), 32, 32, 32)
    widths = []
    with torch.no_grad():
        for stage in stages:
            x = stage(x)
            widths.append(x.shape[1])
    assert tuple(widths) == config.channels
    assert x.shape[2:] == (2, 2, 2)  # total stride 16


def test_the_crop_covers_the_liver_plus_margin_in_whole_strides() -> None:
    ct, organs = _case()
    _, config = cached_organ_net(None, torch.device("cpu"))
    grid, shape = liver_crop(ct, organs.mask("liver"), config)
    assert all(n % 16 == 0 for n in shape)
    idx = np.argwhere(organs.mask("liver"))
    lo, hi = (idx.min(axis=0) - 0.5) * 3.0 - MARGIN_MM, (idx.max(axis=0) + 0.5) * 3.0 + MARGIN_MM
    first = grid[:3, 3] - 2.0
    last = grid[:3, 3] + (np.asarray(shape) - 1) * 4.0 + 2.0
    assert np.all(first <= lo + 1e-6) and np.all(last >= hi - 1e-6)


def test_only_the_liver_and_its_surroundings_matter() -> None:
    ct, organs = _case()
    base = encoder_features(ct, organs, device="cpu")
    far = ct.data.copy()
    far[:, :, :] = np.where(np.arange(ct.shape[0])[:, None, None] >= 90, 500.0, far)  # > 64 mm beyond the liver box
    same = encoder_features(Volume(far, AFFINE, "test", "CT", "HU"), organs, device="cpu")
    np.testing.assert_array_equal(base, same)
    lesion = ct.data.copy()
    lesion[30:40, 40:50, 30:40] = 20.0  # a hypodense lesion in the liver
    assert not np.allclose(base, encoder_features(Volume(lesion, AFFINE, "test", "CT", "HU"), organs, device="cpu"))


def test_no_liver_gives_nan() -> None:
    ct, organs = _case()
    empty = OrganMasks(labels=np.zeros_like(organs.labels), affine=AFFINE, source="test", present=("liver",))
    assert np.isnan(encoder_features(ct, empty, device="cpu")).all()


def _ablation():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    import ct_encoder_ablation

    return ct_encoder_ablation


def test_pool_columns_keep_the_asked_statistics() -> None:
    ablation = _ablation()
    _, config = cached_organ_net(None, torch.device("cpu"))
    names = feature_names(config)
    means = ablation.pool_columns(names, "mean")
    assert len(means) == sum(config.channels) and all("_mean_" in names[i] for i in means)
    assert ablation.pool_columns(names, "meanmax") == list(range(len(names)))


def test_the_ablation_compares_each_variant_with_the_base_on_the_same_splits(disk_cohort, tmp_path, monkeypatch) -> None:
    import json
    import sys

    ablation = _ablation()
    out = tmp_path / "ablation.json"
    monkeypatch.setattr(sys, "argv", ["x", "--cohort", str(disk_cohort.parent), "--folds", "2", "--repeats", "1",
                                      "--variant", "mean:2", "--cache-dir", str(tmp_path / "cache"),
                                      "--out", str(out)])
    ablation.main()
    summary = json.loads(out.read_text())
    assert set(summary["models"]) == {"base", "enc_mean_2"}
    delta = summary["models"]["enc_mean_2"]["minus_base"]
    assert delta["low"] <= delta["delta"] <= delta["high"]
    assert 0.0 <= summary["models"]["base"]["auroc_of_mean"] <= 1.0
    assert "probe_spearman" not in summary  # no ground_truth.csv beside this cohort
