"""Writing outputs without destroying data: checked targets, atomic files, marked folders, safe CSV cells.

Every command that writes goes through here (``docs/outputs.md``):

- :func:`check_output_file` / :func:`check_output_folder` run before any work: the target is of the right kind
  (a file where a file is expected, a folder where a folder is), writable, and is not one of the inputs;
- :func:`prepare_output_folder` empties a folder only when ``--force`` is given and the folder holds nothing
  but what the same command writes, recognised by the marker file :data:`MARKER` (or, for bundles and results
  written before the marker existed, by their own ``manifest.json`` / ``results.json``); never ``/``, the home
  folder, the working folder or one of its ancestors;
- :func:`atomic_write` writes a temporary file in the target's folder and renames it (``os.replace``), so a
  crash or a full disk never leaves half a file where a good one was;
- :func:`csv_safe` neutralises spreadsheet formulas in text cells (OWASP "CSV injection").
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pfs_core.errors import UsageError

#: Marker file that every command writing a folder leaves in it: ``{"product", "command", "kind"}``.
MARKER = ".pfs_core-output.json"
PRODUCT = "pfs_core"
#: A text cell starting with one of these is a formula for Excel/LibreOffice/Sheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class FolderKind:
    """What one command writes into its output folder: file name patterns, and for folders written before the
    marker, the file that recognises them (``legacy``) and its JSON ``legacy_key`` (``key=value`` or ``key``)."""

    command: str
    kind: str
    patterns: tuple[str, ...]
    legacy: str | None = None
    legacy_key: str | None = None


FOLDER_KINDS: dict[str, FolderKind] = {k.command: k for k in (
    FolderKind("train", "model bundle", ("manifest.json", "config.json", "training_oof.csv", "background_labs.csv",
                                         "MODEL_CARD.md", "fold_*.safetensors", "fold_*.skops"),
               legacy="manifest.json", legacy_key="format=pfs_core-bundle"),
    FolderKind("benchmark", "benchmark results", ("results.json", "results.md", "oof_predictions.csv",
                                                  "outcomes.csv", "figures"),
               legacy="results.json", legacy_key="metrics"),
    FolderKind("measure", "measurement", ("lesions.csv", "measurements.json", "lesions.nii.gz", "organs.nii.gz",
                                          "lesions_organs_seg.dcm")),
    FolderKind("explain", "explanation", ("explanation.json", "lesion_contributions.csv",
                                          "lesion_contributions.nii.gz", "gradcam_*.nii.gz", "readout_*.nii.gz",
                                          "report.html", "report.pdf")),
    FolderKind("contributions", "cohort contributions", ("modality_contributions.csv", "embedding.csv",
                                                         "contributions.json")),
    FolderKind("validate", "usable rows of a cohort", ("cohort.csv", "ground_truth.csv")),
    FolderKind("synth", "simulated cohort", ("cohort.csv", "ground_truth.csv", "lesions.csv", "summary.json",
                                             "images"),
               legacy="summary.json", legacy_key="simulator_version"),
)}


# ----------------------------------------------------------------------------- checks before the work


def check_output_file(path: Path, *, option: str, inputs: Iterable[Path | None] = ()) -> None:
    """UsageError unless ``path`` can be written as a file: not a folder, its folder a folder (or creatable) and
    writable, and not one of ``inputs`` nor inside an input folder. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder, not a file; give a file name, e.g. {path / 'out'}")
    _check_not_input(path, option=option, inputs=inputs)
    _check_writable(path.parent, option=option, target=path)


def check_output_folder(path: Path, *, command: str, force: bool, option: str = "--out",
                        inputs: Iterable[Path | None] = ()) -> None:
    """UsageError unless ``command`` may write the folder ``path``: new, empty, or (with ``force``) holding only
    what ``command`` wrote there before; never a protected folder; no input inside it. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder; give a folder path")
    folder_inputs = [p for p in inputs if p is not None]
    for item in folder_inputs:
        if _inside(Path(item), path):
            raise UsageError(f"{option} {path}: holds the input {item}; choose an output folder of its own")
    _check_not_input(path, option=option, inputs=folder_inputs)
    if path.is_dir() and _entries(path):
        if not force:
            raise UsageError(f"{option} {path}: folder exists and is not empty; choose a new folder or add --force "
                             f"to replace what 'pfs_core {command}' wrote there")
        _check_replaceable(path, command=command, option=option)
    _check_writable(path if path.is_dir() else path.parent, option=option, target=path)


def check_cache_dir(path: Path | None, *, option: str = "--cache-dir") -> None:
    """UsageError when the cache folder is a file (or lies below one); creates nothing."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder; give a folder for the cache or add --no-cache")
    _check_writable(path if path.is_dir() else path.parent, option=option, target=path)


