"""Lab import (issue 25, item 5): a lab system's JSON or CSV row fills the form; the CLI reads the same row."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfs_core.commands.options import read_labs
from pfs_core.errors import InputError
from pfs_core.io.labs import lab_column, read_lab_import, validate_labs


def test_a_json_object_by_names_labels_and_units_in_model_units():
    data = json.dumps({"chromogranin_a": 250, "Albumin (g/L)": 39, "HEMOGLOBIN": "13.5", "sex": "f",
                       "primary_site": "Small bowel", "patient_id": "P1", "pfs_months": 7, "sodium": 140}).encode()
    found = read_lab_import(data, "labs.json")
    assert found.values["albumin"] == pytest.approx(3.9) and found.values["hemoglobin"] == 13.5
    assert found.values["sex"] == "F" and found.values["primary_site"] == "small_bowel"
    assert found.entered["albumin"] == (39.0, "g/L")
    assert found.ignored == ("sodium",)  # cohort-table columns (patient_id, pfs_months) skipped silently
    assert not found.needs_choice
    assert validate_labs(found.values)["albumin"] == pytest.approx(3.9)


def test_a_labs_member_and_value_unit_objects():
    data = json.dumps({"labs": {"Creatinine": {"value": 88.4, "unit": "µmol/L"}, "age": 64}}).encode()
    found = read_lab_import(data, "export.json")
    assert found.values == {"creatinine": pytest.approx(1.0), "age": 64.0}
    assert found.entered["creatinine"] == (88.4, "µmol/L")


def test_a_csv_row_with_semicolons_decimal_commas_and_windows_encoding():
    text = "patient_id;Albumin (g/L);Ki-67 index (%);AST (GOT) (U/L);Chromogranin A [ug/l];Bilirubin\nP1;39,5;12;40;80;\n"
    found = read_lab_import(text.encode("cp1252"), "row.csv")
    assert found.values == {"chromogranin_a": 80.0, "ast": 40.0, "albumin": pytest.approx(3.95), "ki67": 12.0,
                            "bilirubin": None}  # an empty cell: the field is named, its value missing
    assert found.entered["chromogranin_a"] == (80.0, "µg/L")


def test_several_rows_need_a_choice_by_patient_id():
    data = b"patient_id,albumin,age\nA,3.9,60\nB,4.1,70\n"
    found = read_lab_import(data, "cohort.csv")
    assert found.needs_choice and found.rows == ("A", "B") and found.values == {}
    chosen = read_lab_import(data, "cohort.csv", patient_id="B")
    assert chosen.values == {"albumin": 4.1, "age": 70.0} and chosen.row == "B"
    with pytest.raises(InputError, match="no row of that patient_id"):
        read_lab_import(data, "cohort.csv", patient_id="C")
    assert read_lab_import(b"albumin\n3.9\n4.1\n", "x.csv").rows == ("row 1", "row 2")


def test_header_names_and_units():
    assert lab_column("Gamma-GT") == ("gamma_gt", None)
    assert lab_column(" hemoglobin  (mmol/L) ") == ("hemoglobin", "mmol/L")
    assert lab_column("Platelets (x10^9/L)") == ("platelets", "10^9/L")
    assert lab_column("Leukocytes") == ("leukocytes", None) and lab_column("sodium") is None
    with pytest.raises(InputError, match="Albumin cannot be given in 'mmol/L'; give it in g/dL or g/L"):
        lab_column("Albumin (mmol/L)")
    with pytest.raises(InputError, match="Sex has no unit"):
        lab_column("sex (years)")


@pytest.mark.parametrize("data, name, match", [
    (b'{"albumin": 39}', "a.json", r"a.json: 1 problem\(s\): column 'albumin' \(Albumin\): outside the plausible "
                                   r"range 0.5-7 g/dL; .*e.g. 'Albumin \(g/L\)'"),
    (b"Albumin (g/L);age\n3,9;abc\n", "a.csv", r"column 'Albumin \(g/L\)' \(Albumin\): outside the plausible range "
                                               r"5-70 g/L.*column 'age' \(Age\): not a number; give it in years"),
    (b'{"sex": "unknown"}', "a.json", r"column 'sex' \(Sex\): not an allowed value; use one of F, M"),
    (b'{"albumin": 3.9, "Albumin (g/L)": 39}', "a.json", r"both give Albumin; keep one"),
    (b"[1, 2]", "a.json", r"a.json: cannot read the lab JSON \(not an object"),
    (b'{"age": 6', "a.json", r"cannot read the lab JSON \(Expecting"),
    (b"albumin\n", "a.csv", r"a.csv: the lab CSV needs a header of field names and a row of values"),
    (b"albumin,age\n3.9,60,1\n", "a.csv", r"line 2 has more cells than the header"),
])
def test_bad_input_is_one_error_naming_the_file_the_column_and_the_fix(data, name, match):
    with pytest.raises(InputError, match=match) as error:
        read_lab_import(data, name)
    assert "Traceback" not in str(error.value)


def test_a_bad_value_is_not_quoted():
    with pytest.raises(InputError) as error:
        read_lab_import(b"chromogranin_a,age\n987654321,abcdef\n", "x.csv")
    assert "987654321" not in str(error.value) and "abcdef" not in str(error.value)


def test_the_size_limit_is_the_lab_file_limit(monkeypatch):
    monkeypatch.setenv("PFS_CORE_MAX_LABS_KB", "1")
    with pytest.raises(InputError, match="big.csv: the lab file is larger than allowed, .*PFS_CORE_MAX_LABS_KB"):
        read_lab_import(b"albumin\n" + b"3.9\n" * 400, "big.csv")


def test_the_cli_reads_a_csv_row(tmp_path, capsys):
    path = tmp_path / "labs.csv"
    path.write_text("patient_id,Albumin (g/L),age,sodium\nP1,39,60,140\n")
    assert read_labs(path) == {"albumin": pytest.approx(3.9), "age": 60.0}
    assert "sodium" in capsys.readouterr().err
    path.write_text("patient_id,age\nA,60\nB,70\n")
    with pytest.raises(InputError, match="labs.csv: the lab CSV has 2 rows; keep the header and the one row"):
        read_labs(path)
    path.write_text("age\n7\n")
    with pytest.raises(InputError, match="labs.csv: 1 problem"):
        read_labs(path)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode),
                      st.dictionaries(st.sampled_from(["albumin", "Albumin (g/L)", "sex", "age", "x", "labs"]),
                                      st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=8)),
                                      max_size=4).map(lambda d: json.dumps(d).encode())),
       name=st.sampled_from(["labs.json", "labs.csv", "labs.txt"]))
def test_any_bytes_give_an_import_or_one_input_error_naming_the_file(data, name):
    try:
        found = read_lab_import(data, name)
    except InputError as error:
        assert str(error).startswith(name)
        return
    assert found.needs_choice or validate_labs(found.values) is not None
