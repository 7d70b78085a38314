"""``python -m pfs_core validate``: check every row of a cohort table and list the bad ones."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The CLI imports this module to parse arguments: heavy imports (torch, MONAI, pandas, the models) sit
# inside the functions that need them, so --help and usage errors stay fast.

HELP = "Check every row of a cohort table; list each bad row with its row number and reason."
DESCRIPTION = (
    "Check every row of a cohort table (columns of pfs_core.schema): patient_id present and unique; lab values "
    "numeric and inside the plausible range; pfs_months >= 0 and progressed 0/1; every PET/CT file found, "
    "readable and the pair overlapping (each image is loaded fully). Every problem is printed as "
    "'row N (patient ID) COLUMN: reason', where N is the spreadsheet row number (the header is row 1, the first "
    "patient row 2); reasons never quote lab values. "
    "Exit status: 0 = every row is usable; 1 = some rows have problems (the others are usable, and "
    "benchmark/train/score from the dashboard use only those); 2 = the file cannot be used at all "
    "(not found, unreadable, no rows, required columns missing), reported as one 'error:' line."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cohort", type=Path, required=True, help="cohort.csv to check")
    parser.add_argument("--image-root", type=Path,
                        help="folder that relative image paths are read from (default: the CSV's folder)")
    parser.add_argument("--no-images", action="store_true",
                        help="do not open the image files (for lab-only models); pet/ct columns become optional")
    parser.add_argument("--no-outcome", action="store_true",
                        help="pfs_months/progressed may be absent (a table of new patients to score)")
    parser.add_argument("--problems-csv", type=Path, help="also write the problems as CSV (row, patient_id, "
                                                          "column, reason)")
    parser.add_argument("--good-out", type=Path,
                        help="write the usable rows to FOLDER/cohort.csv (absolute image paths)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing non-empty --good-out folder that 'validate' wrote")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")


def _progress(done: int, total: int) -> None:
    sys.stderr.write(f"checking images {done}/{total}\n")


def run(args: argparse.Namespace) -> int:
    from pfs_core.io.cohort import validate_cohort, write_good_cohort
    from pfs_core.io.outputs import check_output_file, check_output_folder, prepare_output_folder, write_csv

    inputs = [args.cohort, args.image_root]
    if args.problems_csv is not None:
        check_output_file(args.problems_csv, option="--problems-csv", inputs=inputs)
    if args.good_out is not None:
        check_output_folder(args.good_out, command="validate", force=args.force, option="--good-out", inputs=inputs)
    report = validate_cohort(args.cohort, check_images=not args.no_images, require_outcome=not args.no_outcome,
                             image_root=args.image_root, progress=None if args.no_progress else _progress)
    print(report.summary())
    for problem in report.problems_frame().itertuples(index=False):
        print(f"row {problem.row} (patient {problem.patient_id or '<empty>'}) {problem.column}: {problem.reason}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    if args.problems_csv is not None:
        args.problems_csv.parent.mkdir(parents=True, exist_ok=True)
        write_csv(report.problems_frame(), args.problems_csv)
    if args.good_out is not None and report.n_good:
        folder = prepare_output_folder(args.good_out, command="validate", force=args.force, option="--good-out",
                                       inputs=inputs)
        print(f"usable rows written to {write_good_cohort(report, folder)}")
    return 0 if report.all_good else 1
