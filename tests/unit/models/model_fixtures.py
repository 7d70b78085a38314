"""Tiny seeded cohorts for the model tests (no simulator needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pfs_core import schema
from pfs_core.config import PreprocessConfig, PretrainConfig, TrainConfig
from pfs_core.dataset import CohortData
from pfs_core.features.lesions import LESION_FEATURES

SMALL = PreprocessConfig(shape=(16, 16, 16), spacing_mm=(24.0, 24.0, 24.0))
#: The one fast training configuration of the test suite (docs/testing.md): one epoch of tiny networks,
#: 20 trees, one pretraining epoch, one L2 penalty instead of the inner-CV search of block penalty weights
#: (``wide_search``: 66 of 76 s per model in the end-to-end benchmark) and no augmentation (``augment``:
#: it halved the speed of every torch fit). A test of one of these settings turns it back on explicitly,
#: e.g. ``dataclasses.replace(FAST, wide_search=True)``.
FAST = TrainConfig(epochs=1, batch_size=8, channels=(4, 8), strides=(2, 2), embed_dim=8, hidden=8,
                   rf_trees=20, wide_search=False, augment=False,
                   pretrain=PretrainConfig(epochs=1, batch_size=4, patch=4))
#: Provenance of the test bundles (a fake cohort, flagged simulated).
PROVENANCE = {"command": "test", "source": "fake", "simulated": True, "note": "fake cohort",
              "created": "2026-01-01T00:00:00+00:00", "device": "cpu"}


def fake_labs(n: int, rng: np.random.Generator, risk: np.ndarray) -> pd.DataFrame:
    """Plausible labs; chromogranin A and gamma-GT rise with ``risk``; a few values missing."""
    labs = {}
    for feature in schema.NUMERIC_FEATURES:
        low, high = feature.reference or (feature.plausible[0], min(feature.plausible[1], 100.0))
        labs[feature.name] = rng.uniform(low, high, n)
    labs["chromogranin_a"] = np.exp(4 + 2 * risk + rng.normal(0, 0.5, n))
    labs["gamma_gt"] = np.exp(3.5 + risk + rng.normal(0, 0.4, n))
    labs["age"] = rng.uniform(40, 80, n)
    labs["prrt_cycles"] = rng.integers(1, 5, n).astype(float)
    frame = pd.DataFrame(labs)
    frame.loc[rng.random(n) < 0.1, "ki67"] = np.nan
    frame["sex"] = rng.choice(["F", "M"], n)
    frame["primary_site"] = rng.choice(["pancreas", "small_bowel", "other"], n)
    return frame


def make_cohort(n: int = 18, *, seed: int = 0, config: PreprocessConfig = SMALL) -> CohortData:
    """N patients: labels balanced-ish, 2 censored before 12 months, a PET hot spot and a CT blob per risk."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(0, 1, n)
    short = risk > np.quantile(risk, 0.6)
    time = np.where(short, rng.uniform(3, 11, n), rng.uniform(14, 40, n))
    event = np.where(short, 1, rng.integers(0, 2, n))
    time[:2], event[:2] = 6.0, 0  # censored before 12 months: no binary label
    shape = config.shape
    pet = rng.uniform(0.0, 0.05, (n, *shape)).astype(np.float32)
    ct = rng.uniform(0.2, 0.4, (n, *shape)).astype(np.float32)
    c = [s // 2 for s in shape]
    pet[:, c[0] - 2:c[0] + 2, c[1] - 2:c[1] + 2, c[2] - 2:c[2] + 2] += (0.8 - 0.3 * short)[:, None, None, None]
    ct[:, 2:5, 2:5, 2:5] -= (0.15 * short)[:, None, None, None]
    # lesion measurements on the model scale: SSTR-positive volume and the liver tumour fraction rise with risk
    lesions = rng.normal(0.0, 0.3, (n, len(LESION_FEATURES))).astype(np.float32) + 1.0
    lesions[:, LESION_FEATURES.index("sstr_positive_volume_ml")] += risk
    lesions[:, LESION_FEATURES.index("liver_tumour_fraction")] = np.clip(0.1 + 0.05 * risk, 0, 1)
    return CohortData(
        patient_ids=np.array([f"P{i:03d}" for i in range(n)]), labs=fake_labs(n, rng, risk),
        time_months=time, event=event, preprocess=config, pet=pet, ct=ct,
        pet_present=np.ones(n, bool), ct_present=np.ones(n, bool), lesion_features=lesions,
    )


def fake_organs(shape, affine):
    """Organ label map (liver around the hot spot, spleen, two kidneys) with TotalSegmentator-style names."""
    import nibabel as nib

    from pfs_core.io.organ_files import label_names_extension
    from pfs_core.io.organs import ORGANS

    index = np.indices(shape)
    labels = np.zeros(shape, np.uint8)
    for code, centre, radius in ((1, (20, 16, 20), 7), (2, (20, 16, 8), 3), (3, (10, 20, 28), 3),
                                 (4, (30, 20, 28), 3)):
        labels[sum((index[k] - centre[k]) ** 2 for k in range(3)) <= radius**2] = code
    img = nib.Nifti1Image(labels, affine)
    img.header.extensions.append(label_names_extension(dict(ORGANS)))
    return img


def write_disk_cohort(folder, n: int = 18, *, seed: int = 0, shape=(40, 32, 40), spacing: float = 9.0):
    """cohort.csv + NIfTI PET (SUV) / CT (HU) per patient in ``folder`` (a hot spot weaker in short PFS)."""
    from pathlib import Path

    import nibabel as nib

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    data = make_cohort(n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    body = (grid**2).sum(axis=0) < 0.8
    organs = fake_organs(shape, affine)
    nib.save(organs, folder / "images" / "organs.nii.gz")
    liver = np.asarray(organs.dataobj) == 1
    rows = []
    for i, pid in enumerate(data.patient_ids):
        short = data.label[i] == 1
        ct = np.where(body, 40.0, -1000.0) + rng.normal(0, 10, shape)
        ct[liver] += 20.0
        pet = np.where(body, 1.0, 0.05) + rng.uniform(0, 0.2, shape)
        pet[liver] += 4.0
        pet[18:22, 14:18, 18:22] += 12.0 - 6.0 * short
        nib.save(nib.Nifti1Image(ct.astype(np.float32), affine), folder / "images" / f"{pid}_ct.nii.gz")
        nib.save(nib.Nifti1Image(pet.astype(np.float32), affine), folder / "images" / f"{pid}_pet.nii.gz")
        rows.append({"patient_id": pid, "pet": f"images/{pid}_pet.nii.gz", "ct": f"images/{pid}_ct.nii.gz",
                     "organs": "images/organs.nii.gz"})
    frame = pd.DataFrame(rows)
    frame = pd.concat([frame, data.labs], axis=1)
    frame["pfs_months"], frame["progressed"] = data.time_months, data.event
    frame = frame[[*schema.COHORT_COLUMNS, schema.ORGANS_COLUMN]]
    frame.to_csv(folder / "cohort.csv", index=False)
    return folder / "cohort.csv"


