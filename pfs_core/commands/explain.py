"""``python -m pfs_core explain``: predict one case and explain it (SHAP, modality Shapley values, Grad-CAM)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pfs_core.commands import options

# The CLI imports this module to parse arguments: heavy imports (torch, MONAI, pandas, the models) sit
# inside the functions that need them, so --help and usage errors stay fast.

HELP = "Explain one prediction: lab SHAP, lesion contributions, modality contributions, Grad-CAM."
DESCRIPTION = (
    "Predict the probability of PFS <= 12 months for one patient and explain it: SHAP values of every lab "
    "and clinical input, SHAP values of the lesion measurements handed on to the lesions that produced them, "
    "and exact Shapley contributions of the modalities (labs, PET, CT). Writes OUT/explanation.json and, for "
    "models that read lesion measurements, OUT/lesion_contributions.csv (the lesion table with each lesion's "
    "contribution) and OUT/lesion_contributions.nii.gz (each lesion's voxels hold its contribution, on the CT "
    "grid); Grad-CAM maps OUT/gradcam_<pet|ct>.nii.gz only where a convolutional part of the model is active; "
    "OUT/readout_<pet|ct>.nii.gz for models that read grid read-outs; and the tumour-board report OUT/report.html "
    "(self-contained) and OUT/report.pdf: the probability, what was missing, key PET/CT images with the lesion "
    "outlines, the lesion table, the explanation charts and --note. Research use; not a medical device."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_case(parser)
    options.add_out_folder(parser)
    parser.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM and read-out maps")
    parser.add_argument("--case-id", help="the case's identifier in the report (default: the PET, CT or lab file's "
                                          "name without its extension)")
    parser.add_argument("--note", default="", help="the clinician's note, printed in the report as plain text")


def run(args: argparse.Namespace) -> int:
    from functools import partial

    import nibabel as nib

    from pfs_core.errors import BundleError
    from pfs_core.explain import explain_case
    from pfs_core.explain.lesions import contribution_map
    from pfs_core.io.outputs import atomic_write, atomic_write_text, write_csv
    from pfs_core.models.bundle import load_bundle
    from pfs_core.outlook import patient_outlook
    from pfs_core.preprocessing.model_grid import load_case
    from pfs_core.results.report import case_report

    inputs = options.case_inputs(args)
    options.check_out(args, inputs)
    device = str(options.device(args))
    bundle = load_bundle(args.model)
    labs = options.read_labs(args.labs)
    pet, ct = (None, None)
    if args.pet is not None or args.ct is not None:
        pet, ct = load_case(args.pet, args.ct, weight_kg=args.weight_kg, dose_mbq=args.dose_mbq)
    explanation = explain_case(bundle, pet=pet, ct=ct, labs=labs, device=device, gradcam=not args.no_gradcam,
                               organs=options.case_organs(args, ct))
    out = options.prepare_out(args, inputs)
    images = {f"gradcam_{m}.nii.gz": image for m, image in explanation.gradcam.items()}
    images |= {f"readout_{m}.nii.gz": image for m, image in explanation.readout_maps.items()}
    if explanation.lesions is not None and explanation.measurement is not None:
        write_csv(explanation.lesions.lesions, out / "lesion_contributions.csv")
        images["lesion_contributions.nii.gz"] = contribution_map(explanation.measurement, explanation.lesions)
    for name, image in images.items():
        atomic_write(out / name, partial(nib.save, image))
    try:
        outlook = patient_outlook(bundle, explanation.prediction.probability)
    except BundleError as exc:  # a bundle whose training predictions hold too few events for a survival model
        outlook = None
        print(f"note: no PFS outlook: {exc}", file=sys.stderr)
    summary = explanation.to_dict() | ({} if outlook is None else {"pfs_outlook": outlook.to_dict()})
    atomic_write_text(out / "explanation.json", json.dumps(summary, indent=2) + "\n")
    report = case_report(explanation, labs=labs, inputs=_report_inputs(args, pet), case_id=_case_id(args), pet=pet,
                         ct=ct, note=args.note, outlook=None if outlook is None else outlook.at)
    for name, data in (("report.html", report.html), ("report.pdf", report.pdf)):
        atomic_write(out / name, partial(Path.write_bytes, data=data))
    p = explanation.prediction
    print(f"P(PFS <= 12 months) = {p.probability:.3f} [{p.interval[0]:.3f}-{p.interval[1]:.3f}], "
          f"risk group {p.risk_group}; written to {args.out}")
    print(p.disclaimer)
    return 0


def _case_id(args: argparse.Namespace) -> str:
    """``--case-id``, else the first input file's name without its extension(s)."""
    if args.case_id:
        return str(args.case_id)
    for path in (args.pet, args.ct, args.labs):
        if path is not None:
            return path.name.split(".")[0] or path.name
    return "case"


def _report_inputs(args: argparse.Namespace, pet: object) -> dict[str, str]:
    """The inputs as the report lists them: file names (not full paths) and the PET's SUV note."""
    inputs = {}
    for label, path in (("PET", args.pet), ("CT", args.ct), ("organ masks", args.organs), ("labs", args.labs)):
        if path is not None:
            inputs[label] = path.name
    note = getattr(pet, "suv_note", "")
    if note:
        inputs["PET SUV"] = str(note)
    return inputs
