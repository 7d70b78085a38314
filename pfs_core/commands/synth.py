"""``python -m pfs_core synth``: simulate a cohort with known ground truth."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pfs_core.commands import options as shared_options

# The CLI imports this module to parse arguments: heavy imports (torch, MONAI, pandas, the models) sit
# inside the functions that need them, so --help and usage errors stay fast.

HELP = "Simulate an SSTR-PET/CT + labs + PFS cohort with known ground truth."
DESCRIPTION = (
    "Simulate a cohort of neuroendocrine-tumour patients before 177Lu-DOTATOC PRRT: SSTR PET (SUVbw) and CT (HU) "
    "NIfTI images, labs and progression-free survival from a Weibull model whose true risk is known. "
    "Writes cohort.csv, ground_truth.csv, lesions.csv, summary.json and images/ (byte-identical for the same "
    "seed, whatever --jobs and --backend). The images are rendered by tasks of a few patients each, in this "
    "process, in local worker processes (--jobs N) or on Ray (--backend ray; on a cluster, --out must be on a "
    "file system every node sees). Simulated data, not patients; see docs/simulator.md."
)

JOBS_HELP = ("image tasks (a few patients each) run at the same time: local worker processes, or the CPUs of a "
             "local Ray instance (default: min(2, CPUs); 1: all in this process)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, required=True, help="number of patients (>= 1)")
    parser.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    parser.add_argument("--out", required=True, help="output folder (must be new or empty unless --force)")
    parser.add_argument(
        "--signal",
        default="labs=1,pet=1,ct=1",
        help="weights >= 0 of the modalities in the true risk, e.g. labs=1,pet=0,ct=1 (missing names are 1)",
    )
    parser.add_argument(
        "--strength", type=float, default=None,
        help="scale of the risk signal (default calibrated for an expected Bayes AUROC of about 0.78)",
    )
    parser.add_argument("--sstr-negative-rate", type=float, default=None,
                        help="probability of SSTR-negative (mismatched) lesions at Ki-67 5 %% (default 0.07; "
                             "rises with Ki-67)")
    parser.add_argument("--labs-independent", action="store_true",
                        help="draw labs and clinical values from an independent patient, so that they carry no "
                             "information about the imaging burden (for truth checks)")
    parser.add_argument("--contrast", choices=("portal_venous", "none"), default="portal_venous",
                        help="CT protocol: portal-venous contrast-enhanced (default) or unenhanced")
    parser.add_argument("--anatomy", choices=("standard", "varied"), default="standard",
                        help="varied: kidneys and spleen moved and scaled over a wider range than the standard "
                             "population (training data for the organ network, not a patient cohort)")
    shared_options.add_execution(parser, jobs_default=None, jobs_help=JOBS_HELP)
    parser.add_argument("--workers", type=int, default=None,
                        help="the same as --jobs (its earlier name; give one of them)")
    parser.add_argument("--no-images", action="store_true", help="write only the tables (fast)")
    parser.add_argument("--force", action="store_true", help="replace an existing non-empty output folder")


def run(args: argparse.Namespace) -> int:
    from pfs_core.synth import DEFAULT_STRENGTH, SimOptions, parse_signal, simulate_cohort
    from pfs_core.synth.options import DEFAULT_SSTR_NEGATIVE_RATE

    signal = parse_signal(args.signal)
    if signal.is_null:
        sys.stderr.write("warning: --signal has all weights 0: outcomes carry no signal (Bayes AUROC about 0.5)\n")
    strength = DEFAULT_STRENGTH if args.strength is None else args.strength
    rate = DEFAULT_SSTR_NEGATIVE_RATE if args.sstr_negative_rate is None else args.sstr_negative_rate
    options = SimOptions(sstr_negative_rate=rate, labs_independent=args.labs_independent, contrast=args.contrast,
                         anatomy=args.anatomy)
    summary = simulate_cohort(
        args.n, args.seed, out_dir=args.out, signal=signal, strength=strength, images=not args.no_images,
        force=args.force, options=options, execution=_execution(args),
    )
    auroc = summary["bayes_auroc"]
    observed = summary["observed_prevalence"]
    print(f"wrote {summary['n']} simulated patients to {args.out} (images: {'yes' if summary['images'] else 'no'})")
    print(
        f"Bayes AUROC {'n/a' if auroc is None else f'{auroc:.3f}'} | prevalence of PFS <= 12 months: observed "
        f"{'n/a' if observed is None else f'{observed:.3f}'} (expected {summary['expected_prevalence']:.3f}, "
        f"target {summary['target_prevalence']:.2f}) | censored {summary['censored_fraction']:.3f} "
        f"| wall time {summary['wall_time_s']:.1f} s"
    )
    return 0


def _execution(args: argparse.Namespace) -> Any:
    """The :class:`~pfs_core.execution.Execution` of --jobs (or its alias --workers), --backend and --address
    (UsageError before any work: --workers < 1, --workers and --jobs that differ, --backend ray without ray)."""
    from pfs_core.errors import UsageError
    from pfs_core.synth import default_workers

    jobs, workers = args.jobs, args.workers
    if workers is not None:
        if workers < 1:
            raise UsageError(f"--workers must be a whole number >= 1 (got {workers}); e.g. --workers 2")
        if jobs is not None and jobs != workers:
            raise UsageError(f"--workers is another name for --jobs: give one of them (got --workers {workers} "
                             f"and --jobs {jobs})")
        jobs = workers
    return shared_options.execution(argparse.Namespace(**{**vars(args), "jobs": default_workers() if jobs is None
                                                          else jobs}))
