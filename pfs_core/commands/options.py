"""Options and helpers shared by several commands: one definition of ``--cohort``, ``--model``, ``--device``...

Imported during argument parsing, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from pfs_core.errors import InputError, UsageError

DEVICE_HELP = "torch device, e.g. cpu or cuda (default: cuda if available, else cpu)"


def add_cohort(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cohort", type=Path, required=True, help="cohort.csv (image paths relative to its folder)")


def add_bundle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="model bundle folder, e.g. models/lab_rf")


def add_out_folder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; existing files replaced)")


def add_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"),
                        help="preprocessing cache (default: ./cache)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help=DEVICE_HELP)


def add_images(parser: argparse.ArgumentParser) -> None:
    """``--pet``, ``--ct`` and what a PET in Bq/mL needs for SUV."""
    parser.add_argument("--pet", type=Path, help="PET: .nii/.nii.gz (SUVbw or Bq/mL), DICOM folder or .zip")
    parser.add_argument("--ct", type=Path, help="CT: .nii/.nii.gz, DICOM folder or .zip")
    parser.add_argument("--weight-kg", type=float, help="patient weight (kg), for a PET in Bq/mL")
    parser.add_argument("--dose-mbq", type=float, help="injected activity (MBq), for a PET in Bq/mL")


def add_case(parser: argparse.ArgumentParser) -> None:
    """One case: bundle, images, labs and device (``predict``, ``explain``)."""
    add_bundle(parser)
    add_images(parser)
    parser.add_argument("--labs", type=Path, help="JSON object of lab values, e.g. {\"chromogranin_a\": 250}")
    add_device(parser)


def cache_dir(args: argparse.Namespace) -> Path | None:
    """The cache folder of ``add_cache``'s options (None with ``--no-cache``)."""
    return None if args.no_cache else args.cache_dir


def read_labs(path: Path | None) -> dict[str, Any]:
    """The lab JSON object (empty without a file)."""
    if path is None:
        return {}
    try:
        labs = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the lab JSON ({exc}); give an object like "
                         "{\"chromogranin_a\": 250, \"sex\": \"F\"}") from None
    if not isinstance(labs, dict):
        raise InputError(f"{path}: the lab JSON must be an object of field names and values")
    return labs


def prepare_out(path: Path) -> None:
    """Create the output folder; UsageError when it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write there ({exc.strerror}); choose a writable folder") from None


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (``python -m pfs_core ...``), for manifests and results."""
    if sys.argv[1:2] == [args.command]:
        return shlex.join(["python", "-m", "pfs_core", *sys.argv[1:]])
    return f"python -m pfs_core {args.command} (called from Python)"
