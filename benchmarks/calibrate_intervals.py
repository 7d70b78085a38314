"""Calibrate the 90 % interval of existing bundles against their training cohort's true risk (issue 25).

    python benchmarks/calibrate_intervals.py models/lab_rf models/classic models/lab_pet_ct \\
        models/lab_pet_ct_pretrained [--cache-dir cache]

For each bundle: reads the training cohort named in its manifest (``training_cohort.source``), the
simulator's ``ground_truth.csv`` beside it and, for bundles that read lesion measurements, the cohort's
cached measurements; computes the split-conformal calibration of :mod:`pfs_core.uncertainty` from the
bundle's ``training_oof.csv`` and stores it in the manifest (key ``uncertainty``) and model card
(:func:`pfs_core.models.bundle.record_uncertainty`, which renews the hashes and the bundle digest). Weights,
model version and OOF predictions are unchanged. New bundles get it from ``pfs_core train`` directly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from pfs_core.dataset import load_cohort_data
from pfs_core.errors import PfsError
from pfs_core.inference import measure_settings
from pfs_core.measure.features import cohort_features
from pfs_core.models.bundle import load_bundle, record_uncertainty
from pfs_core.training.references import read_ground_truth
from pfs_core.uncertainty import A_OUTSIDE, bundle_inputs, calibrate_oof, lesion_inputs


def calibrate_one(folder: Path, *, cache_dir: Path | None, a: float = A_OUTSIDE) -> str:
    """Calibrate the bundle at ``folder``; returns a status line."""
    bundle = load_bundle(folder)
    source = bundle.manifest.get("training_cohort", {}).get("source")
    if not source or not Path(source).is_file():
        return f"{folder}: training cohort {source!r} not found here; left as it is (fold spread)"
    truth = read_ground_truth(source)
    if truth is None:
        return f"{folder}: no ground_truth.csv beside {source}; left as it is (fold spread)"
    data = load_cohort_data(source, preprocess=bundle.preprocess, need_images=False, require_outcome=False)
    lesions = None
    if lesion_inputs(bundle):
        table = cohort_features(source, cache_dir=cache_dir, settings=measure_settings(bundle))
        lesions = table.loc[[str(p) for p in data.patient_ids]].to_numpy(float)
    inputs = bundle_inputs(bundle, data.labs.reset_index(drop=True), lesions)
    inputs.index = pd.Index([str(p) for p in data.patient_ids])
    entry = calibrate_oof(bundle.training_oof, truth, inputs,
                          against=f"the simulator's true probability of PFS <= 12 months (ground_truth.csv beside "
                                  f"{source})", a=a)
    if entry is None:
        return f"{folder}: too few training patients in {source}'s ground truth; left as it is"
    record_uncertainty(folder, entry)
    load_bundle(folder)  # the renewed digest and hashes check
    return (f"{folder}: q = {entry['q']:.3f} (logit) from {entry['n_calibration']} rows, in-sample coverage "
            f"{entry['in_sample_coverage']:.3f}, median half-width {entry['median_half_width_logit']:.3f}; "
            f"inputs {len(entry['inputs'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="bundle folders")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"), help="lesion measurement cache")
    parser.add_argument("--a-outside", type=float, default=A_OUTSIDE,
                        help="weight of the out-of-range overshoot in the difficulty scale (choose on development "
                             "cohorts only; default %(default)s)")
    args = parser.parse_args(argv)
    failed = 0
    for folder in args.folders:
        try:
            print(calibrate_one(folder, cache_dir=args.cache_dir, a=args.a_outside), flush=True)
        except PfsError as exc:
            print(f"error: {folder}: {exc}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
