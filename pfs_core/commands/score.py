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
    from pfs_core.io.outputs import check_output_file, write_csv
    from pfs_core.models.bundle import load_bundle

    check_output_file(args.out, option="--out", inputs=[args.cohort, args.model, *cohort_files(args.cohort)])
    cache_dir = options.cache_dir(args)
    device = options.device(args)
    bundle = load_bundle(args.model)
    result = score_cohort(bundle, args.cohort, device=str(device), cache_dir=cache_dir)
    scores, report = result.scores, result.report
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(scores[list(COLUMNS)], args.out, float_format="%.6f")
    for p in report.problems_frame().itertuples(index=False):  # same lines as 'validate'; no lab values
        sys.stderr.write(f"skipped row {p.row} (patient {p.patient_id or '<empty>'}) {p.column}: {p.reason}\n")
    skipped = f"; {report.n_bad} row(s) with problems skipped (listed on stderr)" if report.n_bad else ""
    print(f"{len(scores)} patients scored with {bundle.name} ({bundle.version}) → {args.out}{skipped}")
    return 0


#: A cohort table larger than this is not searched for image paths here (its reader refuses it later).
_MAX_SCAN_BYTES = 64 * 1024 * 1024


def cohort_files(cohort: Path) -> list[Path]:
    """The image and organ files a cohort table names (relative to its folder), so that ``--out`` is none of
    them; empty when the table cannot be read (the cohort reader then says why)."""
    import csv

    try:
        if not cohort.is_file() or cohort.stat().st_size > _MAX_SCAN_BYTES:
            return []
        with open(cohort, newline="", encoding="utf-8-sig", errors="replace") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error, ValueError):
        return []
    found = []
    for row in rows:
        for column in ("pet", "ct", "organs"):
            value = (row.get(column) or "").strip()
            if value:
                found.append(cohort.parent / value)
    return found
