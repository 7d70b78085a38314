"""One simulated patient's attributes: everything tabular, drawn from one random stream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pfs_core.synth.anatomy import Anatomy, draw_anatomy
from pfs_core.synth.labs import draw_demographics, draw_labs
from pfs_core.synth.lesions import (
    DiseaseProfile,
    Lesion,
    TumourBurden,
    draw_lesions,
    draw_profile,
    liver_scale,
    tumour_burden,
)
from pfs_core.synth.options import SimOptions
from pfs_core.synth.survival import raw_parts

#: Spawn-key suffix of the independent patient whose labs replace the real ones with ``labs_independent``.
SHADOW_KEY = 7
VARIED_ANATOMY_KEY = 11  # spawn key of the extra anatomy draws under SimOptions(anatomy="varied")


@dataclass(frozen=True)
class PatientAttributes:
    """Demographics, anatomy, lesions, measured labs (model units) and raw risk parts.

    With ``labs_independent`` the clinical values (sex, primary site, labs, Ki-67, age,
    PPI use) belong to an independent patient; ``lab_burden`` is that patient's burden.
    """

    sex: str
    primary_site: str
    anatomy: Anatomy
    lesions: tuple[Lesion, ...]
    burden: TumourBurden
    labs: dict[str, float]  # includes age and ki67
    raw: tuple[float, float, float]  # (lab, pet, ct) raw risk parts
    profile: DiseaseProfile
    ppi: bool
    lab_burden: TumourBurden


def patient_streams(seed: int, n: int) -> list[tuple[np.random.SeedSequence, ...]]:
    """Per patient (attributes, outcome, images) seed sequences: ``SeedSequence(seed).spawn(n)[i].spawn(3)``."""
    return [tuple(child.spawn(3)) for child in np.random.SeedSequence(seed).spawn(n)]


@dataclass(frozen=True)
class _Draw:
    sex: str
    site: str
    anatomy: Anatomy
    lesions: tuple[Lesion, ...]
    burden: TumourBurden
    labs: dict[str, float]
    profile: DiseaseProfile
    ppi: bool


def _draw(seed_seq: np.random.SeedSequence, options: SimOptions) -> _Draw:
    rng = np.random.default_rng(seed_seq)
    sex, age, site, ki67 = draw_demographics(rng)
    profile = draw_profile(rng, ki67=ki67, sstr_negative_rate=options.sstr_negative_rate)
    variation = None
    if options.anatomy == "varied":
        variation = np.random.default_rng(
            np.random.SeedSequence(seed_seq.entropy, spawn_key=(*seed_seq.spawn_key, VARIED_ANATOMY_KEY)))
    anatomy = draw_anatomy(rng, liver_scale=liver_scale(profile.liver_fraction), variation=variation)
    lesions = tuple(draw_lesions(rng, anatomy, profile, primary_site=site, ki67=ki67))
    burden = tumour_burden(list(lesions), anatomy.liver_volume_ml)
    labs, ppi = draw_labs(rng, sex=sex, age=age, burden=burden)
    labs["ki67"] = ki67
    labs["age"] = age
    return _Draw(sex, site, anatomy, lesions, burden, labs, profile, ppi)


def shadow_stream(seed_seq: np.random.SeedSequence) -> np.random.SeedSequence:
    """The independent stream of a patient's clinical values under ``labs_independent``."""
    return np.random.SeedSequence(seed_seq.entropy, spawn_key=(*seed_seq.spawn_key, SHADOW_KEY))


def draw_attributes(seed_seq: np.random.SeedSequence, options: SimOptions | None = None) -> PatientAttributes:
    """Draw all tabular attributes of one patient from its attribute stream."""
    options = options or SimOptions()
    main = _draw(seed_seq, options)
    clinical = _draw(shadow_stream(seed_seq), options) if options.labs_independent else main
    raw = raw_parts(clinical.labs, clinical.site, main.burden)
    return PatientAttributes(clinical.sex, clinical.site, main.anatomy, main.lesions, main.burden, clinical.labs, raw,
                             main.profile, clinical.ppi, clinical.burden)
