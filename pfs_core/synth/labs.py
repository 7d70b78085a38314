"""Laboratory and clinical values (units of :mod:`pfs_core.schema`), correlated with tumour burden.

Skewed labs are log-normal. Values are rounded to the reporting precision in
:data:`DECIMALS`; the risk model uses these *measured* (rounded) values, before
missingness is applied (:data:`MISSING_RATE`, drawn from the outcome stream).
"""

from __future__ import annotations

import math

import numpy as np

from pfs_core.synth.lesions import TumourBurden

# Reporting precision (decimals) of every numeric cohort column.
DECIMALS: dict[str, int] = {
    "chromogranin_a": 1,
    "gamma_gt": 0,
    "alkaline_phosphatase": 0,
    "ast": 0,
    "alt": 0,
    "bilirubin": 2,
    "albumin": 1,
    "creatinine": 2,
    "hemoglobin": 1,
    "platelets": 0,
    "leukocytes": 1,
    "ki67": 1,
    "age": 0,
    "prrt_cycles": 0,
}

# Share of values missing completely at random per lab.
MISSING_RATE: dict[str, float] = {
    "chromogranin_a": 0.06,
    "ki67": 0.07,
    "ast": 0.04,
    "alt": 0.03,
    "bilirubin": 0.05,
    "alkaline_phosphatase": 0.03,
}

PRIMARY_SITES = ("pancreas", "small_bowel", "other")
PRIMARY_P = (0.40, 0.45, 0.15)


def _r(name: str, value: float, lo: float, hi: float) -> float:
    return round(float(np.clip(value, lo, hi)), DECIMALS[name])


def draw_demographics(rng: np.random.Generator) -> tuple[str, float, str, float]:
    """Sex (F/M), age (years), primary site and Ki-67 index (%, log-normal, median 5 %)."""
    sex = "F" if rng.uniform() < 0.5 else "M"
    age = _r("age", rng.normal(63.0, 11.0), 25.0, 90.0)
    site = PRIMARY_SITES[int(rng.choice(3, p=PRIMARY_P))]
    ki67 = _r("ki67", math.exp(math.log(5.0) + rng.normal(0.0, 0.8)), 0.5, 60.0)
    return sex, age, site, ki67


PPI_P = 0.35  # share of NET patients on proton-pump inhibitors (raise chromogranin A without tumour)
CKD_P = 0.08  # share with impaired renal function (creatinine raised; CgA is cleared renally)


def draw_labs(rng: np.random.Generator, *, sex: str, age: float, burden: TumourBurden) -> tuple[dict[str, float], bool]:
    """Measured labs (model units) given the tumour burden, and whether the patient takes a PPI.

    Chromogranin A (ng/mL) rises with the SSTR-positive volume and is confounded: a
    proton-pump inhibitor multiplies it by about 2-5 and impaired renal function by
    ``(creatinine / 1 mg/dL) ** 1.5`` above 1 mg/dL. Gamma-GT and alkaline phosphatase
    (U/L) rise with the liver tumour fraction (ALP also with bone disease); AST/ALT
    (U/L) and bilirubin (mg/dL) mildly with liver involvement; albumin (g/dL) and
    hemoglobin (g/dL) fall with the total burden. Platelets and leukocytes carry no
    information about the tumour.
    """
    ltf = burden.liver_tumour_fraction
    log_pos = math.log1p(burden.positive_volume_ml)
    log_tot = math.log1p(burden.volume_ml)
    female = sex == "F"
    n = rng.normal(size=12)
    u = rng.uniform(size=4)
    liver_enzyme = n[10]  # shared hepatocellular component of AST/ALT
    ppi = bool(u[0] < PPI_P)
    ckd_extra = 0.4 + 1.4 * u[2] if u[1] < CKD_P else 0.0
    creatinine = math.exp(math.log(0.78 if female else 0.98) + 0.005 * (age - 63.0) + 0.2 * n[7]) + ckd_extra
    cga_confounding = (math.log(2.0) + math.log(2.5) * u[3] if ppi else 0.0) + 1.5 * max(0.0, math.log(creatinine))
    labs = {
        "chromogranin_a": _r("chromogranin_a",
                             math.exp(math.log(25.0) + 0.6 * log_pos + 0.8 * n[0] + cga_confounding), 5.0, 1e5),
        "gamma_gt": _r("gamma_gt", math.exp(math.log(28.0) + 3.0 * ltf + 0.08 * log_tot + 0.55 * n[1]), 5.0, 3000.0),
        "alkaline_phosphatase": _r(
            "alkaline_phosphatase",
            math.exp(math.log(78.0) + 1.6 * ltf + 0.12 * math.log1p(burden.bone_volume_ml) + 0.28 * n[2]),
            25.0,
            3000.0,
        ),
        "ast": _r("ast", math.exp(math.log(24.0) + 1.0 * ltf + 0.2 * liver_enzyme + 0.2 * n[3]), 8.0, 2000.0),
        "alt": _r("alt", math.exp(math.log(22.0) + 0.7 * ltf + 0.25 * liver_enzyme + 0.25 * n[4]), 5.0, 2000.0),
        "bilirubin": _r("bilirubin", math.exp(math.log(0.55) + 1.2 * ltf + 0.4 * n[5]), 0.1, 20.0),
        "albumin": _r("albumin", 4.25 - 0.07 * log_tot - 0.8 * ltf + 0.33 * n[6], 2.0, 5.4),
        "creatinine": _r("creatinine", creatinine, 0.3, 6.0),
        "hemoglobin": _r("hemoglobin", (13.2 if female else 14.4) - 0.12 * log_tot - 1.0 * ltf + 1.1 * n[8], 7.0, 18.5),
        "platelets": _r("platelets", math.exp(math.log(240.0) + 0.3 * n[9]), 40.0, 900.0),
        "leukocytes": _r("leukocytes", math.exp(math.log(6.5) + 0.3 * n[11]), 1.5, 30.0),
    }
    return labs, ppi
