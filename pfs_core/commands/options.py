"""Options and helpers shared by several commands: one definition of ``--cohort``, ``--model``, ``--device``...

Imported during argument parsing, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pfs_core.config import MODEL_PREPROCESS, PreprocessConfig, TrainConfig, from_dict, to_dict
from pfs_core.errors import InputError, UsageError
from pfs_core.io.jsontext import JsonProblem, decode_json
from pfs_core.limits import read_capped
from pfs_core.progress import writing_to

DEVICE_HELP = "torch device, e.g. cpu or cuda (default: cuda if available, else cpu)"


def add_cohort(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cohort", type=Path, required=True, help="cohort.csv (image paths relative to its folder)")


def add_bundle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="model bundle folder, e.g. models/lab_rf")


def add_out_folder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (new or empty; see --force)")
    add_force(parser)


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="replace an existing non-empty --out folder, only if it holds nothing but what this "
                             "command wrote there (docs/outputs.md)")


def add_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"),
                        help="cache of preprocessed volumes and CT pretraining (default: ./cache)")
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
    """One case: bundle, images, organ masks, labs and device (``predict``, ``explain``)."""
    add_bundle(parser)
    add_images(parser)
    add_organs(parser)
    parser.add_argument("--labs", type=Path,
                        help="lab values: a JSON object, e.g. {\"chromogranin_a\": 250}, or a .csv/.tsv of one row "
                             "under a header of field names or on-screen labels, with a unit in brackets where "
                             "the field has unit choices, e.g. 'Albumin (g/L)' (docs/input.md)")
    add_device(parser)


def add_organs(parser: argparse.ArgumentParser) -> None:
    """``--organs`` and ``--organ-labels``: organ masks of the CT for the lesion measurement."""
    parser.add_argument("--organs", type=Path,
                        help="organ masks: TotalSegmentator output folder, multi-label NIfTI (names in a sidecar "
                             "JSON or the header), DICOM SEG or RTSTRUCT (default: the organ network, trained on "
                             "simulated CTs only and not yet reliable on real CT: docs/organ_seg.md)")
    parser.add_argument("--organ-labels", type=Path, help="JSON {code: name} for a multi-label NIfTI in --organs")


def check_organ_options(args: argparse.Namespace) -> None:
    """UsageError for ``--organ-labels`` without ``--organs``."""
    if args.organ_labels is not None and args.organs is None:
        raise UsageError("--organ-labels names the labels of a multi-label NIfTI given with --organs; add --organs")


def case_organs(args: argparse.Namespace, ct: Any) -> Any:
    """The organ masks of ``--organs`` on the CT grid, or None (the measurement then runs the organ network)."""
    check_organ_options(args)
    if args.organs is None:
        return None
    if ct is None:
        raise UsageError("--organs are masks of the CT: add --ct")
    from pfs_core.io.organ_files import read_organ_masks

    return read_organ_masks(args.organs, ct=ct, label_names=args.organ_labels)


def cache_dir(args: argparse.Namespace) -> Path | None:
    """The cache folder of ``add_cache``'s options (None with ``--no-cache``); UsageError when it is a file."""
    from pfs_core.io.outputs import check_cache_dir

    folder = None if args.no_cache else args.cache_dir
    check_cache_dir(folder)
    return folder


def device(args: argparse.Namespace) -> Any:
    """The torch device of ``--device``, checked before any work (UsageError for one this machine lacks)."""
    from pfs_core.models.device import resolve_device

    return resolve_device(args.device)


def case_inputs(args: argparse.Namespace) -> list[Path | None]:
    """The input paths of one case (``add_case``/``add_images``/``add_organs``): an output may be none of them."""
    names = ("model", "pet", "ct", "labs", "organs", "organ_labels")
    return [getattr(args, name, None) for name in names]


