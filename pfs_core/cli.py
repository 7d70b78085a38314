"""Command-line entry point: ``python -m pfs_core <command>``.

The CLI only parses arguments and calls the Python API. Each command lives in
``pfs_core/commands/<name>.py`` and provides ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Commands are imported only
when used, so ``--help`` stays fast and a broken optional dependency of one
command does not break the others.
"""

from __future__ import annotations

import argparse
import errno
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
    except (OSError, MemoryError, ValueError, RuntimeError) as exc:
        message = environment_message(exc)
        if message is None:  # a genuine bug: keep its traceback
            raise
        sys.stderr.write(f"error: {message}\n")
        return 2


#: errno → (what went wrong, how to fix it) for the environment problems a user can fix.
_OS_PROBLEMS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("disk full", "free some space or write to another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write to another disk"),
    errno.EACCES: ("permission denied", "choose a path you may read or write, or change its permissions"),
    errno.EPERM: ("operation not permitted", "choose a path you may read or write, or change its permissions"),
    errno.EROFS: ("read-only file system", "write to a writable folder"),
    errno.ENAMETOOLONG: ("path too long", "use a shorter path (at most 255 characters per name)"),
    errno.ENOENT: ("not found", "check the path"),
    errno.EISDIR: ("is a folder", "give a file path"),
    errno.ENOTDIR: ("a part of the path is not a folder", "check the path"),
    errno.EMFILE: ("too many open files", "close other programs or raise 'ulimit -n'"),
}


def environment_message(exc: BaseException) -> str | None:
    """One line ``<what> (<file>): <strerror>; <fix>`` for a problem of the machine or of a path (disk full,
    permission, path too long, NUL byte, out of memory, unusable device); None for anything else (a bug)."""
    if isinstance(exc, MemoryError):
        return "out of memory; close other programs, use a smaller input or a machine with more memory"
    if isinstance(exc, ValueError):
        if "null byte" in str(exc) or "null character" in str(exc):
            return "a path contains a NUL byte; give the path without it"
        return None
    if isinstance(exc, RuntimeError):
        text = str(exc)
        if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text.lower():
            return f"out of memory on the device ({text.splitlines()[0][:200]}); use --device cpu or a smaller input"
        if text.startswith(("CUDA error", "CUDA driver", "Found no NVIDIA driver")):
            return f"the device failed ({text.splitlines()[0][:200]}); use --device cpu"
        return None
    assert isinstance(exc, OSError)
    what, fix = _OS_PROBLEMS.get(exc.errno or -1, ("cannot read or write a file", "check the path and the disk"))
    files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    where = f" ({files})" if files else ""
    return f"{what}{where}: {exc.strerror or exc}; {fix}"
