"""Lesion measurements of every patient of a cohort, cached: the image models' input.

Feature names, model scale and lesion shares: :mod:`pfs_core.features.lesions`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pfs_core import schema
from pfs_core.config import PreprocessConfig
from pfs_core.dataset import CohortData, load_cohort_data
from pfs_core.errors import InputError
from pfs_core.execution import Execution, Task
from pfs_core.features.lesions import FEATURE_VERSION, LESION_FEATURES, model_scale, raw_features
from pfs_core.io import load_ct, load_pet
from pfs_core.io.cache import ArrayCache, content_digest
from pfs_core.io.cohort import read_cohort
from pfs_core.measure.case import MEASURE_VERSION, Measurement, find_organs, measure_case
from pfs_core.measure.settings import MeasureSettings
from pfs_core.preprocessing.model_grid import cached_arrays, case_cache_key, check_case_files, prepared_arrays
from pfs_core.progress import emit


def measurement_vector(measurement: Measurement) -> np.ndarray:
    """Model-scale feature vector of one :class:`Measurement`."""
    return model_scale(raw_features(measurement.features, measurement.lesions))


@dataclass(frozen=True)
class CaseFiles:
    """One patient's files: PET and CT (either may be None) and organ masks (None: the organ network)."""

    patient_id: str
    pet: Path | None
    ct: Path | None
    organs: Path | None


def case_key(case: CaseFiles, settings: MeasureSettings) -> str:
    """Cache key of one case's features: versions, settings and the bytes of every file read."""
    hasher = hashlib.sha256(f"lesion-features {FEATURE_VERSION} measure {MEASURE_VERSION}".encode())
    hasher.update(json.dumps(settings.to_dict(), sort_keys=True).encode())
    for label, path in (("pet", case.pet), ("ct", case.ct), ("organs", case.organs)):
        hasher.update(f"|{label}:{content_digest(path) if path is not None else '-'}".encode())
    if case.organs is None:  # the organ network's organs: its weights are an input too
        from pfs_core.models.organ_seg import network_digest

        hasher.update(f"|organ-network:{network_digest()}".encode())
    return f"lesionfeat_{hasher.hexdigest()[:40]}"


def case_features(case: CaseFiles, settings: MeasureSettings) -> np.ndarray:
    """Model-scale features of one case; all NaN without PET or CT, or when it cannot be measured."""
    if case.pet is None or case.ct is None:
        return np.full(len(LESION_FEATURES), np.nan, np.float32)
    try:
        ct = load_ct(case.ct)
        organs = find_organs(ct, organs=case.organs)
        return measurement_vector(measure_case(load_pet(case.pet), ct, organs=organs, settings=settings))
    except InputError as exc:
        sys.stderr.write(f"lesion features of {case.patient_id}: not measured ({exc})\n")
        return np.full(len(LESION_FEATURES), np.nan, np.float32)


def cohort_cases(cohort_csv: str | Path) -> list[CaseFiles]:
    """The files of every row of a checked cohort table (``organs`` column optional)."""
    frame = read_cohort(cohort_csv, require_outcome=False, need_images=True)

    def path(text: object) -> Path | None:
        return Path(str(text)) if isinstance(text, str) and text else None

    return [CaseFiles(str(r[schema.ID_COLUMN]), path(r[schema.PET_COLUMN]), path(r[schema.CT_COLUMN]),
                      path(r.get(schema.ORGANS_COLUMN, ""))) for r in frame.to_dict("records")]


def cohort_features(cohort_csv: str | Path, *, cache_dir: Path | None, settings: MeasureSettings | None = None,
                    progress: bool = False, execution: Execution | None = None) -> pd.DataFrame:
    """Model-scale :data:`LESION_FEATURES` of every patient (rows in table order, index = patient id).

    Cached per case under ``cache_dir`` (the measurement takes 2-4 s a case); the cases not in the cache
    are one task each on ``execution`` (:mod:`pfs_core.execution`; default: one after the other here),
    reading their files by absolute path and handing back the feature vector, which this process caches.
    """
    settings = settings or MeasureSettings()
    cache = ArrayCache(Path(cache_dir)) if cache_dir is not None else None
    cases = cohort_cases(cohort_csv)
    vectors: dict[int, np.ndarray] = {}
    for i, case in enumerate(cases):
        stored = cache.get(case_key(case, settings), required=("features",)) if cache is not None else None
        if stored is not None and stored["features"].shape == (len(LESION_FEATURES),):
            vectors[i] = stored["features"]
    todo = [i for i in range(len(cases)) if i not in vectors]
    tasks = [Task(case_features, args=(_absolute(cases[i]), settings), label=f"patient {cases[i].patient_id}",
                  info={"patient_id": cases[i].patient_id}, memory_mb=3072) for i in todo]
    emit("measuring lesions", 0, len(todo))

    def step(done: int, total: int, label: str) -> None:
        if progress:
            sys.stderr.write(f"measured lesions {done}/{total}: {label.removeprefix('patient ')}\n")
        emit("measuring lesions", done, total)

    for i, vector in zip(todo, (execution or Execution()).run(tasks, progress=step), strict=True):
        vectors[i] = vector
        if cache is not None:
            cache.put(case_key(cases[i], settings), {"features": vector})
    matrix = np.vstack([vectors[i] for i in range(len(cases))]) if cases else np.zeros((0, len(LESION_FEATURES)))
    return pd.DataFrame(matrix, index=pd.Index([c.patient_id for c in cases], name=schema.ID_COLUMN),
                        columns=list(LESION_FEATURES))


