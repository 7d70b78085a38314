"""Lesion measurements of every patient of a cohort, cached: the image models' input.

Feature names, model scale and lesion shares: :mod:`pfs_core.features.lesions`.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pfs_core import schema
from pfs_core.dataset import CohortData
from pfs_core.errors import InputError
from pfs_core.execution import plain_main
from pfs_core.features.lesions import FEATURE_VERSION, LESION_FEATURES, model_scale, raw_features
from pfs_core.io import load_ct, load_pet
from pfs_core.io.cache import ArrayCache, content_digest
from pfs_core.io.cohort import read_cohort
from pfs_core.measure.case import MEASURE_VERSION, Measurement, find_organs, measure_case
from pfs_core.measure.settings import MeasureSettings
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
                    progress: bool = False, workers: int = 1) -> pd.DataFrame:
    """Model-scale :data:`LESION_FEATURES` of every patient (rows in table order, index = patient id).

    Cached per case under ``cache_dir`` (the measurement takes 2-4 s a case); cases not in the cache
    are measured by ``workers`` processes.
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
    for done, (i, vector) in enumerate(zip(todo, _measured([cases[i] for i in todo], settings, workers),
                                           strict=True)):
        if progress:
            sys.stderr.write(f"measured lesions {done + 1}/{len(todo)}: {cases[i].patient_id}\n")
        emit("measuring lesions", done, len(todo))
        vectors[i] = vector
        if cache is not None:
            cache.put(case_key(cases[i], settings), {"features": vector})
    emit("measuring lesions", len(todo), len(todo))
    matrix = np.vstack([vectors[i] for i in range(len(cases))]) if cases else np.zeros((0, len(LESION_FEATURES)))
    return pd.DataFrame(matrix, index=pd.Index([c.patient_id for c in cases], name=schema.ID_COLUMN),
                        columns=list(LESION_FEATURES))


def _measured(cases: list[CaseFiles], settings: MeasureSettings, workers: int) -> Iterator[np.ndarray]:
    """:func:`case_features` of each case in order, by ``workers`` processes when there is more than one case."""
    if workers < 2 or len(cases) < 2:
        yield from (case_features(case, settings) for case in cases)
        return
    # spawn, not fork: the caller has usually started torch's and OpenMP's threads, and a forked child can
    # hang on a lock one of them held
    done = 0
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            with plain_main():  # map submits every case, and so starts the workers, before it returns
                results = pool.map(case_features, cases, [settings] * len(cases))
            for vector in results:
                done += 1
                yield vector
    except BrokenProcessPool:  # a worker died (killed for memory, or failed to start): the rest in this process
        warnings.warn(f"a measuring process ended abruptly; measuring the other {len(cases) - done} case(s) here",
                      RuntimeWarning, stacklevel=2)
        yield from (case_features(case, settings) for case in cases[done:])


def attach_lesion_features(data: CohortData, cohort_csv: str | Path, *, cache_dir: Path | None,
                           progress: bool = False, workers: int = 1) -> CohortData:
    """``data`` with :attr:`CohortData.lesion_features` of its patients (in place; also returned)."""
    table = cohort_features(cohort_csv, cache_dir=cache_dir, progress=progress, workers=workers)
    data.lesion_features = table.loc[[str(p) for p in data.patient_ids]].to_numpy(np.float32)
    return data