def read_labs(path: Path | None) -> dict[str, Any]:
    """The lab JSON object, or the fields of a lab CSV row (empty without a file); InputError naming the file
    for anything unusable.

    The file must be a regular file of at most ``PFS_CORE_MAX_LABS_KB`` (:mod:`pfs_core.limits`), read
    before parsing; numbers of thousands of digits and deep nesting are refused, not raised.
    """
    if path is None:
        return {}
    if Path(path).suffix.lower() in LAB_TABLE_SUFFIXES:
        return _read_lab_row(Path(path))
    example = "give an object like {\"chromogranin_a\": 250, \"sex\": \"F\"}"
    labs = _parse_json(read_capped(Path(path), "max_labs_bytes", what="the lab JSON"), path, what="lab JSON",
                       fix=example, error=InputError)
    if not isinstance(labs, dict):
        raise InputError(f"{path}: the lab JSON must be an object of field names and values")
    return labs


#: ``--labs`` files read as a CSV row (:func:`pfs_core.io.labs.read_lab_import`); any other is a JSON object.
LAB_TABLE_SUFFIXES = (".csv", ".tsv", ".txt")


def _read_lab_row(path: Path) -> dict[str, Any]:
    """The lab fields (model units) of a CSV of one row; unknown columns named on stderr, cohort columns skipped."""
    from pfs_core.io.labs import read_lab_import

    found = read_lab_import(read_capped(path, "max_labs_bytes", what="the lab CSV"), str(path))
    if found.needs_choice:
        raise InputError(f"{path}: the lab CSV has {len(found.rows)} rows; keep the header and the one row of "
                         "this patient")
    if found.ignored:
        print(f"note: {path}: column(s) that are no lab field, ignored: {', '.join(found.ignored)}", file=sys.stderr)
    return dict(found.values)


def _parse_json(raw: bytes, path: Path, *, what: str, fix: str, error: type[Exception]) -> Any:
    """``raw`` as JSON; ``error`` naming ``path`` and the ``fix`` for text that is not JSON we can use."""
    try:
        return decode_json(raw)
    except JsonProblem as exc:
        reason = str(exc)
    raise error(f"{path}: cannot read the {what} ({reason}); {fix}") from None


def check_out(args: argparse.Namespace, inputs: list[Path | None]) -> None:
    """Check the ``--out`` folder of ``args.command`` before any work (:func:`pfs_core.io.outputs.check_output_folder`)."""
    from pfs_core.io.outputs import check_output_folder

    check_output_folder(args.out, command=args.command, force=args.force, inputs=inputs)


def prepare_out(args: argparse.Namespace, inputs: list[Path | None]) -> Path:
    """Empty (with ``--force``), create and mark the ``--out`` folder of ``args.command``, just before writing."""
    from pfs_core.io.outputs import prepare_output_folder

    return prepare_output_folder(args.out, command=args.command, force=args.force, inputs=inputs)


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (``python -m pfs_core ...``), for manifests and results."""
    if sys.argv[1:2] == [args.command]:
        return shlex.join(["python", "-m", "pfs_core", *sys.argv[1:]])
    return f"python -m pfs_core {args.command} (called from Python)"


def add_training(parser: argparse.ArgumentParser) -> None:
    """Options of ``train`` and ``benchmark``: cohort, folds, seed, configs, device, cache, progress."""
    add_cohort(parser)
    parser.add_argument("--folds", type=int, default=3, help="number of CV folds (default: 3)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of splits and training (default: 2026)")
    parser.add_argument("--epochs", type=int, help="training epochs of the neural networks (default: see docs)")
    parser.add_argument("--include-post-baseline", action="store_true",
                        help="also use prrt_cycles (known only AFTER therapy; every output names this choice)")
    add_cache(parser)
    add_device(parser)
    parser.add_argument("--threads", type=int,
                        help="CPU threads for torch (default: $PFS_CORE_THREADS or min(2, CPUs); 1 is faster when "
                             "other work keeps the cores busy)")
    parser.add_argument("--preprocess", type=Path, help="JSON file of PreprocessConfig fields (default: pfs_core.config.MODEL_PREPROCESS, "
                             "12-mm grid 32x24x32, PET clipped at SUV 60)")
    parser.add_argument("--train-config", type=Path, help="JSON file of TrainConfig fields to override")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--progress-file", type=Path,
                        help="append one JSON line per step to this file (stage, done, total, time; "
                             "see pfs_core/progress.py), e.g. for a page that follows the run")


JOBS_HELP = ("tasks run at the same time (one model fitted on one fold; one patient preprocessed or measured when "
             "not yet cached): local worker processes, or the CPUs of a local Ray instance (default: 1, all in this "
             "process)")


def add_execution(parser: argparse.ArgumentParser, *, jobs_default: int | None = 1, jobs_help: str = JOBS_HELP) -> None:
    """``--jobs``, ``--backend``, ``--address``: where the tasks of a command run (:mod:`pfs_core.execution`).

    ``jobs_default``/``jobs_help``: a command whose tasks are of another kind says so (``synth``: None, resolved
    by the command)."""
    parser.add_argument("--jobs", type=int, default=jobs_default, help=jobs_help)
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="where the tasks run: local processes, or Ray (pip install .[ray]; a local instance "
                             "of --jobs CPUs, or the cluster at --address) (default: local)")
    parser.add_argument("--address", help="address of a running Ray cluster, e.g. auto (the one 'ray start --head' "
                                          "started on this machine) or ray://HEAD:10001; needs --backend ray")


def execution(args: argparse.Namespace) -> Any:
    """The :class:`~pfs_core.execution.Execution` of ``add_execution``'s options (UsageError before any work:
    e.g. --backend ray without ray installed)."""
    from pfs_core.execution import Execution

    return Execution(backend=args.backend, jobs=args.jobs, address=args.address)


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object of config fields (a regular file of at most ``PFS_CORE_MAX_CONFIG_KB``); UsageError when
    unreadable or not an object."""
    try:
        raw = read_capped(Path(path), "max_config_bytes", what=f"the {what} JSON")
    except InputError as exc:
        raise UsageError(str(exc)) from None
    data = _parse_json(raw, path, what=f"{what} JSON", fix="give a JSON object of its fields", error=UsageError)
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the {what} JSON must be an object of field names and values")
    return data


