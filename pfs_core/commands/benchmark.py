"""``python -m pfs_core benchmark``: the study's model comparison by repeated cross-validation."""

from __future__ import annotations

import argparse
from pathlib import Path

from pfs_core.commands import options
from pfs_core.models.registry import MODEL_NAMES

# The CLI imports this module to parse arguments: heavy imports (torch, MONAI, pandas, the models) sit
# inside the functions that need them, so --help and usage errors stay fast.

HELP = "Repeated cross-validation of the model comparison on a cohort."
DESCRIPTION = (
    "Repeated stratified k-fold cross-validation of the models of the study on one cohort, all on the same "
    "splits: writes results.json, results.md, oof_predictions.csv, outcomes.csv and plotly HTML figures to --out. "
    "With the simulator's ground_truth.csv beside the cohort, reference rows (logistic regressions on the labs, "
    "the image read-outs and the true image quantities, and the true probability) are added on the same splits. "
    "Every model gets a paired ΔAUROC with a patient-bootstrap interval against each reference and the best "
    "single-modality model. "
    f"Models: {', '.join(MODEL_NAMES)} (or 'all')."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_training(parser)
    options.add_execution(parser)
    parser.add_argument("--repeats", type=int, default=3, help="CV repeats (default: 3)")
    parser.add_argument("--models", default="all",
                        help=f"'all' or a comma-separated list of: {', '.join(MODEL_NAMES)} (default: all)")
    parser.add_argument("--out", type=Path, required=True, help="results folder to write (new or empty; see --force)")
    options.add_force(parser)


def run(args: argparse.Namespace) -> int:
    with options.progress_sink(args):
        return _benchmark(args)


def _benchmark(args: argparse.Namespace) -> int:
    from pfs_core.models.provenance import is_simulated
    from pfs_core.models.registry import resolve_models
    from pfs_core.training.benchmark import benchmark_meta, run_benchmark, write_results
    from pfs_core.training.cv import CohortSource
    from pfs_core.training.references import read_ground_truth

    specs = resolve_models(args.models)
    inputs = [args.cohort, args.preprocess, args.train_config]
    options.check_out(args, inputs)
    execution = options.execution(args)
    preprocess, config = options.configs_from_args(args)
    device = str(options.device(args))
    cache_dir = options.cache_dir(args)
    uses_images = any(s.uses_images for s in specs)
    data = options.load_training_data(args, uses_images=uses_images, preprocess=preprocess, config=config,
                                      cache_dir=cache_dir)
    source = CohortSource.of(data, args.cohort, need_images=uses_images, lesion_features=config.lesion_features,
                             cache_dir=cache_dir, measurement=config.measurement)
    meta = benchmark_meta(command=options.command_line(args), cohort_csv=str(args.cohort), config=config,
                          preprocess=preprocess, device=device, simulated=is_simulated(args.cohort))
    result = run_benchmark(data, specs, folds=args.folds, repeats=args.repeats, seed=args.seed, config=config,
                           device=device, progress=not args.no_progress, cache_dir=cache_dir,
                           truth=read_ground_truth(args.cohort), execution=execution, source=source)
    result.meta = meta
    doc = write_results(result, options.prepare_out(args, inputs))
    print(f"results written to {args.out} ({doc['wall_time_s'] / 60:.1f} min)")
    for name, metrics in doc["metrics"].items():
        auroc, cidx = metrics["auroc"], metrics["c_index"]
        print(f"  {name:24s} AUROC {auroc['mean']:.3f} ± {auroc['sd']:.3f}   C-index {cidx['mean']:.3f}")
    for name, ref in doc["references"].items():
        auroc = ref["metrics"]["auroc"]
        print(f"  {name:24s} AUROC {auroc['mean']:.3f} ± {auroc['sd']:.3f}   (reference)")
    if doc["references_note"]:
        print(f"  reference rows: {doc['references_note']}")
    return 0
