"""``python -m pfs_core explain``: predict one case and explain it (SHAP, modality Shapley values, Grad-CAM)."""

from __future__ import annotations

import argparse
import json

from pfs_core.commands import options

# The CLI imports this module to parse arguments: heavy imports (torch, MONAI, pandas, the models) sit
# inside the functions that need them, so --help and usage errors stay fast.

HELP = "Explain one prediction: SHAP, modality contributions, Grad-CAM."
DESCRIPTION = (
    "Predict the probability of PFS <= 12 months for one patient and explain it: SHAP values of every lab "
    "and clinical input, exact Shapley contributions of the modalities (labs, PET, CT) and Grad-CAM maps of "
    "the PET and CT branches written on the patient's original CT grid, with maps of the voxels the liver-"
    "referenced read-outs counted. Writes OUT/explanation.json, OUT/gradcam_pet.nii.gz, OUT/gradcam_ct.nii.gz, "
    "OUT/readout_pet.nii.gz and OUT/readout_ct.nii.gz. Research use; not a medical device."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_case(parser)
    options.add_out_folder(parser)
    parser.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM and read-out maps")


def run(args: argparse.Namespace) -> int:
    import nibabel as nib

    from pfs_core.explain import explain_case
    from pfs_core.models.bundle import load_bundle
    from pfs_core.preprocessing.model_grid import load_case

    options.prepare_out(args.out)
    bundle = load_bundle(args.model)
    labs = options.read_labs(args.labs)
    pet, ct = (None, None)
    if args.pet is not None or args.ct is not None:
        pet, ct = load_case(args.pet, args.ct, weight_kg=args.weight_kg, dose_mbq=args.dose_mbq)
    explanation = explain_case(bundle, pet=pet, ct=ct, labs=labs, device=args.device, gradcam=not args.no_gradcam)
    for modality, image in explanation.gradcam.items():
        nib.save(image, args.out / f"gradcam_{modality}.nii.gz")
    for modality, image in explanation.readout_maps.items():
        nib.save(image, args.out / f"readout_{modality}.nii.gz")
    summary = explanation.to_dict()
    (args.out / "explanation.json").write_text(json.dumps(summary, indent=2) + "\n")
    p = explanation.prediction
    print(f"P(PFS <= 12 months) = {p.probability:.3f} [{p.interval[0]:.3f}-{p.interval[1]:.3f}], "
          f"risk group {p.risk_group}; written to {args.out}")
    print(p.disclaimer)
    return 0
