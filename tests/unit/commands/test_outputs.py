"""Outputs never destroy data (issue 24): targets checked before the work, atomic files, marked folders that
``--force`` may replace, formula-safe CSV cells, and one ``error:`` line for environment problems."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfs_core import cli
from pfs_core.cli import main
from pfs_core.errors import UsageError
from pfs_core.io import outputs
from pfs_core.io.outputs import (
    MARKER,
    atomic_write,
    atomic_write_text,
    check_output_folder,
    csv_safe,
    prepare_output_folder,
)

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "cohort.csv"
INJECTIONS = ['=HYPERLINK("http://evil","x")', "+1+1", "@SUM(A1)", "-2+3", "\t=1+1", "\r=1"]


def one_error_line(capsys, fragment: str) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], captured.err
    return lines[0]


@pytest.fixture
def labs_cohort(tmp_path):
    """The sample cohort's labs (no image columns) with formula-like patient ids."""
    table = pd.read_csv(SAMPLE, dtype=str).drop(columns=["pet", "ct", "organs"])
    table.loc[: len(INJECTIONS[:4]) - 1, "patient_id"] = INJECTIONS[:4]
    path = tmp_path / "cohort.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture
def rf(tiny_bundle):
    return tiny_bundle("lab_rf")


# ----------------------------------------------------------------------------- csv_safe


def test_csv_safe_neutralises_text_cells_and_keeps_numbers():
    frame = pd.DataFrame({"patient_id": INJECTIONS + ["SIM1", "a-b"], "value": np.arange(8) - 3.5,
                          "n": np.arange(8) - 4})
    safe = csv_safe(frame)
    assert list(safe["patient_id"]) == ["'" + v for v in INJECTIONS] + ["SIM1", "a-b"]
    assert safe["value"].dtype == float and safe["value"].iloc[0] == -3.5  # a negative number is not text
    assert safe["n"].dtype == frame["n"].dtype and (safe["n"] == frame["n"]).all()
    assert frame["patient_id"].iloc[0] == INJECTIONS[0]  # the caller's frame is unchanged
    assert csv_safe("=1") == "'=1" and csv_safe(-1.0) == -1.0 and csv_safe(None) is None


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=12))
def test_no_text_cell_starts_a_formula(text):
    cell = csv_safe(pd.DataFrame({"t": [text]}))["t"].iloc[0]
    assert not cell.startswith(outputs.FORMULA_PREFIXES)
    assert cell in (text, "'" + text)


