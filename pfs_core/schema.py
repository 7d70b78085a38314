"""Cohort table contract: column names, units, plausible ranges, unit conversions.

One source of truth for the simulator, the model input, the command line and the
pages. The lab and clinical columns are those of ``cohort.csv`` (see README).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Outcome and bookkeeping columns of cohort.csv.
ID_COLUMN = "patient_id"
PET_COLUMN = "pet"
CT_COLUMN = "ct"
#: Optional: organ masks of the CT (a TotalSegmentator folder, multi-label NIfTI, DICOM SEG or RTSTRUCT;
#: docs/organ_input.md). Empty: the organ network delineates the organs.
ORGANS_COLUMN = "organs"
TIME_COLUMN = "pfs_months"
EVENT_COLUMN = "progressed"
SHORT_PFS_MONTHS = 12.0

# prrt_cycles is known only after therapy; models exclude it unless asked explicitly.
POST_BASELINE_COLUMNS = ("prrt_cycles",)


@dataclass(frozen=True)
class UnitChoice:
    """An alternative unit: value_in_model_unit = value * factor."""

    unit: str
    factor: float


@dataclass(frozen=True)
class NumericFeature:
    """A numeric lab or clinical value.

    ``reference`` is the usual normal range (None where none applies);
    ``plausible`` bounds what can be a real measurement at all (outside: input error).
    """

    name: str
    label: str
    unit: str
    reference: tuple[float, float] | None
    plausible: tuple[float, float]
    alt_units: tuple[UnitChoice, ...] = field(default=())


@dataclass(frozen=True)
class CategoricalFeature:
    name: str
    label: str
    levels: tuple[str, ...]


NUMERIC_FEATURES: tuple[NumericFeature, ...] = (
    NumericFeature("chromogranin_a", "Chromogranin A", "ng/mL", (0.0, 100.0), (0.0, 1e6),
                   (UnitChoice("µg/L", 1.0), UnitChoice("nmol/L", 49.0))),
    NumericFeature("gamma_gt", "Gamma-GT", "U/L", (8.0, 61.0), (0.0, 5000.0)),
    NumericFeature("alkaline_phosphatase", "Alkaline phosphatase", "U/L", (40.0, 130.0), (0.0, 5000.0)),
    NumericFeature("ast", "AST (GOT)", "U/L", (10.0, 40.0), (0.0, 5000.0)),
    NumericFeature("alt", "ALT (GPT)", "U/L", (7.0, 56.0), (0.0, 5000.0)),
    NumericFeature("bilirubin", "Bilirubin (total)", "mg/dL", (0.1, 1.2), (0.0, 50.0),
                   (UnitChoice("µmol/L", 1.0 / 17.1),)),
    NumericFeature("albumin", "Albumin", "g/dL", (3.5, 5.0), (0.5, 7.0),
                   (UnitChoice("g/L", 0.1),)),
    NumericFeature("creatinine", "Creatinine", "mg/dL", (0.6, 1.2), (0.1, 20.0),
                   (UnitChoice("µmol/L", 1.0 / 88.4),)),
    NumericFeature("hemoglobin", "Hemoglobin", "g/dL", (12.0, 17.5), (2.0, 25.0),
                   (UnitChoice("g/L", 0.1), UnitChoice("mmol/L", 1.611))),
    NumericFeature("platelets", "Platelets", "10^9/L", (150.0, 400.0), (1.0, 2000.0)),
    NumericFeature("leukocytes", "Leukocytes", "10^9/L", (4.0, 10.0), (0.1, 200.0)),
    NumericFeature("ki67", "Ki-67 index", "%", None, (0.0, 100.0)),
    NumericFeature("age", "Age", "years", None, (18.0, 110.0)),
    NumericFeature("prrt_cycles", "PRRT cycles received (post-baseline)", "cycles", None, (0.0, 12.0)),
)

CATEGORICAL_FEATURES: tuple[CategoricalFeature, ...] = (
    CategoricalFeature("sex", "Sex", ("F", "M")),
    CategoricalFeature("primary_site", "Primary tumour site", ("pancreas", "small_bowel", "other")),
)

NUMERIC_BY_NAME = {f.name: f for f in NUMERIC_FEATURES}
CATEGORICAL_BY_NAME = {f.name: f for f in CATEGORICAL_FEATURES}
LAB_COLUMNS: tuple[str, ...] = tuple(f.name for f in NUMERIC_FEATURES) + tuple(
    f.name for f in CATEGORICAL_FEATURES
)
COHORT_COLUMNS: tuple[str, ...] = (ID_COLUMN, PET_COLUMN, CT_COLUMN, *LAB_COLUMNS, TIME_COLUMN, EVENT_COLUMN)
#: Optional columns: read when present, never required.
OPTIONAL_COLUMNS: tuple[str, ...] = (ORGANS_COLUMN,)


def label(name: str, default: str | None = None) -> str:
    """The on-screen label of lab or clinical column ``name`` ("AST (GOT)"); ``default`` (else the name itself)
    for a column the schema does not know."""
    feature = NUMERIC_BY_NAME.get(name) or CATEGORICAL_BY_NAME.get(name)
    if feature is not None:
        return feature.label
    return name if default is None else default


def to_model_unit(name: str, value: float, unit: str) -> float:
    """Convert ``value`` given in ``unit`` to the model unit of feature ``name``."""
    feature = NUMERIC_BY_NAME[name]
    if unit == feature.unit:
        return value
    for choice in feature.alt_units:
        if choice.unit == unit:
            return value * choice.factor
    known = ", ".join([feature.unit, *(c.unit for c in feature.alt_units)])
    raise ValueError(f"unknown unit {unit!r} for {name}; use one of: {known}")

# Simulator ground truth (``ground_truth.csv`` beside a simulated cohort.csv; read by the benchmark's
# reference rows). The true probability of PFS <= 12 months, and the true per-patient image quantities
# that the true risk's PET and CT parts are functions of (docs/simulator.md, "True risk").
TRUTH_FILE = "ground_truth.csv"
TRUTH_PROBABILITY_COLUMN = "p_short_pfs_true"
ORACLE_IMAGE_COLUMNS = (
    "tumour_to_liver_ratio",  # volume-weighted viable-uptake ratio of SSTR-positive lesions; empty when none
    "necrotic_fraction",  # necrotic share of the SSTR-positive lesion volume (0..1)
    "sstr_negative_volume_ml",  # volume of SSTR-negative lesions (ml)
    "liver_tumour_fraction",  # lesion volume in the liver over liver volume (0..1)
    "tumour_volume_ml",  # total lesion volume (ml)
)
