"""``python -m pfs_core score``: score every case of a cohort table with a model bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Score every case of a cohort with a model bundle (CSV out)."
DESCRIPTION = (
    "Score every row of a cohort table (columns of pfs_core.schema; outcome columns optional) with a model "
    "bundle and write patient_id, probability, interval_low, interval_high, risk_group, warnings as CSV."
)

COLUMNS = ("patient_id", "probability", "interval_low", "interval_high", "risk_group", "warnings")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cohort", type=Path, required=True, help="cohort.csv (image paths relative to its folder)")
    parser.add_argument("--model", type=Path, required=True, help="model bundle folder")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"), help="preprocessing cache (default: ./cache)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")


def run(args: argparse.Namespace) -> int:
    from pfs_core.bundle import load_bundle
    from pfs_core.predict import predict_cohort

    bundle = load_bundle(args.model)
    scores = predict_cohort(bundle, args.cohort, device=args.device,
                            cache_dir=None if args.no_cache else args.cache_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scores[list(COLUMNS)].to_csv(args.out, index=False, float_format="%.6f")
    print(f"{len(scores)} patients scored with {bundle.name} ({bundle.version}) → {args.out}")
    return 0
