"""Command-line entry point: ``python -m pfs_core <command>``.

The CLI only parses arguments and calls the Python API. Each command lives in
``pfs_core/commands/<name>.py`` and provides ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Commands are imported only
when used, so ``--help`` stays fast and a broken optional dependency of one
command does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from pfs_core import __version__
from pfs_core.errors import PfsError

# Single source of truth for the command names; the module pfs_core.commands.<name> implements each.
COMMANDS: dict[str, str] = {
    "synth": "Simulate an SSTR-PET/CT + labs + PFS cohort with known ground truth.",
    "check": "Load and validate a PET/CT pair and print a JSON summary.",
    "benchmark": "Repeated cross-validation of the model comparison on a cohort.",
    "train": "Train a model bundle (fold ensemble) on a cohort.",
    "measure": "Delineate organs and lesions of one PET/CT; lesion table, features, label maps, DICOM SEG.",
    "predict": "Predict short-PFS probability for one case with a model bundle.",
    "score": "Score every case of a cohort with a model bundle (CSV out).",
    "explain": "Explain one prediction: SHAP, modality contributions, Grad-CAM.",
    "contributions": "Modality contributions and fused-feature embedding of a bundle over a cohort.",
    "validate": "Check every row of a cohort table; list each bad row with its row number and reason.",
}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors follow the project's `error:` + exit 2 contract."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def _available_commands() -> dict[str, str]:
    found = {}
    for name, help_text in COMMANDS.items():
        if importlib.util.find_spec(f"pfs_core.commands.{name}") is not None:
            found[name] = help_text
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pfs_core", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"pfs_core {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)
    for name, help_text in _available_commands().items():
        module = importlib.import_module(f"pfs_core.commands.{name}")
        cmd = sub.add_parser(name, help=help_text, description=getattr(module, "DESCRIPTION", help_text))
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except PfsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
