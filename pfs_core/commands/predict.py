"""``python -m pfs_core predict``: short-PFS probability for one case with a model bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pfs_core.commands import options

# The CLI imports this module to parse arguments: heavy imports (torch, MONAI, pandas, the models) sit
# inside the functions that need them, so --help and usage errors stay fast.

HELP = "Predict short-PFS probability for one case with a model bundle."
DESCRIPTION = (
    "Predict the probability of progression-free survival <= 12 months for one patient from a PET, a CT "
    "(either may be left out if the model allows) and a JSON file of lab values in the units of "
    "pfs_core.schema, with a model bundle. Prints the prediction as JSON (probability, its calibrated interval "
    "with a plain-language sentence (docs/uncertainty.md), risk group, inputs used or missing, warnings) and the patient's PFS outlook (pfs_outlook: the "
    "probability of progression or death by 6, 12 and 24 months from a survival model fitted beside the "
    "classifier on its training predictions; docs/outlook.md). Research use; not a medical device."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_case(parser)
    parser.add_argument("--json", type=Path, help="also write the prediction JSON to this file")


def run(args: argparse.Namespace) -> int:
    from pfs_core.inference import predict_case
    from pfs_core.io.outputs import atomic_write_text, check_output_file
    from pfs_core.models.bundle import load_bundle
    from pfs_core.outlook import patient_outlook
    from pfs_core.preprocessing.model_grid import load_case

    if args.json is not None:
        check_output_file(args.json, option="--json", inputs=options.case_inputs(args))
    device = options.device(args)
    bundle = load_bundle(args.model)
    labs = options.read_labs(args.labs)
    pet, ct = (None, None)
    if args.pet is not None or args.ct is not None:
        pet, ct = load_case(args.pet, args.ct, weight_kg=args.weight_kg, dose_mbq=args.dose_mbq)
    prediction = predict_case(bundle, pet=pet, ct=ct, labs=labs, device=str(device), organs=options.case_organs(args, ct))
    doc = prediction.to_dict()
    doc["pfs_outlook"] = patient_outlook(bundle, prediction.probability).to_dict()
    text = json.dumps(doc, indent=2)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, text + "\n")
    print(text)
    return 0
