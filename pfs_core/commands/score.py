"""``python -m pfs_core score``: score every case of a cohort table with a model bundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pfs_core.commands import options

# The CLI imports this module to parse arguments: heavy imports (torch, MONAI, pandas, the models) sit
# inside the functions that need them, so --help and usage errors stay fast.

HELP = "Score every case of a cohort with a model bundle (CSV out)."
DESCRIPTION = (
    "Score every row of a cohort table (columns of pfs_core.schema; outcome columns optional) with a model "
    "bundle and write patient_id, probability, interval_low, interval_high, risk_group, warnings as CSV. "
    "Rows with problems (see 'pfs_core validate') are skipped and listed on stderr with their row number; "
    "the others are scored."
)

COLUMNS = ("patient_id", "probability", "interval_low", "interval_high", "risk_group", "warnings")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_cohort(parser)
    options.add_bundle(parser)
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    options.add_cache(parser)
    options.add_device(parser)


def run(args: argparse.Namespace) -> int:
    from pfs_core.inference import score_cohort
    from pfs_core.models.bundle import load_bundle

    bundle = load_bundle(args.model)
    result = score_cohort(bundle, args.cohort, device=args.device,
                          cache_dir=options.cache_dir(args))
    scores, report = result.scores, result.report
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scores[list(COLUMNS)].to_csv(args.out, index=False, float_format="%.6f")
    for p in report.problems_frame().itertuples(index=False):  # same lines as 'validate'; no lab values
        sys.stderr.write(f"skipped row {p.row} (patient {p.patient_id or '<empty>'}) {p.column}: {p.reason}\n")
    skipped = f"; {report.n_bad} row(s) with problems skipped (listed on stderr)" if report.n_bad else ""
    print(f"{len(scores)} patients scored with {bundle.name} ({bundle.version}) → {args.out}{skipped}")
    return 0
