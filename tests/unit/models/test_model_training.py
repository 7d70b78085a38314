import dataclasses

import numpy as np
import pytest
from model_fixtures import FAST, make_cohort

from pfs_core.config import TrainConfig, from_dict, to_dict
from pfs_core.errors import InputError, UsageError
from pfs_core.features.lesions import FEATURE_BLOCKS
from pfs_core.metrics import all_metrics, short_pfs_label
from pfs_core.models.block_logistic import fit_block_logistic
from pfs_core.models.fitted import lesion_block, sklearn_features
from pfs_core.models.registry import MODELS, get_spec
from pfs_core.training.augment import Augmenter
from pfs_core.training.cv import cross_validate, make_splits, repeat_metrics, strata, summarise
from pfs_core.training.fit import _validation_split, fit_model


def test_label_rule():
    time = np.array([6.0, 6.0, 12.0, 12.5, 30.0])
    event = np.array([1, 0, 1, 1, 0])
    np.testing.assert_array_equal(short_pfs_label(time, event), [1.0, np.nan, 1.0, 0.0, 0.0])


def test_splits_cover_every_patient_once_per_repeat_and_are_seeded(cohort):
    splits = make_splits(cohort, folds=3, repeats=2, seed=7)
    assert len(splits) == 6
    for repeat in (0, 1):
        tests = np.concatenate([s.test for s in splits if s.repeat == repeat])
        assert sorted(tests) == list(range(len(cohort)))
    again = make_splits(cohort, folds=3, repeats=2, seed=7)
    assert all((a.test == b.test).all() for a, b in zip(splits, again, strict=True))
    assert set(strata(cohort)) == {0, 1, 2}


def test_too_many_folds_is_a_usage_error(cohort):
    with pytest.raises(UsageError, match="folds need"):
        make_splits(cohort, folds=20, repeats=1, seed=0)


def test_censored_early_patients_are_not_trained_on(cohort):
    model = fit_model(get_spec("lab_rf"), cohort, config=FAST, seed=0)
    assert model.info["n_labelled"] == len(cohort) - 2
    assert model.info["n_train_rows"] == len(cohort)


@pytest.mark.slow
def test_all_models_cross_validate_on_the_same_splits(cohort):
    splits = make_splits(cohort, folds=3, repeats=1, seed=1)
    cv = cross_validate(cohort, MODELS, splits, config=FAST, seed=1)
    oof = cv.oof
    assert set(oof["model"]) == {m.name for m in MODELS}
    keys = {name: sorted(zip(g["patient_id"], g["repeat"], g["fold"], strict=True)) for name, g in oof.groupby("model")}
    assert len({tuple(v) for v in keys.values()}) == 1
    assert oof["probability"].between(0, 1).all()
    per_repeat = repeat_metrics(cohort, oof)
    summary = summarise(per_repeat, [m.name for m in MODELS])
    assert set(summary["lab_rf"]) == {"auroc", "auprc", "brier", "c_index"}


def test_same_seed_same_oof_predictions(cohort):
    """Seeded end to end, augmentation included (FAST turns it off; here it is on), and the seed matters."""
    specs = [get_spec("lab_rf"), get_spec("lab_pet_ct")]
    config = dataclasses.replace(FAST, augment=True, min_improvement=-1.0)  # keep the trained epoch
    splits = make_splits(cohort, folds=3, repeats=1, seed=3)
    a = cross_validate(cohort, specs, splits, config=config, seed=3).oof
    b = cross_validate(cohort, specs, splits, config=config, seed=3).oof
    np.testing.assert_allclose(a["probability"], b["probability"], rtol=0, atol=1e-6)
    c = cross_validate(cohort, specs, splits, config=config, seed=4).oof
    for name in ("lab_rf", "lab_pet_ct"):
        assert not np.allclose(a.loc[a["model"] == name, "probability"], c.loc[c["model"] == name, "probability"],
                               rtol=0, atol=1e-6), name


def test_labs_carry_signal_in_the_fake_cohort():
    data = make_cohort(40, seed=2)
    splits = make_splits(data, folds=3, repeats=1, seed=0)
    oof = cross_validate(data, [get_spec("classic")], splits, config=FAST, seed=0).oof
    idx = oof["patient_id"].map({p: i for i, p in enumerate(data.patient_ids)}).to_numpy()
    metrics = all_metrics(data.time_months[idx], data.event[idx], oof["probability"].to_numpy())
    assert metrics["auroc"] > 0.7


