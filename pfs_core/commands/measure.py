"""``python -m pfs_core measure``: organs and lesions of one PET/CT → lesion table, features, label maps, DICOM SEG."""

from __future__ import annotations

import argparse

from pfs_core.commands import options

HELP = "Delineate organs and lesions of one PET/CT; lesion table, patient features, label maps, DICOM SEG."
DESCRIPTION = (
    "Delineate the organs on the CT (or read them with --organs) and the SSTR-positive and SSTR-negative "
    "lesions on the PET/CT, then write OUT/lesions.csv (one row per lesion), OUT/measurements.json (per-patient "
    "features, liver reference, organ source), OUT/lesions.nii.gz and OUT/organs.nii.gz (label maps on the "
    "CT grid) and, when the CT is a DICOM series, OUT/lesions_organs_seg.dcm (DICOM SEG). Rules: docs/measure.md. "
    "Research use; not a medical device."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_images(parser)
    options.add_organs(parser)
    options.add_out_folder(parser)
    options.add_device(parser)


def run(args: argparse.Namespace) -> int:
    from pfs_core.errors import UsageError
    from pfs_core.io import load_ct, load_pet
    from pfs_core.measure import find_organs, measure_case
    from pfs_core.measure.output import DISCLAIMER, write_measurement

    if args.pet is None or args.ct is None:
        raise UsageError("measure needs both --pet and --ct (the PET for uptake, the CT for organs and the liver)")
    options.check_organ_options(args)
    inputs = options.case_inputs(args)
    options.check_out(args, inputs)
    device = str(options.device(args))
    pet = load_pet(args.pet, weight_kg=args.weight_kg, dose_mbq=args.dose_mbq)
    ct = load_ct(args.ct)
    organs = find_organs(ct, organs=args.organs, label_names=args.organ_labels, device=device)
    m = measure_case(pet, ct, organs=organs)
    ct_dicom = args.ct if (args.ct.is_dir() or args.ct.suffix.lower() == ".zip") else None
    write_measurement(m, options.prepare_out(args, inputs), ct_dicom=ct_dicom)
    f = m.features
    print(f"{len(m.lesions)} lesions ({int((m.lesions['sstr_status'] == 'SSTR-positive').sum())} SSTR-positive, "
          f"{int(f['sstr_negative_count'])} SSTR-negative); SSTR-positive volume {f['sstr_positive_volume_ml']:.1f} mL, "
          f"liver tumour fraction {100 * f['liver_tumour_fraction']:.1f} %; organs from {organs.source}; "
          f"written to {args.out}")
    if args.organs is None:
        print("note: organs from the organ network, trained on simulated CTs only; on real CT it is not yet "
              "reliable (docs/organ_seg.md): check organs.nii.gz, or give masks with --organs (e.g. TotalSegmentator)")
    print(DISCLAIMER)
    return 0