def _check_replaceable(path: Path, *, command: str, option: str) -> None:
    """UsageError unless the non-empty folder ``path`` is ours for ``command`` and not protected."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved in {Path("/").resolve(), Path.home().resolve(), cwd, *cwd.parents}:
        raise UsageError(f"{option} {path}: refusing to replace this folder (root, home, the working folder or a "
                         "parent of it); choose a dedicated output folder")
    kind = FOLDER_KINDS[command]
    writer = written_by(path)
    if writer is None:
        raise UsageError(f"{option} {path}: not a folder that 'pfs_core {command}' wrote (no {MARKER}"
                         f"{f' and no {kind.legacy} of one' if kind.legacy else ''}), so --force does not replace "
                         "it; choose a new or empty folder")
    if writer != command:
        raise UsageError(f"{option} {path}: written by 'pfs_core {writer}', not '{command}', so --force does not "
                         "replace it; choose a new or empty folder")
    foreign = [name for name in _entries(path) if not _ours(name, kind)]
    if foreign:
        listed = ", ".join(sorted(foreign)[:3]) + (" ..." if len(foreign) > 3 else "")
        raise UsageError(f"{option} {path}: holds files that 'pfs_core {command}' did not write ({listed}); "
                         "move them away or choose a new folder")


def written_by(path: Path) -> str | None:
    """The command whose output the folder ``path`` is (its marker, else its legacy file), or None."""
    marker = _read_json(path / MARKER)
    if isinstance(marker, dict) and marker.get("product") == PRODUCT and isinstance(marker.get("command"), str):
        return str(marker["command"])
    for kind in FOLDER_KINDS.values():
        if kind.legacy and kind.legacy_key and _has_key(_read_json(path / kind.legacy), kind.legacy_key):
            return kind.command
    return None


def _has_key(doc: Any, key: str) -> bool:
    name, _, value = key.partition("=")
    return isinstance(doc, dict) and name in doc and (not value or doc[name] == value)


def _read_json(path: Path) -> Any:
    try:
        if path.is_file() and path.stat().st_size <= 50_000_000:
            return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    return None


def _ours(name: str, kind: FolderKind) -> bool:
    return name == MARKER or _is_temporary(name) or any(fnmatch.fnmatchcase(name, p) for p in kind.patterns)


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and ".tmp-" in name


def _entries(path: Path) -> list[str]:
    return [p.name for p in path.iterdir()]


def _check_writable(folder: Path, *, option: str, target: Path) -> None:
    """UsageError when ``folder`` (or its nearest existing ancestor, where it would be created) is not a
    writable folder."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {target}: {existing} is a file, not a folder; choose a path in a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {target}: cannot write in {existing} (permission denied); choose a folder "
                         "you can write to")


def _check_not_input(path: Path, *, option: str, inputs: Iterable[Path | None]) -> None:
    for item in inputs:
        if item is not None and (_same(path, Path(item)) or _inside(path, Path(item))):
            raise UsageError(f"{option} {path}: is the input {item} (or inside it), which would be overwritten; "
                             "choose another output path")


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except (OSError, ValueError):
        return False


def _inside(path: Path, folder: Path) -> bool:
    """``path`` lies strictly inside the existing folder ``folder``."""
    try:
        return folder.is_dir() and path.resolve().is_relative_to(folder.resolve()) \
            and path.resolve() != folder.resolve()
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- writing


def prepare_output_folder(path: Path, *, command: str, force: bool, option: str = "--out",
                          inputs: Iterable[Path | None] = ()) -> Path:
    """Check ``path`` (:func:`check_output_folder`), remove what ``command`` wrote there before, create it and
    write the marker. Call it just before writing, after the inputs have been read."""
    path = Path(path)
    check_output_folder(path, command=command, force=force, option=option, inputs=inputs)
    kind = FOLDER_KINDS[command]
    try:
        if path.is_dir():
            for entry in path.iterdir():
                if entry.name != MARKER and _ours(entry.name, kind):
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        path.mkdir(parents=True, exist_ok=True)
        write_marker(path, command=command)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write there ({exc.strerror or exc}); choose a folder you can "
                         "write to") from None
    return path


def write_marker(folder: Path, *, command: str) -> None:
    """Write :data:`MARKER` into ``folder``: this folder is ``command``'s output and ``--force`` may replace it."""
    from pfs_core import __version__

    doc = {"product": PRODUCT, "command": command, "kind": FOLDER_KINDS[command].kind, "version": __version__}
    atomic_write_text(Path(folder) / MARKER, json.dumps(doc, indent=1) + "\n")


def temporary_name(path: Path) -> Path:
    """A hidden temporary file beside ``path`` with the same suffixes (writers pick the format from them)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{''.join(path.suffixes)}")


def atomic_write(path: Path, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp)`` on a temporary file in ``path``'s folder, then rename it to ``path``
    (``os.replace``: readers see the old file or the new one, never half of one). Returns ``path``."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_csv(frame: Any, path: Path, **to_csv: Any) -> Path:
    """Write the DataFrame ``frame`` as CSV to ``path`` atomically, its text cells made safe (:func:`csv_safe`);
    ``to_csv`` are pandas' options (``index=False`` is the default here)."""
    options = {"index": False, **to_csv}
    return atomic_write(path, lambda tmp: csv_safe(frame).to_csv(tmp, **options))


def csv_safe(value: Any) -> Any:
    """``value`` with every text cell that a spreadsheet would run as a formula (starting with ``= + - @``,
    tab or carriage return) prefixed with a single quote (OWASP). A DataFrame or Series is copied, only its
    text (object/string) columns change, so numbers (negative ones included) stay numbers; a str is changed
    the same way; anything else is returned as is."""
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_PREFIXES) else value
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        out = value.copy()
        for column in out.columns:
            if _is_text(out[column]):
                out[column] = out[column].map(csv_safe)
        return out
    if isinstance(value, pd.Series):
        return value.map(csv_safe) if _is_text(value) else value.copy()
    return value


def _is_text(series: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)
                or isinstance(series.dtype, pd.CategoricalDtype))
