"""cohort_check: every bad row reported by spreadsheet row number; good rows go on; validate and score commands."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pfs_core.cli import main
from pfs_core.errors import InputError
from pfs_core.inference import score_cohort
from pfs_core.io import load_pet
from pfs_core.io.cohort import PAIR_COLUMN, good_cohort_csv, validate_cohort, write_good_cohort

N = 12


def write_light_cohort(folder: Path, n: int, *, seed: int = 0, shape: tuple[int, int, int] = (24, 20, 24)) -> Path:
    """cohort.csv + small NIfTI PET (SUV) / CT (HU) pairs with plausible labs (no torch needed)."""
    import nibabel as nib
    import numpy as np

    from pfs_core import schema

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    affine = np.diag([9.0, 9.0, 9.0, 1.0])
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    body = (grid**2).sum(axis=0) < 0.8
    rows = []
    for i in range(n):
        pid = f"P{i:03d}"
        ct = np.where(body, 40.0, -1000.0) + rng.normal(0, 10, shape)
        pet = np.where(body, 1.0, 0.05) + rng.uniform(0, 0.2, shape)
        nib.save(nib.Nifti1Image(ct.astype(np.float32), affine), folder / "images" / f"{pid}_ct.nii.gz")
        nib.save(nib.Nifti1Image(pet.astype(np.float32), affine), folder / "images" / f"{pid}_pet.nii.gz")
        row = {"patient_id": pid, "pet": f"images/{pid}_pet.nii.gz", "ct": f"images/{pid}_ct.nii.gz"}
        for feature in schema.NUMERIC_FEATURES:
            low, high = feature.reference or (feature.plausible[0] + 1, min(feature.plausible[1], 80.0))
            row[feature.name] = round(float(rng.uniform(low, high)), 3)
        row |= {"sex": "FM"[i % 2], "primary_site": "pancreas", "pfs_months": 6.0 + 3 * i, "progressed": i % 2}
        rows.append(row)
    pd.DataFrame(rows)[list(schema.COHORT_COLUMNS)].to_csv(folder / "cohort.csv", index=False)
    return folder / "cohort.csv"


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    return write_light_cohort(tmp_path_factory.mktemp("cohort"), N).parent


@pytest.fixture(autouse=True)
def _images_allowed(cohort_dir, monkeypatch):
    """The edited copies link ``images`` to the shared cohort's folder: allow that folder
    (paths are checked after links are resolved)."""
    monkeypatch.setenv("PFS_CORE_DATA_ROOTS", str(cohort_dir.resolve()))


def _edited(cohort_dir: Path, tmp_path: Path, edit) -> Path:
    """A copy of cohort.csv (same image folder) with ``edit(frame)`` applied; cells as text."""
    frame = pd.read_csv(cohort_dir / "cohort.csv", dtype=str, keep_default_na=False)
    edit(frame)
    out = tmp_path / "edited.csv"
    frame.to_csv(out, index=False)
    (tmp_path / "images").symlink_to(cohort_dir / "images")
    return out


def _two_bad_rows(frame: pd.DataFrame) -> None:
    frame.loc[1, "pet"] = "images/missing_pet.nii.gz"  # spreadsheet row 3
    frame.loc[4, "chromogranin_a"] = "123456789"  # row 6: above the plausible 1e6 ng/mL


def test_two_bad_rows_are_reported_by_spreadsheet_row_and_the_rest_go_on(cohort_dir, tmp_path):
    report = validate_cohort(_edited(cohort_dir, tmp_path, _two_bad_rows))
    assert report.bad_rows == [3, 6]
    by_row = {p.row: p for p in report.problems}
    assert by_row[3].column == "pet" and "not found" in by_row[3].reason and by_row[3].patient_id == "P001"
    assert by_row[6].column == "chromogranin_a" and "plausible range" in by_row[6].reason
    assert "123456789" not in by_row[6].reason  # reasons never quote patient values
    assert report.n_good == N - 2 and report.n_rows == N
    assert list(report.good.index) == [r for r in range(2, N + 2) if r not in (3, 6)]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in report.good["pet"])


def test_every_kind_of_row_problem(cohort_dir, tmp_path):
    def edit(frame: pd.DataFrame) -> None:
        frame.loc[0, "gamma_gt"] = "high"  # row 2: not a number
        frame.loc[1, "pfs_months"] = "-3"  # row 3
        frame.loc[2, "progressed"] = "2"  # row 4
        frame.loc[3, "patient_id"] = "P005"  # rows 5 and 7 share an id
        frame.loc[6, "patient_id"] = ""  # row 8
        frame.loc[7, "sex"] = "X"  # row 9
        frame.loc[8, ["pet", "ct"]] = ""  # row 10: no image at all
        frame.loc[10, "pfs_months"] = ""  # row 12: outcome missing

    garbage = tmp_path / "garbage_pet.nii.gz"
    garbage.write_bytes(b"this is not a NIfTI file")

    def edit_and_break_an_image(frame: pd.DataFrame) -> None:
        edit(frame)
        frame.loc[9, "pet"] = str(garbage)  # row 11: unreadable (absolute paths are kept as they are)

    csv_path = _edited(cohort_dir, tmp_path, edit_and_break_an_image)
    report = validate_cohort(csv_path)
    columns = {(p.row, p.column) for p in report.problems}
    assert {(2, "gamma_gt"), (3, "pfs_months"), (4, "progressed"), (5, "patient_id"), (7, "patient_id"),
            (8, "patient_id"), (9, "sex"), (10, PAIR_COLUMN), (11, "pet"), (12, "pfs_months")} <= columns
    assert report.bad_rows == [2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
    assert list(report.good.index) == [6, 13]
    with pytest.raises(InputError) as loader_error:
        load_pet(garbage)
    assert next(p.reason for p in report.problems if p.row == 11) == str(loader_error.value)


def test_unreadable_image_reason_is_the_loader_message(cohort_dir, tmp_path):
    empty = tmp_path / "empty_pet.nii.gz"
    empty.write_bytes(b"")

    def edit(frame: pd.DataFrame) -> None:
        frame.loc[0, "pet"] = str(empty)

    csv_path = _edited(cohort_dir, tmp_path, edit)
    report = validate_cohort(csv_path)
    with pytest.raises(InputError) as exc:
        load_pet(empty)
    assert [(p.row, p.column, p.reason) for p in report.problems] == [(2, "pet", str(exc.value))]


def test_row_with_wrong_cell_count_and_blank_lines(cohort_dir, tmp_path):
    lines = (cohort_dir / "cohort.csv").read_text().splitlines()
    lines.insert(2, "")  # a blank line is row 3 in a spreadsheet, not a patient
    lines[3] = lines[3] + ",extra"  # row 4
    (tmp_path / "images").symlink_to(cohort_dir / "images")
    csv_path = tmp_path / "cells.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    report = validate_cohort(csv_path, check_images=False)
    assert [(p.row, p.column) for p in report.problems] == [(4, "row")]
    assert report.n_rows == N and report.n_good == N - 1


@pytest.mark.parametrize("drop, named", [(["pet"], "pet"), (["pfs_months", "progressed"], "pfs_months, progressed")])
def test_missing_required_columns_is_a_file_error(cohort_dir, tmp_path, drop, named):
    frame = pd.read_csv(cohort_dir / "cohort.csv").drop(columns=drop)
    frame.to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(InputError, match=f"missing required column\\(s\\) {named}"):
        validate_cohort(tmp_path / "c.csv")


def test_unusable_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        validate_cohort(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty file"):
        validate_cohort(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("patient_id,pet,ct,pfs_months,progressed\n")
    with pytest.raises(InputError, match="no patient rows"):
        validate_cohort(tmp_path / "header.csv")


def test_scoring_mode_and_image_root(cohort_dir, tmp_path):
    frame = pd.read_csv(cohort_dir / "cohort.csv").drop(columns=["pfs_months", "progressed"])
    frame.to_csv(tmp_path / "new.csv", index=False)  # no images next to it: paths read from image_root
    with pytest.raises(InputError, match="missing required column.s. pfs_months, progressed"):
        validate_cohort(tmp_path / "new.csv")
    report = validate_cohort(tmp_path / "new.csv", require_outcome=False, image_root=cohort_dir)
    assert report.all_good and report.n_good == N and not report.warnings
    assert report.good["progressed"].isna().all()


def test_good_rows_written_for_the_commands(cohort_dir, tmp_path):
    from pfs_core.io.cohort import read_cohort
    from pfs_core.models.provenance import is_simulated

    csv_path = _edited(cohort_dir, tmp_path, _two_bad_rows)
    (tmp_path / "ground_truth.csv").write_text("patient_id,p_short_pfs_true\nP000,0.3\nP001,0.6\n")
    report = validate_cohort(csv_path)
    out = write_good_cohort(report, tmp_path / "good")
    table = read_cohort(out)
    assert list(table["patient_id"]) == list(report.good["patient_id"])
    assert table["progressed"].isin([0, 1]).all()
    assert is_simulated(out)  # the simulator's marker follows the good rows (P001 is row 3, left out)
    assert list(pd.read_csv(tmp_path / "good" / "ground_truth.csv")["patient_id"]) == ["P000"]
    with good_cohort_csv(report) as path:
        assert path.is_file()
    assert not path.exists()


def test_read_cohort_refuses_a_bad_row_naming_it(cohort_dir, tmp_path):
    from pfs_core.io.cohort import read_cohort

    def implausible(frame: pd.DataFrame) -> None:
        frame.loc[4, "chromogranin_a"] = "123456789"  # spreadsheet row 6

    with pytest.raises(InputError, match=r"row 6 \(chromogranin_a\): outside the plausible range.*pfs_core validate"):
        read_cohort(_edited(cohort_dir, tmp_path, implausible))
    table = read_cohort(cohort_dir / "cohort.csv", need_images=True)  # the unedited table reads
    assert len(table) == N and all(Path(p).is_absolute() for p in table["pet"])


def test_validate_command_exit_codes(cohort_dir, tmp_path, capsys):
    assert main(["validate", "--cohort", str(cohort_dir / "cohort.csv"), "--no-progress"]) == 0
    bad = _edited(cohort_dir, tmp_path, _two_bad_rows)
    capsys.readouterr()
    assert main(["validate", "--cohort", str(bad), "--no-progress", "--problems-csv", str(tmp_path / "p.csv")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("row 3 (patient P001) pet: ") and out[2].startswith("row 6 (patient P004) chromogranin_a")
    assert list(pd.read_csv(tmp_path / "p.csv")["row"]) == [3, 6]
    assert main(["validate", "--cohort", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.fixture(scope="module")
def image_bundle(tiny_bundle):
    """The session's tiny lab+PET fusion bundle (1 epoch at 16³ voxels; tests/conftest.py)."""
    from pfs_core.models.bundle import load_bundle

    return load_bundle(tiny_bundle("lab_pet"))


@pytest.mark.slow
def test_score_skips_two_bad_rows_and_scores_the_rest(cohort_dir, tmp_path, image_bundle):
    result = score_cohort(image_bundle, _edited(cohort_dir, tmp_path, _two_bad_rows), cache_dir=tmp_path / "cache")
    assert result.report.bad_rows == [3, 6]
    assert len(result.scores) == N - 2
    assert set(result.scores["patient_id"]) == set(result.report.good["patient_id"])
    assert list(result.scores["row"]) == list(result.report.good.index)
    assert result.scores["probability"].between(0, 1).all()
