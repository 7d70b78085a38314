"""``pfs_core explain``: the tumour-board report it writes (report.html, report.pdf) and its --case-id / --note."""

from __future__ import annotations

import argparse

import pytest

from pfs_core.commands import explain


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    explain.add_arguments(parser)
    return parser.parse_args(["--model", "m", "--out", "o", *argv])


def test_note_and_case_id_options():
    args = _args("--case-id", "TB-7", "--note", "see <MRI>")
    assert args.case_id == "TB-7" and args.note == "see <MRI>"
    assert explain._case_id(args) == "TB-7"


@pytest.mark.parametrize(("argv", "expected"), [
    (["--pet", "a/SIM0002_pet.nii.gz", "--ct", "b/ct.nii.gz"], "SIM0002_pet"),
    (["--ct", "b/SIM9_ct.nii"], "SIM9_ct"),
    (["--labs", "x/labs.json"], "labs"),
    ([], "case"),
])
def test_case_id_defaults_to_the_first_input_name(argv, expected):
    assert explain._case_id(_args(*argv)) == expected


def test_report_inputs_are_file_names_not_paths():
    args = _args("--pet", "/secret/place/pet.nii.gz", "--labs", "/secret/labs.json")
    inputs = explain._report_inputs(args, type("Pet", (), {"suv_note": "SUVbw from Bq/mL"})())
    assert inputs == {"PET": "pet.nii.gz", "labs": "labs.json", "PET SUV": "SUVbw from Bq/mL"}
    assert not any("/secret" in v for v in inputs.values())


def test_description_names_the_report_files():
    assert "report.html" in explain.DESCRIPTION and "report.pdf" in explain.DESCRIPTION
