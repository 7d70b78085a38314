"""Risk model and PFS outcome: Weibull proportional hazards with known truth.

Linear predictor (see docs/simulator.md)::

    eta = b0 + strength * (w_lab*z_lab + w_pet*z_pet + w_ct*z_ct) / sqrt(w_lab^2 + w_pet^2 + w_ct^2)

with standardised modality parts ``z_m = (raw_m - mean_m) / sd_m`` (reference
constants from :mod:`pfs_core.synth.reference`). Survival ``S(t) = exp(-(t/12)^k exp(eta))``
(t in months, shape ``k`` = :data:`WEIBULL_SHAPE`), hence
``P(PFS <= 12) = 1 - exp(-exp(eta))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pfs_core.errors import UsageError
from pfs_core.schema import SHORT_PFS_MONTHS
from pfs_core.synth.lesions import TumourBurden

MODALITIES = ("labs", "pet", "ct")
WEIBULL_SHAPE = 1.3
TARGET_PREVALENCE = 0.36  # expected share of PFS <= 12 months (as in the study: 42/116)
# Raw parts of the true risk; each is a function of what its modality can see (docs/simulator.md, "True risk").
# Lab part: Ki-67 (grade), primary site, albumin and gamma-GT, all measured values of cohort.csv.
LAB_COEF = {"log_ki67": 0.8, "albumin": -1.0, "log_gamma_gt": 0.5}
SITE_EFFECT = {"pancreas": 0.45, "small_bowel": -0.25, "other": 0.0}
# PET part: -ln(viable TLR of SSTR-positive lesions) + necrosis + SSTR-negative (mismatched) volume.
PET_NECROSIS_COEF = 2.0
PET_NEGATIVE_COEF = 0.4
# CT part: liver tumour fraction and CT-visible tumour volume (CT cannot tell SSTR status).
CT_LTF_COEF = 3.0
CT_VOLUME_COEF = 0.25
# Tumour-to-liver ratio assumed for the PET part when a patient has no SSTR-positive lesion.
PET_TLR_DEFAULT = 3.0
ADMIN_CENSOR_MONTHS = (18.0, 60.0)  # administrative end of follow-up, uniform
LOSS_PROBABILITY = 0.045  # early loss to follow-up
LOSS_MONTHS = (1.0, 12.0)  # time of early loss, uniform
PLANNED_CYCLES = ((4, 0.85), (3, 0.10), (2, 0.05))
CYCLE_INTERVAL_MONTHS = 2.0


@dataclass(frozen=True)
class Signal:
    """Non-negative weights of the modality parts in the linear predictor."""

    labs: float = 1.0
    pet: float = 1.0
    ct: float = 1.0

    def weights(self) -> np.ndarray:
        return np.array([self.labs, self.pet, self.ct], dtype=float)

    @property
    def is_null(self) -> bool:
        return not bool(self.weights().any())

    def as_dict(self) -> dict[str, float]:
        return {"labs": self.labs, "pet": self.pet, "ct": self.ct}


def parse_signal(text: str | None) -> Signal:
    """Parse ``labs=1,pet=0.5,ct=1`` (any subset; missing names are 1); UsageError on bad input."""
    hint = "write it as name=weight pairs separated by commas, e.g. --signal labs=1,pet=0.5,ct=0"
    values = {m: 1.0 for m in MODALITIES}
    if text is None or not text.strip():
        return Signal()
    seen = set()
    for item in text.split(","):
        item = item.strip()
        if "=" not in item:
            raise UsageError(f"--signal: cannot read {item!r} in {text!r}; {hint}")
        name, _, raw = (part.strip() for part in item.partition("="))
        key = name.lower()
        if key not in MODALITIES:
            raise UsageError(f"--signal: unknown modality {name!r}; use labs, pet and/or ct ({hint})")
        if key in seen:
            raise UsageError(f"--signal: {key} is given twice in {text!r}; give each modality once")
        seen.add(key)
        try:
            weight = float(raw)
        except ValueError:
            raise UsageError(f"--signal: weight {raw!r} of {key} is not a number; {hint}") from None
        if not math.isfinite(weight) or weight < 0:
            raise UsageError(f"--signal: weight of {key} must be a finite number >= 0 (got {raw!r}); use 0 to switch it off")
        values[key] = weight
    return Signal(**values)


def raw_parts(labs: dict[str, float], primary_site: str, burden: TumourBurden) -> tuple[float, float, float]:
    """Unstandardised (lab, PET, CT) risk parts from measured labs, primary site and the tumour burden."""
    lab = (
        LAB_COEF["log_ki67"] * math.log(labs["ki67"])
        + LAB_COEF["albumin"] * labs["albumin"]
        + LAB_COEF["log_gamma_gt"] * math.log(labs["gamma_gt"])
        + SITE_EFFECT[primary_site]
    )
    tlr = burden.positive_tlr if math.isfinite(burden.positive_tlr) else PET_TLR_DEFAULT
    pet = -math.log(tlr) + PET_NECROSIS_COEF * burden.necrotic_fraction + PET_NEGATIVE_COEF * math.log1p(
        burden.negative_volume_ml)
    ct = CT_LTF_COEF * burden.liver_tumour_fraction + CT_VOLUME_COEF * math.log1p(burden.ct_visible_volume_ml)
    return lab, pet, ct


def p_short_pfs(eta: np.ndarray | float) -> np.ndarray | float:
    """True P(PFS <= 12 months) = 1 - S(12 | eta) = 1 - exp(-exp(eta))."""
    return -np.expm1(-np.exp(eta))


@dataclass(frozen=True)
class Outcome:
    """Observed PFS (months, 2 decimals), event flag, label and post-baseline cycles."""

    pfs_months: float
    progressed: int
    short_pfs_observed: int | None
    prrt_cycles: int
    missing: tuple[str, ...]


def draw_outcome(rng: np.random.Generator, eta: float, missing_rates: dict[str, float]) -> Outcome:
    """Event time from the Weibull PH model, censoring, PRRT cycles and missing labs (fixed draw order)."""
    e = rng.exponential()
    t_event = SHORT_PFS_MONTHS * (e * math.exp(-eta)) ** (1.0 / WEIBULL_SHAPE)
    c_admin = rng.uniform(*ADMIN_CENSOR_MONTHS)
    lost = rng.uniform() < LOSS_PROBABILITY
    c_loss = rng.uniform(*LOSS_MONTHS)
    c = min(c_admin, c_loss) if lost else c_admin
    planned_u = rng.uniform()
    missing = tuple(name for name, rate in missing_rates.items() if rng.uniform() < rate)
    pfs = round(min(t_event, c), 2)
    progressed = int(t_event <= c)
    if pfs <= SHORT_PFS_MONTHS:
        label: int | None = 1 if progressed else None
    else:
        label = 0
    acc = 0.0
    planned = PLANNED_CYCLES[-1][0]
    for cycles, p in PLANNED_CYCLES:
        acc += p
        if planned_u < acc:
            planned = cycles
            break
    delivered = int(min(planned, 1 + math.floor(pfs / CYCLE_INTERVAL_MONTHS)))
    return Outcome(pfs, progressed, label, delivered, missing)
