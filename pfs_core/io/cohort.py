"""The one reader of cohort tables: a row-by-row check, and the checked table for the models.

:func:`validate_cohort` reads ``cohort.csv`` as text and reports *every* bad row
(:class:`RowProblem`: row number, patient id, column, reason) instead of stopping
at the first one; the rows without a problem go on (:attr:`CohortReport.good`).
Only a file that cannot be used at all (unreadable, no rows, required columns
missing) raises :class:`pfs_core.errors.InputError`. :func:`read_cohort` is the
strict form that training, benchmarks and preprocessing read: the same checks,
and an error on the first bad row.

Row numbers are **spreadsheet row numbers**: the header is row 1, the first
patient is row 2 (what a spreadsheet program shows, and the line number in a text
editor when no cell spans lines). Reasons name the column and the rule but never
quote a patient's lab or outcome value, so a report can be shared or logged; image
problems carry the :class:`~pfs_core.errors.InputError` message of the image
loader (it names the file).

:func:`write_good_cohort` writes the good rows as a cohort table with absolute
image paths (what ``benchmark``/``train``/``score`` read).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pfs_core import schema
from pfs_core.errors import InputError
from pfs_core.io import check_overlap, load_ct, load_pet
from pfs_core.io.labs import as_number, is_missing, parse_lab
from pfs_core.io.outputs import atomic_write, atomic_write_text
from pfs_core.limits import read_capped

#: Column name used for problems that concern the PET/CT pair rather than one file.
PAIR_COLUMN = "pet+ct"


#: Spreadsheet row number of the first patient (the header is row 1).
FIRST_DATA_ROW = 2

#: Environment variable: further folders (os.pathsep-separated) that a cohort's image paths may lie in.
DATA_ROOTS_VARIABLE = "PFS_CORE_DATA_ROOTS"

#: Beside a cohort table written by :func:`write_good_cohort`: the folders its absolute paths were checked in.
IMAGE_ROOTS_FILE = "image_roots.txt"

MAX_NAME_CHARS = 255  # longest file or folder name most file systems take


ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class RowProblem:
    """One reason why one row cannot be used.

    ``row``: spreadsheet row number (header = row 1, first patient = row 2);
    ``column``: the offending column (``"pet+ct"`` for the pair, ``"row"`` for the row's shape).
    """

    row: int
    patient_id: str
    column: str
    reason: str


@dataclass
class CohortReport:
    """Result of :func:`validate_cohort`.

    ``good``: the usable rows, index = spreadsheet row number (named ``row``);
    numeric columns as float (NaN = missing), ``progressed`` as float 0/1 (NaN when
    absent and not required), ``pet``/``ct`` as absolute paths ("" when empty).
    """

    source: Path
    image_root: Path
    n_rows: int
    good: pd.DataFrame
    problems: list[RowProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def bad_rows(self) -> list[int]:
        """Spreadsheet row numbers with at least one problem, ascending."""
        return sorted({p.row for p in self.problems})

    @property
    def n_good(self) -> int:
        return len(self.good)

    @property
    def n_bad(self) -> int:
        return len(self.bad_rows)

    @property
    def all_good(self) -> bool:
        return not self.problems

    def problems_frame(self) -> pd.DataFrame:
        """Columns row, patient_id, column, reason (one line per problem, by row)."""
        rows = [vars(p) for p in sorted(self.problems, key=lambda p: p.row)]
        return pd.DataFrame(rows, columns=["row", "patient_id", "column", "reason"])

    def summary(self) -> str:
        """One line: how many rows are usable."""
        return (f"{self.source}: {self.n_rows} rows, {self.n_good} usable, {self.n_bad} with problems "
                f"({len(self.problems)} problem(s))")


def _read_records(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, data records) of a CSV file as text; InputError when it cannot be read."""
    try:
        exists = path.exists()
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        exists = False
    if not exists:
        raise InputError(f"{path}: cohort file not found; give the path of your cohort.csv")
    raw = read_capped(path, "max_cohort_bytes", what="the cohort table")
    try:
        records = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the cohort table ({exc}); save it as a UTF-8 CSV file") from None
    if not records or not any(cell.strip() for cell in records[0]):
        raise InputError(f"{path}: empty file; the first line must be the header ({', '.join(schema.COHORT_COLUMNS)})")
    header = [cell.strip() for cell in records[0]]
    duplicated = sorted(name for name, count in Counter(header).items() if count > 1 and name)
    if duplicated:
        raise InputError(f"{path}: column(s) {', '.join(duplicated)} appear more than once in the header; "
                         "keep one of each")
    return header, records[1:]


def required_columns(*, check_images: bool, require_outcome: bool) -> list[str]:
    """Columns a table must have for the given use."""
    columns = [schema.ID_COLUMN]
    if check_images:
        columns += [schema.PET_COLUMN, schema.CT_COLUMN]
    if require_outcome:
        columns += [schema.TIME_COLUMN, schema.EVENT_COLUMN]
    return columns


def _check_header(path: Path, header: list[str], *, check_images: bool, require_outcome: bool) -> list[str]:
    """InputError naming the missing required columns; returns warnings about the others."""
    missing = [c for c in required_columns(check_images=check_images, require_outcome=require_outcome)
               if c not in header]
    if missing:
        raise InputError(f"{path}: missing required column(s) {', '.join(missing)}; the cohort table needs "
                         f"{', '.join(schema.COHORT_COLUMNS)} (lab columns may be empty)")
    warnings = []
    absent = [c for c in schema.LAB_COLUMNS if c not in header]
    if absent:
        warnings.append(f"column(s) {', '.join(absent)} absent: the models impute these values for every patient")
    unknown = [c for c in header if c and c not in schema.COHORT_COLUMNS + schema.OPTIONAL_COLUMNS]
    if unknown:
        warnings.append(f"column(s) {', '.join(unknown)} are not used (names of pfs_core.schema expected)")
    return warnings


def check_outcome(name: str, text: str, *, required: bool) -> tuple[float, str | None]:
    """(value or NaN, reason or None) of ``pfs_months`` (>= 0, months) or ``progressed`` (0/1)."""
    if is_missing(text):
        return float("nan"), ("missing; every patient needs pfs_months (months) and progressed (0/1)"
                              if required else None)
    number = as_number(text)
    if name == schema.TIME_COLUMN:
        if number is None or number < 0:
            return float("nan"), "must be a number of months >= 0"
        return number, None
    if number not in (0.0, 1.0):
        return float("nan"), "must be 0 (no progression, censored) or 1 (progressed)"
    return float(number), None


def allowed_roots(image_root: Path, cohort_csv: Path | None = None) -> list[Path]:
    """Folders a cohort's image paths may resolve into: ``image_root`` (the cohort's folder unless given),
    each folder of ``PFS_CORE_DATA_ROOTS``, and those :func:`write_good_cohort` recorded beside ``cohort_csv``."""
    return [image_root, *data_roots(), *(_recorded_roots(cohort_csv) if cohort_csv is not None else [])]


def data_roots() -> list[Path]:
    """The folders of ``PFS_CORE_DATA_ROOTS`` (resolved; an unusable one allows nothing)."""
    roots = []
    for text in os.environ.get(DATA_ROOTS_VARIABLE, "").split(os.pathsep):
        try:
            roots += [Path(text.strip()).expanduser().resolve()] if text.strip() else []
        except (OSError, RuntimeError, ValueError):
            continue
    return roots


def not_allowed(text: str, image_root: Path) -> str:
    """The one reason for an image path (cell ``text``) that is missing *or* outside the allowed folders: the
    message does not tell which, so a cohort cannot probe the server's files."""
    shown = text.strip() if len(text.strip()) <= 80 else text.strip()[:77] + "..."
    return (f"{shown}: image not found in the cohort folder or not allowed; put the images inside {image_root} "
            f"(relative paths are read from there) or set {DATA_ROOTS_VARIABLE} to the folder that holds them")


def resolve_image(text: str, image_root: Path) -> Path | None:
    """Absolute image path of a cell (relative paths are read from ``image_root``); None when empty.

    InputError for a path that no file system takes (a NUL byte, a name over 255 characters).
    """
    if is_missing(text):
        return None
    text = text.strip()
    if "\x00" in text:
        raise InputError("the path holds a NUL byte; write the plain path of the image")
    if any(len(part) > MAX_NAME_CHARS for part in Path(text).parts):
        raise InputError(f"a folder or file name in the path is longer than {MAX_NAME_CHARS} characters; "
                         "give the real path of the image")
    path = Path(text).expanduser()
    try:
        return (path if path.is_absolute() else image_root / path).resolve()
    except (OSError, RuntimeError) as exc:  # a symbolic-link loop
        raise InputError("the path cannot be resolved (a loop of symbolic links?); give the real path") from exc


def _allowed_path(path: Path, roots: list[Path]) -> bool:
    """``path`` (resolved) lies in one of ``roots`` and exists (an error while checking counts as missing)."""
    try:
        return any(path.is_relative_to(root) for root in roots) and path.exists()
    except (OSError, ValueError):
        return False


def image_problems(pet: Path | None, ct: Path | None, *, image_root: Path,
                   roots: list[Path] | None = None) -> list[tuple[str, str]]:
    """(column, reason) for every image problem of one row: missing file, unreadable image, no overlap.

    Each image is loaded fully with :func:`pfs_core.io.load_pet` / ``load_ct``; the
    reason is the loader's :class:`InputError` message. A path must exist inside ``roots``
    (default: :func:`allowed_roots` of ``image_root``).
    """

    if pet is None and ct is None:
        return [(PAIR_COLUMN, f"both {schema.PET_COLUMN} and {schema.CT_COLUMN} are empty; give at least one image")]
    problems: list[tuple[str, str]] = []
    volumes = {}
    for column, path, loader in ((schema.PET_COLUMN, pet, load_pet), (schema.CT_COLUMN, ct, load_ct)):
        if path is None:
            continue
        if not _allowed_path(path, allowed_roots(image_root) if roots is None else roots):
            problems.append((column, not_allowed(str(path), image_root)))
            continue
        try:
            volumes[column] = loader(path)
        except InputError as exc:
            problems.append((column, str(exc)))
    if len(volumes) == 2:
        try:
            check_overlap(volumes[schema.PET_COLUMN], volumes[schema.CT_COLUMN])
        except InputError as exc:
            problems.append((PAIR_COLUMN, str(exc)))
    return problems


@dataclass
class _RowResult:
    values: dict[str, Any]
    problems: list[tuple[str, str]]


def _check_row(cells: dict[str, str], *, image_root: Path, require_outcome: bool, images: bool,
               roots: list[Path]) -> _RowResult:
    """Parsed values and (column, reason) problems of one row, image files not yet opened.

    Every image path must exist inside ``roots`` (:func:`allowed_roots`); without ``images`` a path outside
    them is dropped (not read) instead.
    """
    values: dict[str, Any] = {schema.ID_COLUMN: cells.get(schema.ID_COLUMN, "").strip()}
    problems: list[tuple[str, str]] = []
    for name in schema.LAB_COLUMNS:
        value, reason = parse_lab(name, cells.get(name, ""))
        values[name] = float("nan") if value is None else value
        if reason:
            problems.append((name, reason))
    for name in (schema.TIME_COLUMN, schema.EVENT_COLUMN):
        values[name], reason = check_outcome(name, cells.get(name, ""), required=require_outcome)
        if reason:
            problems.append((name, reason))
    for name in (schema.PET_COLUMN, schema.CT_COLUMN, schema.ORGANS_COLUMN):
        values[name], reason = _image_cell(name, cells.get(name, ""), image_root=image_root, roots=roots,
                                           images=images)
        if reason:
            problems.append((name, reason))
    if images and not values[schema.PET_COLUMN] and not values[schema.CT_COLUMN]:
        problems.append((PAIR_COLUMN, f"both {schema.PET_COLUMN} and {schema.CT_COLUMN} are empty; "
                                      "give at least one image"))
    return _RowResult(values, problems)


def _image_cell(name: str, text: str, *, image_root: Path, roots: list[Path], images: bool) -> tuple[str, str | None]:
    """(absolute path or "", reason or None) of one image cell; see :func:`_check_row`."""
    try:
        path = resolve_image(text, image_root)
    except InputError as exc:
        return text.strip(), str(exc)  # kept, so the row does not also read as "no image at all"
    if path is None:
        return "", None
    if _allowed_path(path, roots):
        return str(path), None
    if not images:
        return "", None
    reason = not_allowed(text, image_root)
    if name == schema.ORGANS_COLUMN:
        reason += "; or leave the cell empty to let the organ network delineate the organs"
    return str(path), reason


def _id_problems(ids: dict[int, str]) -> dict[int, str]:
    """Row → reason for empty or duplicated patient ids (every occurrence of a duplicate)."""
    rows_of: dict[str, list[int]] = {}
    for row, pid in ids.items():
        rows_of.setdefault(pid, []).append(row)
    out = {}
    for pid, rows in rows_of.items():
        if not pid:
            for row in rows:
                out[row] = "empty; every row needs a unique patient_id"
        elif len(rows) > 1:
            for row in rows:
                out[row] = f"the same patient_id is used in rows {', '.join(map(str, rows))}; make ids unique"
    return out


def validate_cohort(
    cohort_csv: str | Path,
    *,
    check_images: bool = True,
    require_outcome: bool = True,
    image_root: str | Path | None = None,
    progress: ProgressCallback | None = None,
    open_images: bool = True,
) -> CohortReport:
    """Check every row of a cohort table; report all bad rows and keep the good ones.

    Args:
        cohort_csv: the table (columns of :data:`pfs_core.schema.COHORT_COLUMNS`).
        check_images: open every PET/CT (full load) and check that each pair overlaps;
            False skips the image files (lab-only models) and the pet/ct columns become optional.
        require_outcome: ``pfs_months`` (months, >= 0) and ``progressed`` (0/1) must be
            present (benchmark, train); False for scoring new patients.
        image_root: folder that relative image paths are read from (default: the CSV's folder).
        progress: called as ``progress(done, total)`` after each row's images are checked.
        open_images: with ``check_images``, also open the files; False checks only that the
            columns exist and each row names an image (the files are read later anyway).

    Returns:
        a :class:`CohortReport`; row numbers count the header as row 1.

    Raises:
        InputError: the file cannot be read, has no patient row, or lacks required columns.
    """
    path = Path(cohort_csv).expanduser()
    root = Path(image_root).expanduser().resolve() if image_root is not None else path.resolve().parent
    header, records = _read_records(path)
    roots = allowed_roots(root, path)
    warnings = _check_header(path, header, check_images=check_images, require_outcome=require_outcome)
    parsed: dict[int, _RowResult] = {}
    shape_problems: dict[int, list[tuple[str, str]]] = {}
    for offset, record in enumerate(records):
        row = FIRST_DATA_ROW + offset
        if not any(cell.strip() for cell in record):
            continue  # blank line: not a patient
        if len(record) != len(header):
            shape_problems[row] = [("row", f"has {len(record)} cells but the header has {len(header)}; "
                                           "check for a stray or missing comma")]
        cells = dict(zip(header, record, strict=False))
        parsed[row] = _check_row(cells, image_root=root, require_outcome=require_outcome, images=check_images,
                                 roots=roots)
    if not parsed:
        raise InputError(f"{path}: no patient rows below the header")
    ids = {row: result.values[schema.ID_COLUMN] for row, result in parsed.items()}
    for row, reason in _id_problems(ids).items():
        parsed[row].problems.insert(0, (schema.ID_COLUMN, reason))
    for row, problems in shape_problems.items():
        parsed[row].problems[:0] = problems
    if check_images and open_images:
        _check_all_images(parsed, root, roots, progress)
    return _report(path, root, parsed, warnings)


def _check_all_images(parsed: dict[int, _RowResult], root: Path, roots: list[Path],
                      progress: ProgressCallback | None) -> None:
    """Open the images of every row (also of rows with other problems, so all reasons are reported)."""
    total = len(parsed)
    for done, result in enumerate(parsed.values(), start=1):
        reported = {column for column, _reason in result.problems}  # missing or not allowed: not opened
        pet, ct = (Path(result.values[c]) if result.values[c] and c not in reported else None
                   for c in (schema.PET_COLUMN, schema.CT_COLUMN))
        if pet is not None or ct is not None:
            result.problems.extend(image_problems(pet, ct, image_root=root, roots=roots))
        if progress is not None:
            progress(done, total)


def _report(path: Path, root: Path, parsed: dict[int, _RowResult], warnings: list[str]) -> CohortReport:
    problems = [RowProblem(row=row, patient_id=r.values[schema.ID_COLUMN], column=column, reason=reason)
                for row, r in parsed.items() for column, reason in r.problems]
    good_rows = {row: r.values for row, r in parsed.items() if not r.problems}
    columns = list(schema.COHORT_COLUMNS + schema.OPTIONAL_COLUMNS)
    good = pd.DataFrame.from_dict(good_rows, orient="index", columns=columns) if good_rows \
        else pd.DataFrame(columns=columns)
    good.index.name = "row"
    return CohortReport(source=path, image_root=root, n_rows=len(parsed), good=good, problems=problems,
                        warnings=warnings)


def write_good_cohort(report: CohortReport, folder: str | Path) -> Path:
    """Write the good rows as ``folder/cohort.csv`` (absolute image paths); returns its path.

    When the source folder holds the simulator's ``ground_truth.csv`` its rows for the
    good patients are copied too, so the copy is still recognised as simulated
    (:func:`pfs_core.models.provenance.is_simulated`). InputError when no row is usable.
    """
    if report.good.empty:
        raise InputError(f"{report.source}: no usable row ({report.n_bad} row(s) with problems); fix the rows "
                         "listed by 'python -m pfs_core validate' and try again")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "cohort.csv"
    frame = report.good.copy()
    frame[schema.EVENT_COLUMN] = frame[schema.EVENT_COLUMN].astype("Int64")
    # as read, not csv_safe: this table is read back as input (a quote before '+1' would change the patient id),
    # and its cells are the user's own
    atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
    roots = [report.image_root, *_recorded_roots(report.source)]  # not the environment's: it applies anyway
    atomic_write_text(folder / IMAGE_ROOTS_FILE, "".join(f"{root}\n" for root in roots))
    truth = report.source.parent / "ground_truth.csv"
    if truth.is_file():
        table = pd.read_csv(truth, dtype={schema.ID_COLUMN: str})
        if schema.ID_COLUMN in table:
            kept = table[table[schema.ID_COLUMN].isin(frame[schema.ID_COLUMN])]
            atomic_write(folder / truth.name, lambda tmp: kept.to_csv(tmp, index=False))
    return out


def _recorded_roots(cohort_csv: Path) -> list[Path]:
    """The roots recorded beside ``cohort_csv`` (a table written by :func:`write_good_cohort`)."""
    recorded = cohort_csv.parent / IMAGE_ROOTS_FILE
    if not recorded.is_file():
        return []
    return [Path(t.strip()) for t in recorded.read_text(encoding="utf-8").splitlines() if t.strip()]


@contextmanager
def good_cohort_csv(report: CohortReport) -> Iterator[Path]:
    """The good rows as a cohort.csv in a private temporary folder, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="pfs_cohort_") as folder:
        yield write_good_cohort(report, folder)


def read_cohort(cohort_csv: str | Path, *, require_outcome: bool = True, need_images: bool = False) -> pd.DataFrame:
    """The cohort table as one row per patient, every row checked (:func:`validate_cohort`, images not opened).

    Columns: those of :data:`pfs_core.schema.COHORT_COLUMNS` and ``OPTIONAL_COLUMNS``;
    ``pet``/``ct``/``organs`` absolute paths ("" when empty), labs as float/str (NaN = missing). Without
    ``require_outcome`` (scoring new patients) a missing ``progressed`` counts as 0
    (censored) and ``pfs_months`` may be NaN. With ``need_images`` the pet/ct columns
    are required and every row must name an image. InputError on the first bad row;
    the ``validate`` command lists them all.
    """
    report = validate_cohort(cohort_csv, check_images=need_images, require_outcome=require_outcome,
                             open_images=False)
    if report.problems:
        first = min(report.problems, key=lambda p: p.row)
        raise InputError(f"{report.source}: row {first.row} ({first.column}): {first.reason}; "
                         f"{len(report.bad_rows)} row(s) have problems: 'python -m pfs_core validate "
                         f"--cohort {report.source}' lists them all")
    frame = report.good.reset_index(drop=True)
    frame[schema.EVENT_COLUMN] = frame[schema.EVENT_COLUMN].fillna(0.0).astype(int)
    return frame
