"""Model input of a cohort: :class:`CohortData` (labs, outcome, preprocessed PET/CT of N patients).

:func:`load_cohort_data` reads a cohort table (:func:`pfs_core.io.cohort.read_cohort`)
and, when a model needs images, the PET/CT of every row on the model grid
(:func:`pfs_core.preprocessing.model_grid.preprocess_cohort`, cached). Row i of every
field is the same patient. Training, inference and explanation all take this record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pfs_core import schema
from pfs_core.config import PreprocessConfig
from pfs_core.execution import Execution
from pfs_core.features.pet_quant import PET_FEATURE_COLUMNS, pet_quantitative_features
from pfs_core.io.cohort import read_cohort
from pfs_core.metrics import short_pfs_label
from pfs_core.preprocessing.model_grid import preprocess_cohort


@dataclass
class CohortData:
    """Model inputs and outcome of N patients (row i of every field is the same patient).

    ``pet``/``ct``: (N, D, H, W) float32 on the model grid in [0, 1] (PET = SUVbw /
    ``preprocess.pet_suv_max``; CT windowed), zeros where ``*_present`` is False;
    None when no model needs images. ``pet_suv_max_original`` (N,): SUVmax of the
    original PET before clipping (NaN without PET). ``lesion_features`` (N, F): the lesion
    measurements of :data:`pfs_core.measure.features.LESION_FEATURES` on the model scale (NaN where
    not measured), attached by :func:`pfs_core.measure.features.attach_lesion_features`; None when no
    model needs them.
    """

    patient_ids: np.ndarray
    labs: pd.DataFrame
    time_months: np.ndarray
    event: np.ndarray
    preprocess: PreprocessConfig
    pet: np.ndarray | None = None
    ct: np.ndarray | None = None
    pet_present: np.ndarray | None = None
    ct_present: np.ndarray | None = None
    pet_suv_max_original: np.ndarray | None = None
    lesion_features: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.patient_ids)

    @property
    def label(self) -> np.ndarray:
        """(N,) 1.0 short PFS, 0.0 long, NaN censored at or before 12 months."""
        return short_pfs_label(self.time_months, self.event)

    def subset(self, index: Sequence[int] | np.ndarray) -> CohortData:
        idx = np.asarray(index, dtype=int)

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return CohortData(
            patient_ids=self.patient_ids[idx], labs=self.labs.iloc[idx].reset_index(drop=True),
            time_months=self.time_months[idx], event=self.event[idx], preprocess=self.preprocess,
            pet=take(self.pet), ct=take(self.ct), pet_present=take(self.pet_present), ct_present=take(self.ct_present),
            pet_suv_max_original=take(self.pet_suv_max_original), lesion_features=take(self.lesion_features),
        )

    def pet_features(self) -> pd.DataFrame:
        """(N, 5) quantitative PET features (:func:`pfs_core.features.pet_quant.pet_quantitative_features`)."""
        voxel_ml = self.preprocess.voxel_ml
        rows = []
        for i in range(len(self)):
            has_pet = self.pet is not None and self.pet_present is not None and bool(self.pet_present[i])
            original = self.pet_suv_max_original[i] if self.pet_suv_max_original is not None else None
            rows.append(pet_quantitative_features(
                self.pet[i] if has_pet else None,  # type: ignore[index]
                pet_suv_max=self.preprocess.pet_suv_max, voxel_ml=voxel_ml,
                suv_max_original=float(original) if original is not None and np.isfinite(original) else None))
        return pd.DataFrame(rows, columns=list(PET_FEATURE_COLUMNS))


def load_cohort_data(
    cohort_csv: str | Path,
    *,
    preprocess: PreprocessConfig,
    need_images: bool,
    cache_dir: Path | None = None,
    progress: bool = False,
    require_outcome: bool = True,
    execution: Execution | None = None,
) -> CohortData:
    """Read the cohort table and, when ``need_images``, its preprocessed PET/CT (cached; the cases not in the
    cache preprocessed as tasks on ``execution``, :func:`~pfs_core.preprocessing.model_grid.preprocess_cohort`)."""
    frame = read_cohort(cohort_csv, require_outcome=require_outcome)
    data = CohortData(
        patient_ids=frame[schema.ID_COLUMN].to_numpy(dtype=str),
        labs=frame[list(schema.LAB_COLUMNS)].reset_index(drop=True),
        time_months=frame[schema.TIME_COLUMN].to_numpy(dtype=float),
        event=frame[schema.EVENT_COLUMN].to_numpy(dtype=int), preprocess=preprocess,
    )
    if need_images:
        _attach_images(data, cohort_csv=Path(cohort_csv), cache_dir=cache_dir, progress=progress, execution=execution)
    return data


def _attach_images(data: CohortData, *, cohort_csv: Path, cache_dir: Path | None, progress: bool,
                   execution: Execution | None) -> None:
    tensors = preprocess_cohort(cohort_csv, data.preprocess, cache_dir=cache_dir, progress=progress,
                                execution=execution)
    position = {str(pid): i for i, pid in enumerate(tensors.patient_ids)}
    order = np.asarray([position[str(pid)] for pid in data.patient_ids], dtype=int)
    data.pet, data.ct = tensors.pet[order], tensors.ct[order]
    data.pet_present = np.asarray(tensors.has_pet, bool)[order]
    data.ct_present = np.asarray(tensors.has_ct, bool)[order]
    data.pet_suv_max_original = np.asarray(tensors.pet_suv_max, float)[order]
