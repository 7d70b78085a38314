"""Lesion measurements of a cohort: organs from the ``organs`` column, cached per case, one row per patient."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from model_fixtures import SMALL, write_disk_cohort  # noqa: E402

from pfs_core.dataset import load_cohort_data  # noqa: E402
from pfs_core.errors import InputError  # noqa: E402
from pfs_core.execution import Execution  # noqa: E402
from pfs_core.features.lesions import LESION_FEATURES  # noqa: E402
from pfs_core.io.cache import ArrayCache  # noqa: E402
from pfs_core.measure.features import attach_lesion_features, cohort_features  # noqa: E402


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory):
    return write_disk_cohort(tmp_path_factory.mktemp("lesion_cohort"), n=6)


def test_cohort_features_are_cached_and_follow_the_table(cohort_csv, tmp_path):
    table = cohort_features(cohort_csv, cache_dir=tmp_path)
    assert list(table.columns) == list(LESION_FEATURES) and len(table) == 6
    assert list(table.index) == pd.read_csv(cohort_csv)["patient_id"].tolist()
    assert np.isfinite(table.to_numpy()).all()
    hot = table["sstr_positive_volume_ml"]  # every case has a hot spot in its liver
    assert (hot > 0).all()
    assert len(list(tmp_path.glob("lesionfeat_*.npz"))) == 6
    again = cohort_features(cohort_csv, cache_dir=tmp_path, execution=Execution(jobs=2))  # all from the cache
    pd.testing.assert_frame_equal(table, again)
    data = attach_lesion_features(load_cohort_data(cohort_csv, preprocess=SMALL, need_images=False), cohort_csv,
                                  cache_dir=tmp_path)
    assert data.lesion_features.shape == (6, len(LESION_FEATURES))
    np.testing.assert_allclose(data.subset([2]).lesion_features[0], table.iloc[2].to_numpy(), rtol=1e-6)


def test_a_case_without_ct_or_with_unreadable_organs_has_no_measurements(cohort_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("PFS_CORE_DATA_ROOTS", str(cohort_csv.parent))  # the edited table names the images there
    frame = pd.read_csv(cohort_csv, dtype=str, keep_default_na=False)
    frame.loc[0, "ct"] = ""
    bad = tmp_path / "bad_organs.nii.gz"
    bad.write_bytes(b"not a NIfTI")
    frame.loc[1, "organs"] = str(bad)
    for column in ("pet", "ct", "organs"):
        frame[column] = [str((cohort_csv.parent / p).resolve()) if p and not Path(p).is_absolute() else p
                         for p in frame[column]]
    edited = tmp_path / "cohort.csv"
    frame.to_csv(edited, index=False)
    table = cohort_features(edited, cache_dir=None)
    assert table.iloc[0].isna().all() and table.iloc[1].isna().all() and np.isfinite(table.iloc[2]).all()


def test_a_missing_organs_file_is_a_row_problem_of_the_table(cohort_csv, tmp_path):
    frame = pd.read_csv(cohort_csv, dtype=str, keep_default_na=False)
    frame.loc[3, "organs"] = "images/nowhere.nii.gz"
    edited = cohort_csv.parent / "missing_organs.csv"
    frame.to_csv(edited, index=False)
    with pytest.raises(InputError, match="row 5 \\(organs\\).*nowhere.nii.gz"):
        cohort_features(edited, cache_dir=None)
    assert ArrayCache(tmp_path).misses == 0


def test_two_measuring_processes_start_cleanly_after_torch_and_agree_with_one(cohort_csv):
    """The pool spawns its workers: forked after torch's threads started, a worker could hang on their lock."""
    import torch

    torch.set_num_threads(2)
    torch.ones(64, 64) @ torch.ones(64, 64)  # the thread pool is up
    serial = cohort_features(cohort_csv, cache_dir=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        parallel = cohort_features(cohort_csv, cache_dir=None, execution=Execution(jobs=2))
    pd.testing.assert_frame_equal(serial, parallel)


def test_workers_start_cleanly_when_the_main_script_is_a_page(cohort_csv, tmp_path, monkeypatch):
    """In a Streamlit server (or after a page test) ``__main__`` is the page script; a spawned worker would run it
    first. Here that script ends the process at once: the workers must not run it."""
    import types

    script = tmp_path / "page.py"
    script.write_text("raise SystemExit(3)\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        parallel = cohort_features(cohort_csv, cache_dir=None, execution=Execution(jobs=2))
    assert sys.modules["__main__"] is page
    assert len(parallel) > 1


def test_cohort_preparation_on_two_processes_and_on_ray_equals_one_process(cohort_csv, tmp_path):
    """Preprocessing and lesion measurement of the cases not yet cached are tasks of the execution layer (one task
    a case for both steps with a cache): two local processes and a local Ray instance of 2 CPUs give the arrays
    of one process (no cache, in this process: one task a step and case), and fill the cache."""
    from pfs_core.execution import ray_available
    from pfs_core.measure.features import load_cohort_with_lesions

    def load(cache, execution):
        return load_cohort_with_lesions(cohort_csv, preprocess=SMALL, need_images=True, lesions=True, cache_dir=cache,
                                        execution=execution)

    serial = load(None, Execution())
    runs = [(tmp_path / "cache0", Execution(jobs=2))]
    if ray_available():
        runs.append((tmp_path / "cache1", Execution(backend="ray", jobs=2)))
    for cache, execution in runs:
        data = load(cache, execution)
        for name in ("pet", "ct", "pet_present", "lesion_features"):
            np.testing.assert_array_equal(getattr(data, name), getattr(serial, name))
        if cache is not None:
            assert len(list(cache.glob("lesionfeat_*.npz"))) == 6 and len(list(cache.glob("*.npz"))) == 12


def test_the_cache_key_of_network_organs_follows_the_network(tmp_path, monkeypatch):
    """Measurements made with the organ network's organs are not reused after the network changes."""
    import json

    from pfs_core.measure import features
    from pfs_core.measure.settings import MeasureSettings
    from pfs_core.models import organ_seg

    pet, ct = tmp_path / "pet.nii.gz", tmp_path / "ct.nii.gz"
    pet.write_bytes(b"pet")
    ct.write_bytes(b"ct")
    given = features.CaseFiles("P1", pet, ct, ct)
    network = features.CaseFiles("P1", pet, ct, None)
    settings = MeasureSettings()
    before = features.case_key(network, settings), features.case_key(given, settings)
    bundle = tmp_path / "organ_seg"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"files": {organ_seg.WEIGHTS: "0" * 64}}))
    monkeypatch.setattr(organ_seg, "DEFAULT_BUNDLE", bundle)
    assert features.case_key(network, settings) != before[0]
    assert features.case_key(given, settings) == before[1]  # masks given: the network plays no part
