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
    "the others are scored. With --outcomes-report FILE.json and pfs_months/progressed in the table, also an "
    "external validation against the outcomes: AUROC, Harrell's C-index, calibration intercept and slope, Brier "
    "score and net benefit, each with a 95 % patient-bootstrap interval (the Batch scoring page shows the same)."
)

COLUMNS = ("patient_id", "probability", "interval_low", "interval_high", "risk_group", "warnings")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_cohort(parser)
    options.add_bundle(parser)
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--outcomes-report", type=Path, default=None, metavar="FILE.json",
                        help="also validate the scores against pfs_months/progressed of the table and write the "
                             "metrics with 95 %% bootstrap intervals as JSON (and FILE_metrics.csv beside it)")
    parser.add_argument("--n-boot", type=int, default=1000,
                        help="bootstrap resamples of --outcomes-report (default 1000; seed 0)")
    options.add_cache(parser)
    options.add_device(parser)
    options.add_execution(parser)


def run(args: argparse.Namespace) -> int:
    from pfs_core.inference import score_cohort
    from pfs_core.io.outputs import check_output_file, write_csv
    from pfs_core.models.bundle import load_bundle

    inputs = [args.cohort, args.model, *cohort_files(args.cohort)]
    check_output_file(args.out, option="--out", inputs=inputs)
    if args.outcomes_report is not None:
        check_output_file(args.outcomes_report, option="--outcomes-report", inputs=[*inputs, args.out])
        if args.n_boot < 0:
            from pfs_core.errors import UsageError

            raise UsageError(f"--n-boot {args.n_boot}: give 0 (no intervals) or more resamples, e.g. 1000")
    cache_dir = options.cache_dir(args)
    device = options.device(args)
    execution = options.execution(args)
    bundle = load_bundle(args.model)
    result = score_cohort(bundle, args.cohort, device=str(device), cache_dir=cache_dir, execution=execution)
    scores, report = result.scores, result.report
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(scores[list(COLUMNS)], args.out, float_format="%.6f")
    for p in report.problems_frame().itertuples(index=False):  # same lines as 'validate'; no lab values
        sys.stderr.write(f"skipped row {p.row} (patient {p.patient_id or '<empty>'}) {p.column}: {p.reason}\n")
    skipped = f"; {report.n_bad} row(s) with problems skipped (listed on stderr)" if report.n_bad else ""
    print(f"{len(scores)} patients scored with {bundle.name} ({bundle.version}) → {args.out}{skipped}")
    if args.outcomes_report is not None:
        write_outcomes_report(scores, report.good, args.outcomes_report, model=bundle.name, n_boot=args.n_boot)
    return 0


def write_outcomes_report(scores: object, good: object, path: Path, *, model: str, n_boot: int) -> None:
    """External validation of ``scores`` against the outcomes of ``good`` → ``path`` (JSON) and
    ``metrics_csv_path(path)`` (the metrics table); prints the metrics."""
    from pfs_core.io.outputs import atomic_write_text, write_csv
    from pfs_core.results.validation import attach_outcomes, external_validation

    table = attach_outcomes(scores, good)  # type: ignore[arg-type]
    result = external_validation(table["probability"].to_numpy(float), table["pfs_months"].to_numpy(float),
                                 table["progressed"].to_numpy(float), model=model, n_boot=n_boot)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, result.to_json() + "\n")
    write_csv(result.metrics, metrics_csv_path(path), float_format="%.4f")
    counts = result.counts
    print(f"external validation on {counts['n_with_outcome']} patients with an outcome "
          f"({counts['n_labelled']} labelled: {counts['n_short_pfs']} short, {counts['n_long_pfs']} long PFS; "
          f"{n_boot} bootstrap resamples, seed {result.seed}) → {path}")
    for key in ("auroc", "c_index", "calibration_intercept", "calibration_slope", "brier"):
        print(f"  {result.summary(key, digits=3)}")
    for note in result.notes:
        print(f"  note: {note}")


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


def metrics_csv_path(report: Path) -> Path:
    """The metrics CSV beside an ``--outcomes-report`` JSON: ``NAME_metrics.csv``."""
    return report.with_name(f"{report.stem}_metrics.csv")