def test_pretrained_branch_is_pretrained_and_cached(cohort, tmp_path):
    spec = get_spec("lab_pet_ct_pretrained")
    model = fit_model(spec, cohort, config=FAST, seed=0, cache_dir=tmp_path)
    assert model.info["pretrain"]["n_volumes"] == len(cohort)  # all training CTs, labelled or not
    assert "no labels" in model.info["pretrain"]["data"]
    assert len(list((tmp_path / "pretrain").glob("*.safetensors"))) == 1
    fit_model(spec, cohort, config=FAST, seed=0, cache_dir=tmp_path)
    assert len(list((tmp_path / "pretrain").glob("*.safetensors"))) == 1


def test_training_set_without_both_classes_is_an_input_error(cohort):
    only_long = np.flatnonzero(cohort.label == 0)
    with pytest.raises(InputError, match="short- and long-PFS"):
        fit_model(get_spec("lab_rf"), cohort.subset(only_long), config=FAST, seed=0)


def test_augmenter_keeps_shapes_and_pet_ct_aligned():
    import torch

    aug = Augmenter(dataclasses.replace(TrainConfig(), rotate_rad=0.0, intensity_jitter=0.0), seed=0)
    x = torch.zeros(2, 1, 16, 16, 16)
    x[:, :, 6:10, 6:10, 6:10] = 1.0
    out = aug({"pet": x.clone(), "ct": x.clone(), "lab": None})
    assert out["pet"].shape == x.shape
    torch.testing.assert_close(out["pet"], out["ct"])


def test_train_config_round_trip():
    config = dataclasses.replace(FAST, include_post_baseline=True)
    assert from_dict(TrainConfig, to_dict(config)) == config


def _wide_design(model, cohort, rows):
    """Prepared labs + the PET lesion measurements standardised on ``rows`` (the wide path's design)."""
    block = lesion_block(cohort, "pet", "lab_pet")
    mean, sd = block[rows].mean(axis=0), np.maximum(block[rows].std(axis=0, ddof=1), 1e-3)
    return np.hstack([model.tabular.transform(cohort.labs), (block - mean) / sd])


def test_fusion_net_starts_as_a_logistic_model_of_labs_and_lesion_measurements(cohort):
    """Before any epoch, the network's output is an L2 logistic regression fitted independently here,
    with one penalty or with modality penalty weights chosen by inner cross-validation."""
    from sklearn.linear_model import LogisticRegression

    config = dataclasses.replace(FAST, epochs=0, wide_search=False, validation_fraction=0.0)
    model = fit_model(get_spec("lab_pet"), cohort, config=config, seed=0)
    assert not any(p.requires_grad for p in model.net.wide.parameters())
    labelled = np.flatnonzero(~np.isnan(cohort.label))
    design = _wide_design(model, cohort, labelled)
    reference = LogisticRegression(C=config.logistic_c, class_weight="balanced", max_iter=5000)
    reference.fit(design[labelled], cohort.label[labelled])
    np.testing.assert_allclose(model.predict_proba(cohort), reference.predict_proba(design)[:, 1], atol=1e-4)
    searched = fit_model(get_spec("lab_pet"), cohort, config=dataclasses.replace(config, wide_search=True), seed=0)
    n_pet = len(FEATURE_BLOCKS["pet"])
    block = fit_block_logistic(design[labelled], cohort.label[labelled], (design.shape[1] - n_pet, n_pet), seed=0)
    assert searched.info["wide"]["block_weights"] == list(block.weights)
    np.testing.assert_allclose(searched.predict_proba(cohort), 1 / (1 + np.exp(-block.decision_function(design))),
                               atol=1e-4)


def test_the_wide_path_never_sees_the_rows_that_choose_the_epoch():
    """Selection without optimism: the logistic start is fitted on the fit rows only, so epoch 0's held-out
    loss is out of sample like every later epoch's."""
    from sklearn.linear_model import LogisticRegression

    data = make_cohort(40, seed=4)
    # one epoch to choose against, and a margin no epoch can beat: the logistic start is kept
    config = dataclasses.replace(FAST, epochs=1, wide_search=False, validation_fraction=0.3, min_improvement=10.0)
    model = fit_model(get_spec("lab_pet"), data, config=config, seed=0)
    assert model.best_epoch == 0
    labelled = np.flatnonzero(~np.isnan(data.label))
    fit_rows, check_rows = _validation_split(data.label[labelled], 0.3, seed=0)
    assert len(check_rows) > 0
    rows = labelled[fit_rows]
    design = _wide_design(model, data, rows)
    reference = LogisticRegression(C=config.logistic_c, class_weight="balanced", max_iter=5000)
    reference.fit(design[rows], data.label[rows])
    np.testing.assert_allclose(model.predict_proba(data), reference.predict_proba(design)[:, 1], atol=1e-4)
    # without epochs to choose, no row is held out
    plain = fit_model(get_spec("lab_pet"), data, config=dataclasses.replace(config, epochs=0), seed=0)
    everyone = _wide_design(plain, data, labelled)
    reference.fit(everyone[labelled], data.label[labelled])
    np.testing.assert_allclose(plain.predict_proba(data), reference.predict_proba(everyone)[:, 1], atol=1e-4)


