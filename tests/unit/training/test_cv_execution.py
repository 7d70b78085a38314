"""Cross-validation as tasks of pfs_core.execution: per-task seeds, the same out-of-fold predictions in this
process, in 2 worker processes and on a local Ray instance of 2 CPUs, progress lines while they run, and
`benchmark`/`train` with --jobs and --backend."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from model_fixtures import FAST, make_cohort

from pfs_core.cli import main
from pfs_core.execution import Cancelled, Execution, ray_available
from pfs_core.models.registry import get_spec
from pfs_core.progress import read_steps, writing_to
from pfs_core.training import cv

#: one scikit-learn model of each kind and two networks (one with the CT pretraining)
MODELS = ("lab_rf", "classic", "pet_ct", "lab_pet_ct_pretrained")


def _common(cohort, small_json, tmp_path):
    pre, train = small_json
    return ["--cohort", str(cohort), "--preprocess", str(pre), "--train-config", str(train),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]


@pytest.fixture(scope="module")
def ray_2cpu(tmp_path_factory):
    """A local Ray instance of 2 CPUs, its temp dir under pytest's (or a short one: socket paths < 107 chars)."""
    if not ray_available():
        pytest.skip("ray is not installed (pip install .[ray])")
    import ray

    temp = tmp_path_factory.mktemp("ray")
    if len(str(temp)) > 60:
        temp = Path(tempfile.mkdtemp(prefix="ray"))
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp), log_to_driver=False)
    yield ray
    ray.shutdown()


def test_task_seeds_depend_on_the_split_only():
    data = make_cohort(18)
    splits = cv.make_splits(data, folds=3, repeats=2, seed=7)
    seeds = [cv.task_seed(7, s) for s in splits]
    assert seeds == [7 + 1000 * s.repeat + s.fold for s in splits]  # what every earlier run used
    assert len(set(seeds)) == len(splits)
    tasks = cv.fold_tasks(data, [get_spec("lab_rf"), get_spec("pet_cnn")], splits, config=FAST, seed=7, device=None,
                          progress=False, cache_dir=None, keep_models=False, in_process=True, image_bytes=0)
    assert [t.kwargs["seed"] for t in tasks] == [seed for seed in seeds for _ in range(2)]
    assert [t.label for t in tasks[:2]] == ["model lab_rf, repeat 0, fold 0", "model pet_cnn, repeat 0, fold 0"]


def test_a_task_gives_the_same_prediction_alone_and_after_others():
    """Nothing of an earlier fit (global random state, torch threads) leaks into the next one."""
    data = make_cohort(18)
    splits = cv.make_splits(data, folds=3, repeats=1, seed=3)
    specs = [get_spec(m) for m in MODELS]
    full = cv.cross_validate(data, specs, splits, config=FAST, seed=3).oof
    last = cv.fit_fold(data, specs[-2], splits[-1].train, splits[-1].test, config=FAST,
                       seed=cv.task_seed(3, splits[-1]), device=None, progress=False, cache_dir=None, keep_model=False)
    rows = full[(full["model"] == specs[-2].name) & (full["fold"] == splits[-1].fold)]
    np.testing.assert_array_equal(rows["probability"].to_numpy(), last["probability"])


def test_two_processes_give_the_same_oof_and_progress(tmp_path):
    data = make_cohort(18)
    splits = cv.make_splits(data, folds=3, repeats=1, seed=1)
    specs = [get_spec(m) for m in MODELS]
    here = cv.cross_validate(data, specs, splits, config=FAST, seed=1)
    with writing_to(tmp_path / "progress.jsonl"):
        two = cv.cross_validate(data, specs, splits, config=FAST, seed=1, execution=Execution(jobs=2),
                                keep_models=True)
    pd.testing.assert_frame_equal(here.oof, two.oof)
    assert here.best_epoch("pet_ct") == two.best_epoch("pet_ct")
    assert [len(two.models[m]) for m in MODELS] == [3] * len(MODELS)
    assert two.execution["backend"] == "local" and two.execution["jobs"] == 2 and two.execution["tasks"] == 12
    steps = read_steps(tmp_path / "progress.jsonl")
    assert [s["done"] for s in steps] == list(range(13)) and {s["total"] for s in steps} == {12}
    assert steps[0]["model"] == "lab_rf" and "model" not in steps[-1]


