"""One simulated patient's attributes: everything tabular, drawn from one random stream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pfs_core.synth.anatomy import Anatomy, draw_anatomy
from pfs_core.synth.labs import draw_demographics, draw_labs
from pfs_core.synth.lesions import Lesion, TumourBurden, draw_lesions, tumour_burden
from pfs_core.synth.survival import raw_parts


@dataclass(frozen=True)
class PatientAttributes:
    """Demographics, anatomy, lesions, measured labs (model units) and raw risk parts."""

    sex: str
    primary_site: str
    anatomy: Anatomy
    lesions: tuple[Lesion, ...]
    burden: TumourBurden
    labs: dict[str, float]  # includes age and ki67
    raw: tuple[float, float, float]  # (lab, pet, ct) raw risk parts


def patient_streams(seed: int, n: int) -> list[tuple[np.random.SeedSequence, ...]]:
    """Per patient (attributes, outcome, images) seed sequences: ``SeedSequence(seed).spawn(n)[i].spawn(3)``."""
    return [tuple(child.spawn(3)) for child in np.random.SeedSequence(seed).spawn(n)]


def draw_attributes(seed_seq: np.random.SeedSequence) -> PatientAttributes:
    """Draw all tabular attributes of one patient from its attribute stream."""
    rng = np.random.default_rng(seed_seq)
    sex, age, site, ki67 = draw_demographics(rng)
    anatomy = draw_anatomy(rng)
    lesions = tuple(draw_lesions(rng, anatomy, primary_site=site, ki67=ki67))
    burden = tumour_burden(list(lesions), anatomy.liver_volume_ml)
    labs = draw_labs(rng, sex=sex, age=age, burden=burden)
    labs["ki67"] = ki67
    labs["age"] = age
    return PatientAttributes(sex, site, anatomy, lesions, burden, labs, raw_parts(labs, burden))