def test_classic_has_a_penalty_weight_per_block_and_stays_a_plain_scikit_learn_pipeline(cohort):
    from sklearn.impute import SimpleImputer

    model = fit_model(get_spec("classic"), cohort, config=dataclasses.replace(FAST, wide_search=True), seed=0)
    assert all(type(step).__module__.startswith("sklearn.") for step in model.estimator.named_steps.values())
    labelled = np.flatnonzero(~np.isnan(cohort.label))
    x = sklearn_features(get_spec("classic"), cohort, model.tabular, model.config)
    impute = SimpleImputer(strategy="median", keep_empty_features=True).fit(x[labelled])
    n_lab = model.tabular.n_features
    block = fit_block_logistic(impute.transform(x[labelled]), cohort.label[labelled], (n_lab, x.shape[1] - n_lab),
                               seed=0)
    assert model.info["logistic"]["block_weights"] == list(block.weights)
    np.testing.assert_allclose(model.predict_proba(cohort),
                               1 / (1 + np.exp(-block.decision_function(impute.transform(x)))), atol=1e-6)
    plain = fit_model(get_spec("classic"), cohort, config=FAST, seed=0)  # FAST: one penalty, no search
    assert list(plain.estimator.named_steps) == ["impute", "scale", "logistic"]
    assert plain.info["logistic"] == {"kind": "L2 logistic regression", "C": FAST.logistic_c}


def test_training_stops_after_patience_epochs_without_a_kept_epoch():
    data = make_cohort(40, seed=4)
    config = dataclasses.replace(FAST, epochs=6, validation_fraction=0.3, min_improvement=10.0, patience=2)
    model = fit_model(get_spec("lab_pet"), data, config=config, seed=0)
    assert model.info["best_epoch"] == 0 and len(model.info["loss"]) == 2 and len(model.info["validation_loss"]) == 3
    full = fit_model(get_spec("lab_pet"), data, config=dataclasses.replace(config, patience=0), seed=0)
    assert len(full.info["loss"]) == 6 and full.info["validation_loss"][:3] == model.info["validation_loss"]


def test_validation_split_is_stratified_disjoint_and_seeded():
    label = np.array([0.0] * 30 + [1.0] * 20)
    fit, check = _validation_split(label, 0.2, seed=1)
    assert len(check) == 10 and set(fit).isdisjoint(check) and len(fit) + len(check) == 50
    assert label[check].sum() == 4  # stratified: 20 % of each class
    assert (_validation_split(label, 0.2, seed=1)[1] == check).all()
    assert len(_validation_split(label[:34], 0.2, seed=1)[1]) == 0  # 4 short-PFS patients: too few to hold out
    assert len(_validation_split(label, 0.0, seed=1)[1]) == 0


def _kept_validation_loss(model, data, fraction):
    """Loss of the kept model on its validation rows, recomputed from its predictions."""
    import torch

    train = data.subset(np.flatnonzero(~np.isnan(data.label)))
    fit, check = _validation_split(train.label, fraction, seed=0)
    n_pos = train.label[fit].sum()
    loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([(len(fit) - n_pos) / n_pos]))
    prob = torch.from_numpy(model.predict_proba(train.subset(check))).clamp(1e-6, 1 - 1e-6)
    return float(loss(torch.logit(prob).float(), torch.from_numpy(train.label[check]).float()))


def test_training_keeps_the_lowest_validation_loss_only_when_it_clearly_beats_epoch_0():
    data = make_cohort(40, seed=6)
    config = dataclasses.replace(FAST, epochs=4, validation_fraction=0.3, lr=0.03, min_improvement=0.0)
    model = fit_model(get_spec("lab_pet"), data, config=config, seed=0)
    checks = model.info["validation_loss"]
    assert len(checks) == 5 and model.info["best_epoch"] > 0  # epochs that differ, a later one lower
    assert checks[model.info["best_epoch"]] == pytest.approx(min(checks), abs=1e-5)
    assert _kept_validation_loss(model, data, 0.3) == pytest.approx(min(checks), abs=1e-4)  # its weights are kept
    margin = checks[0] - min(checks) + 1e-3  # the best later epoch falls just short of the required gain
    strict = fit_model(get_spec("lab_pet"), data, config=dataclasses.replace(config, min_improvement=margin), seed=0)
    assert strict.info["validation_loss"] == checks and strict.info["best_epoch"] == 0
    assert _kept_validation_loss(strict, data, 0.3) == pytest.approx(checks[0], abs=1e-4)