def test_cancel_stops_a_cross_validation():
    data = make_cohort(18)
    splits = cv.make_splits(data, folds=3, repeats=1, seed=1)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        cv.cross_validate(data, [get_spec("lab_rf")], splits, config=FAST, seed=1, cancel=stop)


@pytest.mark.slow
def test_benchmark_gives_the_same_results_with_2_jobs_and_on_ray(disk_cohort, small_json, tmp_path, ray_2cpu):
    """The tiny benchmark's results.json metrics and OOF file: identical in one process, with --jobs 2 (workers
    load the cohort from the cache) and on a local Ray instance of 2 CPUs (--backend ray)."""
    docs, oofs = {}, {}
    for name, extra in (("one", []), ("two", ["--jobs", "2"]), ("ray", ["--backend", "ray", "--jobs", "2"])):
        out = tmp_path / name
        code = main(["benchmark", *_common(disk_cohort, small_json, tmp_path), "--folds", "3", "--repeats", "1",
                     "--models", ",".join(MODELS), "--seed", "5", "--out", str(out), *extra])
        assert code == 0
        docs[name] = json.loads((out / "results.json").read_text())
        oofs[name] = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    for name in ("two", "ray"):
        assert docs[name]["metrics"] == docs["one"]["metrics"], name
        assert docs[name]["paired_delta_auroc"] == docs["one"]["paired_delta_auroc"], name
        pd.testing.assert_frame_equal(oofs[name], oofs["one"])
    assert docs["two"]["execution"]["jobs"] == 2 and docs["ray"]["execution"]["backend"] == "ray"
    assert docs["one"]["execution"]["tasks"] == 3 * len(MODELS)


@pytest.mark.slow
def test_train_with_2_jobs_writes_the_same_bundle_predictions(disk_cohort, small_json, tmp_path):
    tables = []
    for name, extra in (("one", []), ("two", ["--jobs", "2"])):
        out = tmp_path / name
        assert main(["train", *_common(disk_cohort, small_json, tmp_path), "--model", "lab_pet_ct", "--seed", "2",
                     "--out", str(out), *extra]) == 0
        tables.append(pd.read_csv(out / "training_oof.csv", dtype={"patient_id": str}))
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_jobs_and_backend_are_checked_before_any_work(tmp_path, capsys):
    assert main(["benchmark", "--cohort", str(tmp_path / "none.csv"), "--jobs", "0", "--models", "lab_rf",
                 "--out", str(tmp_path / "out")]) == 2
    assert "--jobs 0: must be at least 1" in capsys.readouterr().err
    assert main(["train", "--cohort", str(tmp_path / "none.csv"), "--address", "auto",
                 "--out", str(tmp_path / "out")]) == 2
    assert "add --backend ray" in capsys.readouterr().err
    assert os.environ.get("PFS_CORE_THREADS") in (None, "1")


def test_reference_rows_are_fitted_while_the_workers_run():
    """With workers, the reference rows are fitted beside the cross-validation; an error there stops it."""
    from functools import partial

    from pfs_core.training.benchmark import _references_beside

    data = make_cohort(18)
    splits = cv.make_splits(data, folds=3, repeats=1, seed=1)
    fit = partial(cv.cross_validate, data, [get_spec("lab_rf")], splits, config=FAST, seed=1,
                  execution=Execution(jobs=2))
    refs, result = _references_beside(fit, lambda: "references", cancel=None)
    assert refs == "references" and len(result.oof) == 18

    def broken():
        raise ValueError("ground_truth.csv: column p_true is missing")

    with pytest.raises(ValueError, match="p_true"):
        _references_beside(fit, broken, cancel=None)