def _absolute(case: CaseFiles) -> CaseFiles:
    """``case`` with absolute paths (a worker process need not share this one's working folder)."""
    def absolute(path: Path | None) -> Path | None:
        return None if path is None else path.absolute()

    return CaseFiles(case.patient_id, absolute(case.pet), absolute(case.ct), absolute(case.organs))


def attach_lesion_features(data: CohortData, cohort_csv: str | Path, *, cache_dir: Path | None,
                           progress: bool = False, execution: Execution | None = None,
                           settings: MeasureSettings | None = None) -> CohortData:
    """``data`` with :attr:`CohortData.lesion_features` of its patients (in place; also returned)."""
    table = cohort_features(cohort_csv, cache_dir=cache_dir, settings=settings, progress=progress,
                            execution=execution)
    data.lesion_features = table.loc[[str(p) for p in data.patient_ids]].to_numpy(np.float32)
    return data


def load_cohort_with_lesions(cohort_csv: str | Path, *, preprocess: PreprocessConfig, need_images: bool,
                             lesions: bool, cache_dir: Path | None, progress: bool = False,
                             require_outcome: bool = True, execution: Execution | None = None,
                             settings: MeasureSettings | None = None) -> CohortData:
    """:func:`~pfs_core.dataset.load_cohort_data`, with the lesion measurements when ``lesions`` (and images),
    measured with ``settings`` (default: today's :class:`MeasureSettings`).

    With a cache and worker processes (or Ray), each case missing from the cache is first preprocessed and
    measured by one task (:func:`prepare_case`), so the workers start once and a case's files go to one
    worker; both steps then read the cache.
    """
    lesions = lesions and need_images
    if lesions and cache_dir is not None and execution is not None and not execution.in_process:
        _prepare_uncached(Path(cohort_csv), preprocess, Path(cache_dir), progress=progress, execution=execution,
                          settings=settings or MeasureSettings())
    data = load_cohort_data(cohort_csv, preprocess=preprocess, need_images=need_images, cache_dir=cache_dir,
                            progress=progress, require_outcome=require_outcome, execution=execution)
    if lesions:
        attach_lesion_features(data, cohort_csv, cache_dir=cache_dir, progress=progress, execution=execution,
                               settings=settings)
    return data


def prepare_case(case: CaseFiles, config: PreprocessConfig | None,
                 settings: MeasureSettings | None) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None]:
    """(model-grid arrays, lesion features) of one case; None for a part not asked for (its ``config`` or
    ``settings`` None)."""
    arrays = prepared_arrays(case.pet, case.ct, config) if config is not None else None
    return arrays, (case_features(case, settings) if settings is not None else None)


def _prepare_uncached(cohort_csv: Path, config: PreprocessConfig, cache_dir: Path, *, progress: bool,
                      execution: Execution, settings: MeasureSettings) -> None:
    """Cache the model-grid arrays and lesion features of every case that lacks either, one task a case.

    A case with a missing file is left to :func:`~pfs_core.preprocessing.model_grid.preprocess_cohort`, which
    names it in its error."""
    cache = ArrayCache(cache_dir)
    todo = []
    for case in cohort_cases(cohort_csv):
        try:
            check_case_files(case.pet, case.ct)
        except InputError:
            continue
        grid = cached_arrays(case.pet, case.ct, config, cache) is None
        stored = cache.get(case_key(case, settings), required=("features",))
        if grid or stored is None:
            todo.append((case, grid, stored is None))
    tasks = [Task(prepare_case, args=(_absolute(case), config if grid else None, settings if measure else None),
                  label=f"{cohort_csv}, patient {case.patient_id}", info={"patient_id": case.patient_id},
                  memory_mb=3072) for case, grid, measure in todo]

    def step(done: int, total: int, label: str) -> None:
        if progress:
            sys.stderr.write(f"preprocessed and measured {done}/{total}: {label.rpartition('patient ')[2]}\n")
        emit("preprocessing and measuring", done, total)

    emit("preprocessing and measuring", 0, len(todo))
    for (case, _, _), (arrays, features) in zip(todo, execution.run(tasks, progress=step), strict=True):
        if arrays is not None:
            cache.put(case_cache_key(case.pet, case.ct, config), arrays)
        if features is not None:
            cache.put(case_key(case, settings), {"features": features})
