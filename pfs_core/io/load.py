"""``load_ct`` and ``load_pet``: any accepted input → validated :class:`Volume`.

Accepted: ``.nii`` / ``.nii.gz`` (nibabel), a DICOM series folder, a ``.zip`` of a
DICOM series. Every problem raises :class:`pfs_core.errors.InputError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pfs_core.errors import InputError, reading
from pfs_core.io.dicom import DicomSeries, read_dicom_series, unzipped
from pfs_core.io.nifti import read_nifti_data
from pfs_core.io.reduce import reduce_profile
from pfs_core.io.suv import dicom_suv_factors, user_suv_factor
from pfs_core.io.validate import (
    check_ct_values,
    check_finite,
    check_not_constant,
    check_not_ct,
    check_pet_values,
    ct_plausibility,
    pet_plausibility,
    value_range,
)
from pfs_core.io.volume import Volume

PetUnits = Literal["auto", "suv", "bqml"]
PET_UNITS: tuple[str, ...] = ("auto", "suv", "bqml")
BQML_AUTO_THRESHOLD = 500.0  # auto: a NIfTI PET whose maximum exceeds this is taken as Bq/mL
ACCEPTED = "a .nii/.nii.gz file, a DICOM series folder or a .zip of a DICOM series"


def _kind(path: Path) -> str:
    """"nifti", "dicom" or "zip"; InputError for anything else."""
    where = str(path)
    if not path.exists():
        raise InputError(f"{where}: file or folder not found; give {ACCEPTED}")
    if path.is_dir():
        return "dicom"
    if path.stat().st_size == 0:
        raise InputError(f"{where}: empty file (0 bytes); copy or export the image again")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(".dcm"):
        raise InputError(f"{where}: a single DICOM file; give the folder that holds the whole series (or a .zip)")
    raise InputError(f"{where}: unknown image format; give {ACCEPTED}")


def _read_series(path: Path, modality: str) -> DicomSeries:
    if _kind(path) == "zip":
        with unzipped(path) as folder:
            return read_dicom_series(folder, modality, where=str(path))
    return read_dicom_series(path, modality, where=str(path))


def load_ct(path: str | Path) -> Volume:
    """Load a CT (HU) as a :class:`Volume` with ``data`` float32 ``(I, J, K)`` in HU."""
    path = Path(path)
    with reading(path, what="this image", accepted=ACCEPTED):
        if _kind(path) == "nifti":
            read = read_nifti_data(path)
            data, affine, finite, known = read.data, read.affine, read.finite, read.value_range
        else:
            series = _read_series(path, "CT")
            data, affine, finite, known = series.data, series.affine, False, None
    known = known or value_range(data)  # (min, max): finite only if every voxel is
    if not finite:
        check_finite(data, str(path), known_range=known)
    check_not_constant(str(path), known, "CT")
    check_ct_values(data, str(path), minimum=known[0])
    warnings = ct_plausibility(data, path.name, known)
    return Volume(data=data, affine=affine, source=path.name, modality="CT", units="HU", warnings=warnings)


def load_pet(path: str | Path, *, weight_kg: float | None = None, dose_mbq: float | None = None,
             pet_units: PetUnits = "auto", uptake_min: float | None = None,
             radionuclide: str | None = None) -> Volume:
    """Load a PET as a :class:`Volume` in SUVbw (g/mL), ``data`` float32 ``(I, J, K)``.

    NIfTI: values are SUVbw unless ``pet_units="bqml"`` or (``"auto"``) their maximum
    exceeds 500; Bq/mL needs ``weight_kg`` (kg) and ``dose_mbq`` (MBq), the dose taken
    as decay-corrected to scan start unless ``uptake_min`` (min from injection to scan
    start) and ``radionuclide`` ("Ga-68", "F-18", ...) are given. DICOM: Units BQML are
    converted from the DICOM tags (weight/dose arguments override the tags), GML is
    taken as SUVbw, other units are refused.
    """
    path = Path(path)
    if pet_units not in PET_UNITS:
        raise InputError(f"pet_units={pet_units!r} is not one of {', '.join(PET_UNITS)}")
    with reading(path, what="this image", accepted=ACCEPTED):
        data, affine, note, checked = _read_pet(path, weight_kg=weight_kg, dose_mbq=dose_mbq, pet_units=pet_units,
                                                uptake_min=uptake_min, radionuclide=radionuclide)
    known = checked.value_range or value_range(data)
    check_not_constant(str(path), known, "PET")
    check_pet_values(data, str(path), minimum=known[0], not_ct_checked=checked.not_ct)
    return Volume(data=data, affine=affine, source=path.name, modality="PET", units="SUVbw", suv_note=note,
                  warnings=pet_plausibility(data, path.name, known))


@dataclass(frozen=True)
class _Checked:
    """What is already known of the SUV array :func:`_read_pet` returns: its (min, max) (None: not computed)
    and whether :func:`check_not_ct` already passed on it."""

    value_range: tuple[float, float] | None = None
    not_ct: bool = False


def _read_pet(path: Path, *, weight_kg: float | None, dose_mbq: float | None, pet_units: str,
              uptake_min: float | None, radionuclide: str | None) -> tuple[np.ndarray, np.ndarray, str, _Checked]:
    """``(data in SUVbw, affine, suv_note, what is already checked)``."""
    where = str(path)
    if _kind(path) == "nifti":
        read = read_nifti_data(path)
        data, affine = read.data, read.affine
        low, high = read.value_range or value_range(data)  # shared by the checks below
        check_finite(data, where, known_range=(low, high))
        not_ct = pet_units != "bqml"
        if not_ct:
            check_not_ct(data, where, minimum=low)  # before the unit guess: a CT's HU would look like Bq/mL
        factor, note = _nifti_suv(high, weight_kg=weight_kg, dose_mbq=dose_mbq, pet_units=pet_units,
                                  uptake_min=uptake_min, radionuclide=radionuclide, where=where)
        if factor != 1.0:
            return data * np.float32(factor), affine, note, _Checked()
        return data, affine, note, _Checked(value_range=(low, high), not_ct=not_ct)
    series = _read_series(path, "PT")
    data, affine = series.data, series.affine
    check_finite(data, where, known_range=value_range(data))
    factors, note = _dicom_suv(series, weight_kg=weight_kg, dose_mbq=dose_mbq, pet_units=pet_units, where=where)
    factors = reduce_profile(factors, series.reduced_by[2])  # one per working slice, as the slices were averaged
    return (data * factors[None, None, :]).astype(np.float32), affine, note, _Checked()


def _nifti_suv(maximum: float, *, weight_kg: float | None, dose_mbq: float | None, pet_units: str,
               uptake_min: float | None, radionuclide: str | None, where: str) -> tuple[float, str]:
    """SUV factor and note for a NIfTI PET whose largest value is ``maximum``."""
    bqml = pet_units == "bqml" or (pet_units == "auto" and maximum > BQML_AUTO_THRESHOLD)
    if not bqml:
        how = "as stored" if pet_units == "suv" else f"as stored (maximum {maximum:.3g} ≤ 500)"
        return 1.0, f"values used as SUVbw {how}"
    return user_suv_factor(weight_kg=weight_kg, dose_mbq=dose_mbq, uptake_min=uptake_min,
                           radionuclide=radionuclide, where=where)


def _dicom_suv(series: DicomSeries, *, weight_kg: float | None, dose_mbq: float | None, pet_units: str,
               where: str) -> tuple[np.ndarray, str]:
    units = str(series.headers[0].get("Units", "")).strip().upper()
    expected = {"suv": "GML", "bqml": "BQML"}.get(pet_units)
    if expected is not None and units != expected:
        raise InputError(f"{where}: DICOM Units is '{units}' but pet_units='{pet_units}' was given; "
                         "leave --pet-units auto for DICOM (the Units tag decides)")
    return dicom_suv_factors(series.headers, weight_kg=weight_kg, dose_mbq=dose_mbq, where=where)