def configs_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """(PreprocessConfig, TrainConfig) from the options."""
    try:
        preprocess = from_dict(PreprocessConfig, read_json(args.preprocess, "preprocess")) \
            if args.preprocess else MODEL_PREPROCESS
        base = to_dict(TrainConfig())
        if args.train_config:
            overrides = read_json(args.train_config, "train config")
            base.update({k: v for k, v in overrides.items() if k != "pretrain"})
            base["pretrain"] = {**base["pretrain"], **overrides.get("pretrain", {})}
        config = from_dict(TrainConfig, base)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid configuration: {exc}") from None
    from pfs_core.measure.settings import settings_of

    settings_of(config.measurement)  # an unknown measurement version is refused before any work
    if args.epochs is not None:
        if args.epochs < 1:
            raise UsageError("--epochs must be >= 1")
        config = dataclasses.replace(config, epochs=args.epochs)
    if args.include_post_baseline:
        config = dataclasses.replace(config, include_post_baseline=True)
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError("--threads must be >= 1")
        os.environ["PFS_CORE_THREADS"] = str(args.threads)
    return preprocess, config


def progress_sink(args: argparse.Namespace) -> AbstractContextManager[None]:
    """The ``--progress-file`` for the ``with`` block of a command (UsageError when it cannot be written)."""
    path = args.progress_file
    if path is not None:
        from pfs_core.io.outputs import check_output_file

        check_output_file(path, option="--progress-file",
                          inputs=[args.cohort, getattr(args, "preprocess", None), getattr(args, "train_config", None)])
        try:
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise UsageError(f"--progress-file {path}: cannot write the progress file ({exc.strerror or exc}); "
                             "choose a file you can write") from None
    return writing_to(path)


def load_training_data(args: argparse.Namespace, *, uses_images: bool, preprocess: PreprocessConfig,
                       config: TrainConfig, cache_dir: Path | None) -> Any:
    """The cohort's :class:`~pfs_core.dataset.CohortData`, with its lesion measurements when image models
    read them (``config.lesion_features``); both cached under ``cache_dir``, the cases not yet cached
    computed as tasks of the command's ``--jobs``/``--backend`` (:func:`execution`)."""
    from pfs_core.measure.features import load_cohort_with_lesions
    from pfs_core.measure.settings import settings_of

    return load_cohort_with_lesions(args.cohort, preprocess=preprocess, need_images=uses_images,
                                    lesions=config.lesion_features, cache_dir=cache_dir,
                                    progress=not args.no_progress, execution=execution(args),
                                    settings=settings_of(config.measurement))
