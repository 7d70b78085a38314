"""``python -m pfs_core train``: train a model bundle (fold ensemble) on a cohort.

Also holds the options shared with ``benchmark`` (cohort, seed, epochs, configs, device, cache).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from pfs_core.models.registry import DEFAULT_MODEL, MODEL_NAMES

HELP = "Train a model bundle (fold ensemble) on a cohort."
DESCRIPTION = (
    "Cross-validate one model on a cohort (stratified k-fold, fixed seed) and save the fold models as an "
    "ensemble bundle: safetensors/skops weights, config.json, manifest.json with sha256 of every file, "
    "training OOF predictions and MODEL_CARD.md. See docs/models.md."
)


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``benchmark``."""
    parser.add_argument("--cohort", type=Path, required=True, help="cohort.csv (image paths relative to its folder)")
    parser.add_argument("--folds", type=int, default=3, help="number of CV folds (default: 3)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of splits and training (default: 2026)")
    parser.add_argument("--epochs", type=int, help="training epochs of the neural networks (default: see docs)")
    parser.add_argument("--include-post-baseline", action="store_true",
                        help="also use prrt_cycles (known only AFTER therapy; every output names this choice)")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"),
                        help="cache of preprocessed volumes and CT pretraining (default: ./cache)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads for torch (default: $PFS_CORE_THREADS or min(2, CPUs); 1 is faster when "
                             "other work keeps the cores busy)")
    parser.add_argument("--preprocess", type=Path, help="JSON file of PreprocessConfig fields (default: pfs_core.config.MODEL_PREPROCESS, "
                             "12-mm grid 32x24x32, PET clipped at SUV 60)")
    parser.add_argument("--train-config", type=Path, help="JSON file of TrainConfig fields to override")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--model", choices=MODEL_NAMES, default=DEFAULT_MODEL,
                        help=f"model to train (default: {DEFAULT_MODEL})")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write, e.g. models/NAME")
    parser.add_argument("--data-note", help="free text on the training data for the manifest and model card "
                                            "(e.g. the synth command that made it)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing bundle folder")


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (``python -m pfs_core ...``)."""
    if sys.argv[1:2] == [args.command]:
        return shlex.join(["python", "-m", "pfs_core", *sys.argv[1:]])
    return f"python -m pfs_core {args.command} (called from Python)"


def _read_json(path: Path, what: str) -> dict[str, Any]:
    from pfs_core.errors import UsageError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the {what} JSON ({exc}); give a JSON object of its fields") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the {what} JSON must be an object of field names and values")
    return data


def configs_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """(PreprocessConfig, TrainConfig) from the options."""
    import dataclasses

    from pfs_core.config import MODEL_PREPROCESS, PreprocessConfig, TrainConfig, from_dict
    from pfs_core.errors import UsageError

    try:
        preprocess = from_dict(PreprocessConfig, _read_json(args.preprocess, "preprocess")) \
            if args.preprocess else MODEL_PREPROCESS
        base = TrainConfig().to_dict()
        if args.train_config:
            overrides = _read_json(args.train_config, "train config")
            base.update({k: v for k, v in overrides.items() if k != "pretrain"})
            base["pretrain"] = {**base["pretrain"], **overrides.get("pretrain", {})}
        config = TrainConfig.from_dict(base)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid configuration: {exc}") from None
    if args.epochs is not None:
        if args.epochs < 1:
            raise UsageError("--epochs must be >= 1")
        config = dataclasses.replace(config, epochs=args.epochs)
    if args.include_post_baseline:
        config = dataclasses.replace(config, include_post_baseline=True)
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError("--threads must be >= 1")
        import os

        os.environ["PFS_CORE_THREADS"] = str(args.threads)
    return preprocess, config


def run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from pfs_core.dataset import load_cohort_data
    from pfs_core.errors import UsageError
    from pfs_core.models.device import resolve_device
    from pfs_core.models.provenance import is_simulated, runtime_info
    from pfs_core.models.registry import get_spec
    from pfs_core.training.bundle import train_bundle

    spec = get_spec(args.model)
    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        raise UsageError(f"{args.out}: folder exists and is not empty; choose another --out or add --force")
    preprocess, config = configs_from_args(args)
    cache_dir = None if args.no_cache else args.cache_dir
    device = resolve_device(args.device)
    data = load_cohort_data(args.cohort, preprocess=preprocess, need_images=spec.uses_images, cache_dir=cache_dir,
                            progress=not args.no_progress)
    simulated = is_simulated(args.cohort)
    provenance = {"command": command_line(args), "source": str(args.cohort), "simulated": simulated,
                  "note": args.data_note, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                  **runtime_info(str(device))}
    if args.force and args.out.exists():
        for old in args.out.iterdir():
            if old.is_file():
                old.unlink()
    path = train_bundle(data, spec, args.out, folds=args.folds, seed=args.seed, config=config, device=device,
                        progress=not args.no_progress, cache_dir=cache_dir, provenance=provenance)
    manifest = json.loads((path / "manifest.json").read_text())
    cv = manifest["cv_metrics"]
    print(f"bundle written: {path} ({spec.name}, version {manifest['model_version']}; "
          f"OOF AUROC {cv['auroc']:.3f}, C-index {cv['c_index']:.3f}; {manifest['train_seconds']:.0f} s)")
    return 0