def test_score_writes_formula_ids_neutralised(labs_cohort, rf, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert main(["score", "--cohort", str(labs_cohort), "--model", str(rf), "--out", str(out), "--no-cache"]) == 0
    ids = list(pd.read_csv(out, dtype={"patient_id": str})["patient_id"])
    assert ids[:4] == ["'" + v for v in INJECTIONS[:4]]
    assert pd.read_csv(out)["probability"].dtype == float


def test_scoring_keeps_formula_ids_as_given_and_their_row_numbers(labs_cohort, rf):
    """Only the written CSV is escaped: the table scored is read back unescaped, so ids and rows still match."""
    from pfs_core.inference import score_cohort
    from pfs_core.models.bundle import load_bundle

    result = score_cohort(load_bundle(rf), labs_cohort)
    assert list(result.scores["patient_id"])[:4] == INJECTIONS[:4]
    assert list(result.scores["row"]) == list(result.report.good.index)


# ----------------------------------------------------------------------------- outputs that are inputs


def test_score_refuses_its_cohort_as_out_before_any_work(labs_cohort, rf, capsys):
    before = labs_cohort.read_bytes()
    assert main(["score", "--cohort", str(labs_cohort), "--model", str(rf), "--out", str(labs_cohort)]) == 2
    one_error_line(capsys, "is the input")
    assert labs_cohort.read_bytes() == before


def test_score_refuses_the_same_file_by_another_name(labs_cohort, rf, tmp_path, capsys):
    link = tmp_path / "link.csv"
    os.link(labs_cohort, link)  # a hard link: the same file under another name
    assert main(["score", "--cohort", str(labs_cohort), "--model", str(rf), "--out", str(link)]) == 2
    one_error_line(capsys, "is the input")


def test_score_refuses_a_bundle_file_and_an_image_of_the_cohort(rf, tmp_path, capsys):
    oof = rf / "training_oof.csv"
    before = oof.read_bytes()
    assert main(["score", "--cohort", str(SAMPLE), "--model", str(rf), "--out", str(oof)]) == 2
    one_error_line(capsys, "is the input")
    assert oof.read_bytes() == before
    image = SAMPLE.parent / "images" / "SIM0001_pet.nii.gz"
    assert main(["score", "--cohort", str(SAMPLE), "--model", str(rf), "--out", str(image)]) == 2
    one_error_line(capsys, "is the input")


def test_predict_refuses_its_labs_as_json(rf, tmp_path, capsys):
    labs = tmp_path / "labs.json"
    labs.write_text('{"chromogranin_a": 120}')
    assert main(["predict", "--model", str(rf), "--labs", str(labs), "--json", str(labs)]) == 2
    one_error_line(capsys, "--json")
    assert labs.read_text() == '{"chromogranin_a": 120}'


# ----------------------------------------------------------------------------- wrong kinds of targets, before the work


def test_score_out_a_folder_fails_before_scoring(labs_cohort, rf, tmp_path, capsys, monkeypatch):
    import pfs_core.inference

    monkeypatch.setattr(pfs_core.inference, "score_cohort", _never)
    assert main(["score", "--cohort", str(labs_cohort), "--model", str(rf), "--out", str(tmp_path)]) == 2
    one_error_line(capsys, "is a folder, not a file")


def test_score_cache_dir_a_file_fails_before_scoring(labs_cohort, rf, tmp_path, capsys, monkeypatch):
    import pfs_core.inference

    monkeypatch.setattr(pfs_core.inference, "score_cohort", _never)
    blocker = tmp_path / "cache"
    blocker.write_text("x")
    assert main(["score", "--cohort", str(labs_cohort), "--model", str(rf), "--out", str(tmp_path / "s.csv"),
                 "--cache-dir", str(blocker)]) == 2
    one_error_line(capsys, "--cache-dir")


def test_predict_json_a_folder_fails_before_predicting(rf, tmp_path, capsys, monkeypatch):
    import pfs_core.inference

    monkeypatch.setattr(pfs_core.inference, "predict_case", _never)
    assert main(["predict", "--model", str(rf), "--json", str(tmp_path)]) == 2
    one_error_line(capsys, "--json")


def test_unwritable_out_is_refused(labs_cohort, rf, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(outputs.os, "access", lambda *a, **k: False)  # as a non-root user on a read-only folder
    assert main(["score", "--cohort", str(labs_cohort), "--model", str(rf), "--out", str(tmp_path / "s.csv")]) == 2
    one_error_line(capsys, "permission denied")


@pytest.mark.parametrize("command", ["measure", "explain"])
def test_folder_outputs_that_are_files_fail_before_the_work(command, rf, tmp_path, capsys):
    blocker = tmp_path / "out"
    blocker.write_text("precious")
    pet = SAMPLE.parent / "images" / "SIM0001_pet.nii.gz"
    ct = SAMPLE.parent / "images" / "SIM0001_ct.nii.gz"
    extra = ["--model", str(rf)] if command == "explain" else []
    assert main([command, *extra, "--pet", str(pet), "--ct", str(ct), "--out", str(blocker)]) == 2
    one_error_line(capsys, "is a file, not a folder")
    assert blocker.read_text() == "precious"


def test_progress_file_a_folder_is_refused(labs_cohort, tmp_path, capsys):
    assert main(["train", "--cohort", str(labs_cohort), "--model", "lab_rf", "--out", str(tmp_path / "b"),
                 "--progress-file", str(tmp_path)]) == 2
    one_error_line(capsys, "--progress-file")
    assert not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------- folders and --force


def test_benchmark_refuses_a_non_empty_folder_without_force(labs_cohort, tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "results.json").write_text('{"metrics": {}}')
    assert main(["benchmark", "--cohort", str(labs_cohort), "--models", "lab_rf", "--out", str(results)]) == 2
    one_error_line(capsys, "add --force")
    assert (results / "results.json").read_text() == '{"metrics": {}}'


def test_benchmark_force_refuses_a_folder_with_files_it_did_not_write(labs_cohort, tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "results.json").write_text('{"metrics": {}}')
    (results / "thesis.docx").write_text("years of work")
    assert main(["benchmark", "--cohort", str(labs_cohort), "--models", "lab_rf", "--out", str(results),
                 "--force"]) == 2
    line = one_error_line(capsys, "did not write (thesis.docx)")
    assert str(results) in line
    assert (results / "thesis.docx").read_text() == "years of work"


def test_force_refuses_a_folder_that_no_command_wrote(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="not a folder that 'pfs_core benchmark' wrote"):
        check_output_folder(folder, command="benchmark", force=True)


def test_force_refuses_another_commands_folder(tmp_path):
    folder = prepare_output_folder(tmp_path / "m", command="measure", force=False)
    (folder / "lesions.csv").write_text("x")
    with pytest.raises(UsageError, match="written by 'pfs_core measure', not 'explain'"):
        check_output_folder(folder, command="explain", force=True)


@pytest.mark.parametrize("where", ["root", "home", "cwd", "parent of cwd"])
def test_force_never_replaces_root_home_or_the_working_folder(where, tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for folder in (work, home):
        (folder / MARKER).write_text(json.dumps({"product": "pfs_core", "command": "train"}))
    target = {"root": Path("/"), "home": home, "cwd": work, "parent of cwd": tmp_path / "a"}[where]
    with pytest.raises(UsageError, match="refusing to replace this folder"):
        check_output_folder(target, command="train", force=True)


def test_force_replaces_a_marked_folder_and_only_its_files(tmp_path):
    folder = prepare_output_folder(tmp_path / "x", command="explain", force=False)
    assert json.loads((folder / MARKER).read_text())["command"] == "explain"
    (folder / "explanation.json").write_text("{}")
    (folder / "gradcam_pet.nii.gz").write_bytes(b"old")
    prepare_output_folder(folder, command="explain", force=True)
    assert sorted(p.name for p in folder.iterdir()) == [MARKER]


@pytest.mark.parametrize(("command", "legacy", "text"), [
    ("train", "manifest.json", '{"format": "pfs_core-bundle", "files": {}}'),
    ("benchmark", "results.json", '{"metrics": {}}'),
])
def test_shipped_folders_without_a_marker_are_recognised(command, legacy, text, tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / legacy).write_text(text)
    check_output_folder(folder, command=command, force=True)  # no error: --force may replace it


def test_shipped_bundles_and_results_are_recognised():
    root = Path(__file__).resolve().parents[3]
    assert outputs.written_by(root / "models" / "lab_rf") == "train"
    assert outputs.written_by(root / "results" / "sim116") == "benchmark"


def test_an_input_inside_the_output_folder_is_refused(tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "pet.nii.gz").write_bytes(b"x")
    with pytest.raises(UsageError, match="holds the input"):
        check_output_folder(folder, command="measure", force=True, inputs=[folder / "pet.nii.gz"])


# ----------------------------------------------------------------------------- atomic writes


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("good old content")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(OSError):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "good old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_the_temporary_file_keeps_the_suffixes(tmp_path):
    seen = []
    atomic_write(tmp_path / "map.nii.gz", lambda tmp: (seen.append(tmp.name), tmp.write_bytes(b"x")))
    assert seen[0].endswith(".nii.gz") and seen[0].startswith(".")


# ----------------------------------------------------------------------------- one error path


@pytest.mark.parametrize("device", ["banana", "cuda:7"])
def test_a_bad_device_is_one_error_line_before_any_work(device, rf, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["predict", "--model", str(rf), "--device", device]) == 2
    one_error_line(capsys, f"--device {device}")


@pytest.mark.parametrize(("exc", "fragment"), [
    (OSError(errno.ENOSPC, "No space left on device", "scores.csv"),
     "disk full (scores.csv): No space left on device; free some space"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/x.csv"), "permission denied (/data/x.csv)"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "x" * 300), "path too long"),
    (ValueError("embedded null byte"), "NUL byte"),
    (MemoryError(), "out of memory"),
])
def test_environment_problems_are_one_error_line(exc, fragment, capsys, monkeypatch):
    import pfs_core.commands.validate as validate

    def fail(args):
        raise exc

    monkeypatch.setattr(validate, "run", fail)
    assert main(["validate", "--cohort", "x.csv"]) == 2
    one_error_line(capsys, fragment)


def test_a_real_nul_byte_and_a_long_path_are_one_error_line(rf, tmp_path, capsys):
    assert main(["score", "--cohort", str(SAMPLE), "--model", str(rf), "--out", "o\x00.csv"]) == 2
    one_error_line(capsys, "NUL byte")
    assert main(["score", "--cohort", str(SAMPLE), "--model", str(rf),
                 "--out", str(tmp_path / ("y" * 300) / "o.csv")]) == 2
    one_error_line(capsys, "path too long")


def test_a_genuine_bug_keeps_its_traceback(monkeypatch):
    import pfs_core.commands.validate as validate

    def bug(args):
        raise KeyError("bug")

    monkeypatch.setattr(validate, "run", bug)
    with pytest.raises(KeyError):
        main(["validate", "--cohort", "x.csv"])
    assert cli.environment_message(ValueError("could not convert")) is None


def _never(*args, **kwargs):
    raise AssertionError("the work started before the outputs were checked")
