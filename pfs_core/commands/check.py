"""``python -m pfs_core check``: load and validate a PET/CT pair, print a JSON summary."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pfs_core.commands import options
from pfs_core.errors import UsageError

# The CLI imports this module to parse arguments: heavy imports (torch, MONAI, pandas, the models) sit
# inside the functions that need them, so --help and usage errors stay fast.

HELP = "Load and validate a PET/CT pair and print a JSON summary."
DESCRIPTION = (
    "Load a PET and/or a CT (.nii/.nii.gz, DICOM series folder or .zip of one), convert the PET to SUVbw, "
    "run every input check and print a JSON summary (shape, spacing, orientation, value range, units, "
    "SUVmax, PET/CT world overlap). Any input problem prints one 'error:' line and exits with status 2. "
    "See docs/input.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_images(parser)
    parser.add_argument("--pet-units", choices=("auto", "suv", "bqml"), default="auto",
                        help="units of a NIfTI PET (auto: Bq/mL if the maximum exceeds 500; default: auto)")
    parser.add_argument("--uptake-min", type=float,
                        help="minutes from injection to scan start (NIfTI in Bq/mL; needs --radionuclide)")
    parser.add_argument("--radionuclide", help="Ga-68, F-18, Cu-64, ... (with --uptake-min)")


def _summary(volume: Any) -> dict[str, Any]:
    data = volume.data
    out = {
        "source": volume.source,
        "modality": volume.modality,
        "shape": list(volume.shape),
        "spacing_mm": [round(s, 4) for s in volume.spacing_mm],
        "orientation": volume.orientation,
        "value_range": [round(float(data.min()), 4), round(float(data.max()), 4)],
        "units": volume.units,
    }
    if volume.modality == "PET":
        out["suv_note"] = volume.suv_note
        out["suv_max"] = round(float(data.max()), 4)
    return out


def run(args: argparse.Namespace) -> int:
    from pfs_core.io import check_overlap, load_ct, load_pet, world_overlap

    if args.pet is None and args.ct is None:
        raise UsageError("give --pet, --ct or both")
    pet = ct = None
    if args.pet is not None:
        pet = load_pet(args.pet, weight_kg=args.weight_kg, dose_mbq=args.dose_mbq, pet_units=args.pet_units,
                       uptake_min=args.uptake_min, radionuclide=args.radionuclide)
    if args.ct is not None:
        ct = load_ct(args.ct)
    report: dict[str, Any] = {"pet": _summary(pet) if pet else None, "ct": _summary(ct) if ct else None}
    report["pet_suv_max"] = report["pet"]["suv_max"] if pet else None
    if pet is not None and ct is not None:
        check_overlap(pet, ct)
        overlap = world_overlap(pet, ct)
        report["overlap"] = {"fraction": round(overlap.fraction, 4),
                             "fraction_of_pet": round(overlap.fraction_of_pet, 4),
                             "fraction_of_ct": round(overlap.fraction_of_ct, 4)}
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0
