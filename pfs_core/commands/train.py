"""``python -m pfs_core train``: train a model bundle (fold ensemble) on a cohort."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from pfs_core.commands import options
from pfs_core.models.registry import DEFAULT_MODEL, MODEL_NAMES

# The CLI imports this module to parse arguments: heavy imports (torch, MONAI, pandas, the models) sit
# inside the functions that need them, so --help and usage errors stay fast.

HELP = "Train a model bundle (fold ensemble) on a cohort."
DESCRIPTION = (
    "Cross-validate one model on a cohort (stratified k-fold, fixed seed) and save the fold models as an "
    "ensemble bundle: safetensors/skops weights, config.json, manifest.json with sha256 of every file, "
    "training OOF predictions and MODEL_CARD.md. See docs/models.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_training(parser)
    options.add_execution(parser)
    parser.add_argument("--model", choices=MODEL_NAMES, default=DEFAULT_MODEL,
                        help=f"model to train (default: {DEFAULT_MODEL})")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write, e.g. models/NAME")
    parser.add_argument("--data-note", help="free text on the training data for the manifest and model card "
                                            "(e.g. the synth command that made it)")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle folder (only one that 'train' wrote: docs/outputs.md)")


def run(args: argparse.Namespace) -> int:
    with options.progress_sink(args):
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    from pfs_core.models.provenance import is_simulated, runtime_info
    from pfs_core.models.registry import get_spec
    from pfs_core.training.bundle import train_bundle
    from pfs_core.training.cv import CohortSource, executing

    spec = get_spec(args.model)
    inputs = [args.cohort, args.preprocess, args.train_config]
    options.check_out(args, inputs)
    execution = options.execution(args)
    preprocess, config = options.configs_from_args(args)
    cache_dir = options.cache_dir(args)
    device = options.device(args)
    data = options.load_training_data(args, uses_images=spec.uses_images, preprocess=preprocess, config=config,
                                      cache_dir=cache_dir)
    simulated = is_simulated(args.cohort)
    provenance = {"command": options.command_line(args), "source": str(args.cohort), "simulated": simulated,
                  "note": args.data_note, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                  **runtime_info(str(device))}
    source = CohortSource.of(data, args.cohort, need_images=spec.uses_images, lesion_features=config.lesion_features,
                             cache_dir=cache_dir, measurement=config.measurement)
    out = options.prepare_out(args, inputs)
    with executing(execution, source):  # the fold fits of train_bundle's cross-validation
        path = train_bundle(data, spec, out, folds=args.folds, seed=args.seed, config=config, device=device,
                            progress=not args.no_progress, cache_dir=cache_dir, provenance=provenance)
    manifest = json.loads((path / "manifest.json").read_text())
    cv = manifest["cv_metrics"]
    print(f"bundle written: {path} ({spec.name}, version {manifest['model_version']}; "
          f"OOF AUROC {cv['auroc']:.3f}, C-index {cv['c_index']:.3f}; {manifest['train_seconds']:.0f} s)")
    return 0
