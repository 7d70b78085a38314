"""``python -m pfs_core predict``: short-PFS probability for one case with a model bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Predict short-PFS probability for one case with a model bundle."
DESCRIPTION = (
    "Predict the probability of progression-free survival <= 12 months for one patient from a PET, a CT "
    "(either may be left out if the model allows) and a JSON file of lab values in the units of "
    "pfs_core.schema, with a model bundle. Prints the prediction as JSON (probability, interval over the fold "
    "models, risk group, inputs used or missing, warnings). Research use; not a medical device."
)


def add_case_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of one case (bundle, images, labs, device), shared with the ``explain`` command."""
    parser.add_argument("--model", type=Path, required=True, help="model bundle folder, e.g. models/lab_rf")
    parser.add_argument("--pet", type=Path, help="PET: .nii/.nii.gz (SUVbw or Bq/mL), DICOM folder or .zip")
    parser.add_argument("--ct", type=Path, help="CT: .nii/.nii.gz, DICOM folder or .zip")
    parser.add_argument("--labs", type=Path, help="JSON object of lab values, e.g. {\"chromogranin_a\": 250}")
    parser.add_argument("--weight-kg", type=float, help="patient weight (kg), for a PET in Bq/mL")
    parser.add_argument("--dose-mbq", type=float, help="injected activity (MBq), for a PET in Bq/mL")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_case_arguments(parser)
    parser.add_argument("--json", type=Path, help="also write the prediction JSON to this file")


def read_labs(path: Path | None) -> dict:
    """The lab JSON object (empty without a file)."""
    from pfs_core.errors import InputError

    if path is None:
        return {}
    try:
        labs = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the lab JSON ({exc}); give an object like "
                         "{\"chromogranin_a\": 250, \"sex\": \"F\"}") from None
    if not isinstance(labs, dict):
        raise InputError(f"{path}: the lab JSON must be an object of field names and values")
    return labs


def run(args: argparse.Namespace) -> int:
    from pfs_core.inference import predict_case
    from pfs_core.models.bundle import load_bundle
    from pfs_core.preprocessing.model_grid import load_case

    bundle = load_bundle(args.model)
    labs = read_labs(args.labs)
    pet, ct = (None, None)
    if args.pet is not None or args.ct is not None:
        pet, ct = load_case(args.pet, args.ct, weight_kg=args.weight_kg, dose_mbq=args.dose_mbq)
    prediction = predict_case(bundle, pet=pet, ct=ct, labs=labs, device=args.device)
    text = json.dumps(prediction.to_dict(), indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)
    return 0
