"""Body-weight SUV (SUVbw, g/mL) from activity concentration (Bq/mL).

``SUVbw = C [Bq/mL] * weight [g] / dose [Bq]`` where the dose is decayed to the
time the image values refer to (DICOM ``DecayCorrection``): ``START`` → series
(scan) start, ``ADMIN`` → injection (no decay), ``NONE`` → each slice's
acquisition time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from pydicom.dataset import Dataset

from pfs_core.errors import InputError

HALF_LIFE_MIN: dict[str, float] = {
    "F-18": 109.77, "Ga-68": 67.71, "Cu-64": 762.0, "C-11": 20.36, "N-13": 9.97, "Zr-89": 4704.5, "Rb-82": 1.258,
}
WEIGHT_RANGE_KG = (1.0, 400.0)
DOSE_RANGE_MBQ = (1.0, 50000.0)
MAX_UPTAKE_MIN = 24 * 60.0


def nuclide_name(half_life_min: float) -> str:
    """Name of the radionuclide whose half-life (min) matches within 1 %, else ``"T1/2 <x> min"``."""
    for name, value in HALF_LIFE_MIN.items():
        if abs(value - half_life_min) <= 0.01 * value:
            return name
    return f"T1/2 {half_life_min:.4g} min"


def check_weight_dose(weight_kg: float, dose_mbq: float, where: str) -> None:
    """Refuse weights outside 1..400 kg and doses outside 1..50000 MBq (wrong unit or missing tag)."""
    if not WEIGHT_RANGE_KG[0] <= weight_kg <= WEIGHT_RANGE_KG[1]:
        raise InputError(f"{where}: patient weight {weight_kg:g} kg is implausible; give weight_kg "
                         "(--weight-kg) in kilograms")
    if not DOSE_RANGE_MBQ[0] <= dose_mbq <= DOSE_RANGE_MBQ[1]:
        raise InputError(f"{where}: injected dose {dose_mbq:g} MBq is implausible; give dose_mbq "
                         "(--dose-mbq) in MBq")


def user_suv_factor(*, weight_kg: float | None, dose_mbq: float | None, uptake_min: float | None,
                    radionuclide: str | None, where: str) -> tuple[float, str]:
    """Factor (mL/Bq·g) turning Bq/mL into SUVbw with weight/dose given by the user, plus a note.

    Without ``uptake_min`` the dose is taken as already decay-corrected to scan start.
    """
    missing = [name for name, value in (("weight_kg (--weight-kg)", weight_kg), ("dose_mbq (--dose-mbq)", dose_mbq))
               if value is None]
    if missing:
        raise InputError(f"{where}: PET values look like Bq/mL, not SUV; give {' and '.join(missing)} to convert "
                         "them (or pet_units='suv' / --pet-units suv if they already are SUVbw)")
    assert weight_kg is not None and dose_mbq is not None
    check_weight_dose(weight_kg, dose_mbq, where)
    note = f"converted from Bq/mL with weight {weight_kg:g} kg and dose {dose_mbq:g} MBq given by the user"
    decay = 1.0
    if uptake_min is None:
        note += "; dose taken as already decay-corrected to scan start"
    else:
        half_life = _user_half_life(radionuclide, uptake_min, where)
        decay = 2.0 ** (-uptake_min / half_life)
        note += f", dose at injection decay-corrected over {uptake_min:.1f} min ({radionuclide})"
    return weight_kg * 1000.0 / (dose_mbq * 1e6 * decay), note


def _user_half_life(radionuclide: str | None, uptake_min: float, where: str) -> float:
    if radionuclide not in HALF_LIFE_MIN:
        raise InputError(f"{where}: uptake_min needs the radionuclide for the decay correction; give radionuclide "
                         f"(--radionuclide) as one of {', '.join(HALF_LIFE_MIN)}")
    if not 0.0 <= uptake_min <= MAX_UPTAKE_MIN:
        raise InputError(f"{where}: uptake time {uptake_min:g} min is outside 0..{MAX_UPTAKE_MIN:g} min; "
                         "give the minutes from injection to scan start")
    return HALF_LIFE_MIN[radionuclide]


def parse_dicom_datetime(date: str, time: str) -> datetime:
    """DICOM DA ``YYYYMMDD`` + TM ``HHMMSS.ffffff`` (or ``HH:MM:SS``) → naive datetime."""
    date, time = str(date).strip(), str(time).strip().replace(":", "")
    seconds = float(time[4:] or 0.0)
    base = datetime(int(date[:4]), int(date[4:6]), int(date[6:8]), int(time[:2]), int(time[2:4] or 0))
    return base + timedelta(seconds=seconds)


def _parse_dt(value: str) -> datetime:
    """DICOM DT ``YYYYMMDDHHMMSS.ffffff&ZZXX`` (timezone suffix ignored) → naive datetime."""
    text = str(value).strip()
    for sign in "+-":
        if sign in text[8:]:
            text = text[: 8 + text[8:].index(sign)]
    return parse_dicom_datetime(text[:8], text[8:] or "000000")


def _tag_float(ds: Dataset, name: str) -> float | None:
    value = ds.get(name)
    try:
        number = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number and np.isfinite(number) and number > 0 else None


def _injection_time(ds: Dataset, rp: Dataset | None) -> tuple[datetime | None, bool]:
    """Injection datetime and whether its date was given (False: assumed on the series date)."""
    if rp is None:
        return None, False
    if rp.get("RadiopharmaceuticalStartDateTime"):
        return _parse_dt(rp.RadiopharmaceuticalStartDateTime), True
    if rp.get("RadiopharmaceuticalStartTime") and ds.get("SeriesDate"):
        return parse_dicom_datetime(ds.SeriesDate, rp.RadiopharmaceuticalStartTime), False
    return None, False


def _acquisition_time(ds: Dataset) -> datetime | None:
    date = ds.get("AcquisitionDate") or ds.get("SeriesDate")
    return parse_dicom_datetime(date, ds.AcquisitionTime) if date and ds.get("AcquisitionTime") else None


def _scan_start(headers: list[Dataset]) -> datetime | None:
    """Series start: the earlier of SeriesDate/SeriesTime and the first AcquisitionTime."""
    first = headers[0]
    times = [t for t in (_acquisition_time(ds) for ds in headers) if t is not None]
    if first.get("SeriesDate") and first.get("SeriesTime"):
        times.append(parse_dicom_datetime(first.SeriesDate, first.SeriesTime))
    return min(times) if times else None


def _delays_min(headers: list[Dataset], injection: datetime, date_given: bool, where: str) -> np.ndarray:
    """Minutes from injection to the decay reference of each slice (START: series start; NONE: acquisition)."""
    start = _scan_start(headers)
    if str(headers[0].get("DecayCorrection", "")).upper() == "NONE":
        refs = [_acquisition_time(ds) or start for ds in headers]
    else:
        refs = [start] * len(headers)
    if any(r is None for r in refs):
        raise InputError(f"{where}: SeriesDate/SeriesTime (or AcquisitionTime) missing, so the dose cannot be "
                         "decay-corrected; export the series with its times or convert it to SUV on the scanner")
    delays = np.array([(r - injection).total_seconds() / 60.0 for r in refs])  # type: ignore[operator]
    if not date_given and delays.min() < 0:
        delays += 24 * 60.0  # injected before midnight, scanned after
    if delays.min() < 0 or delays.max() > MAX_UPTAKE_MIN:
        raise InputError(f"{where}: injection-to-scan time {delays.min():.0f} min is outside 0..{MAX_UPTAKE_MIN:g} "
                         "min; RadiopharmaceuticalStartTime or SeriesTime is wrong: fix the tags or convert to SUV")
    return delays


def dicom_suv_factors(headers: list[Dataset], *, weight_kg: float | None, dose_mbq: float | None,
                      where: str) -> tuple[np.ndarray, str]:
    """Per-slice factors ``(K,)`` turning stored PET values into SUVbw, and a note on how.

    Units GML: factor 1. Units BQML: weight (``weight_kg`` or PatientWeight) and dose
    (``dose_mbq`` or RadionuclideTotalDose, both taken at injection) decayed per
    DecayCorrection. Other units are refused.
    """
    first = headers[0]
    units = str(first.get("Units", "")).strip().upper()
    if units == "GML":
        return np.ones(len(headers)), "values used as SUVbw as stored (DICOM Units GML)"
    if units != "BQML":
        raise InputError(f"{where}: PET Units '{units or 'missing'}' cannot be converted to SUV (only BQML and GML "
                         "are supported); export the series in Bq/mL or SUVbw, or give a NIfTI in SUVbw")
    sequence = first.get("RadiopharmaceuticalInformationSequence")
    rp = sequence[0] if sequence else None
    weight = weight_kg if weight_kg is not None else _tag_float(first, "PatientWeight")
    tag_dose = _tag_float(rp, "RadionuclideTotalDose") if rp is not None else None
    dose = dose_mbq if dose_mbq is not None else (tag_dose / 1e6 if tag_dose else None)
    if weight is None or dose is None:
        names = [n for n, v in (("PatientWeight → --weight-kg", weight), ("RadionuclideTotalDose → --dose-mbq", dose))
                 if v is None]
        raise InputError(f"{where}: Bq/mL PET without {', '.join(names)}; give the missing value(s)")
    check_weight_dose(weight, dose, where)
    return _bqml_factors(headers, rp, weight, dose, user=(weight_kg is not None, dose_mbq is not None), where=where)


def _bqml_factors(headers: list[Dataset], rp: Dataset | None, weight: float, dose: float, *,
                  user: tuple[bool, bool], where: str) -> tuple[np.ndarray, str]:
    correction = str(headers[0].get("DecayCorrection", "")).strip().upper()
    given = " (given by the user)"
    note = f"SUVbw from DICOM tags: weight {weight:g} kg{given if user[0] else ''}, " \
           f"dose {dose:.1f} MBq{given if user[1] else ''}"
    if correction == "ADMIN":
        return np.full(len(headers), weight * 1e3 / (dose * 1e6)), note + ", images decay-corrected to injection"
    if correction not in ("START", "NONE"):
        raise InputError(f"{where}: DecayCorrection '{correction or 'missing'}' is not START, ADMIN or NONE; "
                         "convert the PET to SUV on the scanner workstation")
    injection, date_given = _injection_time(headers[0], rp)
    half_life_s = _tag_float(rp, "RadionuclideHalfLife") if rp is not None else None
    if injection is None or half_life_s is None:
        if not user[1]:
            raise InputError(f"{where}: RadiopharmaceuticalStartTime or RadionuclideHalfLife missing; give the "
                             "dose at scan start with --dose-mbq or convert to SUV on the scanner")
        return (np.full(len(headers), weight * 1e3 / (dose * 1e6)),
                note + "; dose taken as already decay-corrected to scan start")
    delays = _delays_min(headers, injection, date_given, where)
    half_life = half_life_s / 60.0
    factors = weight * 1e3 / (dose * 1e6 * 2.0 ** (-delays / half_life))
    span = f"{delays.mean():.1f} min" if correction == "START" else f"{delays.min():.1f}..{delays.max():.1f} min"
    return factors, note + f", decay-corrected over {span} ({nuclide_name(half_life)})"
