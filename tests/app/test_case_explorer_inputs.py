"""Case Explorer: a result always belongs to its inputs (issue 24, item 8).

A changed case or lab hides the earlier result; a PNG given as the PET is named and refused; every lab
problem is listed at once with its on-screen label; a prediction from very little input says so; an
unexpected error is a message with an id, its traceback only in the log.
"""

import io
import json
import logging
import tomllib
from pathlib import Path

import pytest
import streamlit as st
from case_pages import open_case_page, press_predict
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PROBABILITY = "P(PFS ≤ 12 months)"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


class FakeUpload(io.BytesIO):
    """What the uploader hands back (AppTest cannot upload files)."""

    def __init__(self, name: str, data: bytes) -> None:
        super().__init__(data)
        self.name = name
        self.size = len(data)


def _page(app_path: str) -> AppTest:
    return open_case_page(app_path, timeout_s=180)


def _predict(at: AppTest) -> AppTest:
    return press_predict(at)


def _shows_probability(at: AppTest) -> bool:
    return any(m.label == PROBABILITY for m in at.metric)


def _uploads(monkeypatch, uploads: dict[str, FakeUpload]) -> None:
    from streamlit.delta_generator import DeltaGenerator

    monkeypatch.setattr(DeltaGenerator, "file_uploader", lambda self, *a, key=None, **k: uploads.get(key))
    monkeypatch.setattr(st, "file_uploader", lambda *a, key=None, **k: uploads.get(key))  # bound at import


def test_result_names_its_case_and_model_and_hides_when_the_case_changes(app_path):
    at = _predict(_page(app_path))
    first = at.selectbox(key="sample_id").value
    assert _shows_probability(at)
    assert any(first in h.value for h in at.subheader), [h.value for h in at.subheader]
    model = at.session_state["case_result"].explanation.prediction.model_name
    assert any(model in c.value for c in at.caption)
    assert first == "SIM0001"  # no ALT in sample_data: shown as imputed, with no SHAP bar of its own
    assert any(c.value.startswith("Not measured, imputed") and "ALT (GPT)" in c.value for c in at.caption)
    shap_bars = next(c for c in at.get("plotly_chart") if "laboratory" in c.proto.spec)
    assert "ALT" not in shap_bars.proto.spec
    other = next(o for o in at.selectbox(key="sample_id").options if o != first)
    at.selectbox(key="sample_id").set_value(other).run()
    assert not at.exception
    assert not _shows_probability(at), "the previous case's probability is still shown"
    assert not at.get("download_button") and not at.get("plotly_chart")
    stale = [w.value for w in at.warning if "Inputs changed" in w.value]
    assert stale and first in stale[0] and "press Predict again" in stale[0]
    at.selectbox(key="sample_id").set_value(first).run()  # its own inputs again: its own result again
    assert _shows_probability(at)


def test_a_changed_lab_marks_the_result_out_of_date(app_path):
    at = _predict(_page(app_path))
    sample = at.selectbox(key="sample_id").value
    assert _shows_probability(at)
    at.number_input(key=f"lab_{sample}_chromogranin_a").set_value(12.0).run()
    assert not _shows_probability(at)
    assert any("Inputs changed" in w.value for w in at.warning)
    at = _predict(at)
    assert _shows_probability(at) and at.session_state["case_result"].labs["chromogranin_a"] == 12.0


def test_every_lab_problem_at_once_with_labels_and_units(app_path):
    at = _page(app_path)
    sample = at.selectbox(key="sample_id").value
    bad = {"chromogranin_a": -5.0, "gamma_gt": -1.0, "ast": 9000.0, "albumin": 70.0, "hemoglobin": -2.0}
    for name, value in bad.items():
        at.number_input(key=f"lab_{sample}_{name}").set_value(value)
    at.run()
    boxes = [e.value for e in at.error if "lab value" in e.value]
    assert len(boxes) == 1, [e.value for e in at.error]
    text = boxes[0]
    for label in ("Chromogranin A (ng/mL)", "Gamma-GT (U/L)", "AST (GOT) (U/L)", "Albumin (g/dL)",
                  "Hemoglobin (g/dL)"):
        assert label in text, label
    assert "5 lab values" in text and "negative" in text and "plausible range" in text
    for internal in bad:
        assert internal not in text  # on-screen labels, not column names
    for value in ("9000", "70", "-5"):
        assert value not in text  # never the value itself
    at = _predict(at)
    assert not _shows_probability(at)
    assert any("Not predicted" in e.value for e in at.error)


def test_a_png_as_the_pet_is_named_and_not_predicted(app_path, monkeypatch):
    ct = (ROOT / "sample_data" / "images" / "SIM0001_ct.nii.gz").read_bytes()
    _uploads(monkeypatch, {"pet_up": FakeUpload("scan.png", PNG), "ct_up": FakeUpload("ct.nii.gz", ct)})
    at = _page(app_path)
    at.radio(key="source").set_value("Upload PET/CT").run()
    named = [e.value for e in at.error if "scan.png" in e.value]
    assert named and named[0].startswith("PET: scan.png is not") and "PNG image" in named[0], named
    at = _predict(at)
    assert not _shows_probability(at), "answered without the rejected PET"
    assert at.session_state["case_result"] is None


def test_a_nifti_named_file_that_is_not_one_is_named(app_path, monkeypatch):
    _uploads(monkeypatch, {"pet_up": FakeUpload("pet.nii.gz", b"not gzip"), "ct_up": FakeUpload("ct.nii", b"x" * 400)})
    at = _page(app_path)
    at.radio(key="source").set_value("Upload PET/CT").run()
    text = " ".join(e.value for e in at.error)
    assert "PET: pet.nii.gz" in text and "not gzip-compressed" in text
    assert "CT: ct.nii" in text and "NIfTI header" in text


def test_very_little_input_is_said_on_the_page(app_path):
    at = _page(app_path)
    lab_only = next(p for p in at.selectbox(key="bundle").options if Path(str(p)).name == "lab_rf")
    at.selectbox(key="bundle").set_value(Path(lab_only)).run()
    at.radio(key="source").set_value("Upload PET/CT").run()  # no files, no lab values: the model's medians only
    at = _predict(at)
    assert _shows_probability(at)
    assert any(w.value.startswith("very little input") for w in at.warning), [w.value for w in at.warning]


def test_an_unexpected_error_is_a_message_with_an_id_and_the_traceback_only_in_the_log(app_path, monkeypatch,
                                                                                    caplog):
    import pfs_core.explain

    value, row = 123.75, 42  # as a patient's value would be: not in the code line the traceback quotes

    def broken(*args, **kwargs):
        raise RuntimeError(f"boom at {value} in row {row}")

    monkeypatch.setattr(pfs_core.explain, "explain_case", broken)
    at = _page(app_path)
    with caplog.at_level(logging.ERROR, logger="pfs_ui"):
        at = _predict(at)
    assert not at.exception
    boxes = [e.value for e in at.error if "error id" in e.value]
    assert len(boxes) == 1 and "Traceback" not in boxes[0] and "boom" not in boxes[0]
    error_id = boxes[0].split("error id ")[1][:8]
    logged = [r.getMessage() for r in caplog.records if error_id in r.getMessage()]
    assert len(logged) == 1 and "Traceback" in logged[0] and "RuntimeError" in logged[0]
    assert "123.75" not in logged[0] and "RuntimeError: boom at # in row #" in logged[0]
    assert not _shows_probability(at)


def test_the_browser_gets_no_error_details():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


@pytest.mark.parametrize(("name", "data", "ok"), [
    ("a.nii.gz", b"\x1f\x8b" + bytes(10), True), ("a.zip", b"PK\x03\x04" + bytes(10), True),
    ("a.nii", (348).to_bytes(4, "little") + bytes(400), True), ("a.png", PNG, False), ("a.nii.gz", b"", False),
    ("a.dcm", bytes(128) + b"DICM" + bytes(10), False), ("notes.txt", b"hello", False),
])
def test_upload_problem(name, data, ok):
    from pfs_ui.case_view import upload_problem

    problem = upload_problem("PET", FakeUpload(name, data))
    assert (problem is None) == ok, problem
    if problem:
        assert problem.startswith(f"PET: {name} is not")


def test_an_organ_mask_file_of_another_kind_is_named(app_path, monkeypatch):
    from streamlit.delta_generator import DeltaGenerator

    uploads = {"organ_up": [FakeUpload("organs.png", PNG)]}
    monkeypatch.setattr(DeltaGenerator, "file_uploader", lambda self, *a, key=None, **k: uploads.get(key))
    at = _page(app_path)
    at.radio(key="source").set_value("Upload PET/CT").run()
    assert any(e.value.startswith("Organ masks: organs.png is not") for e in at.error), [e.value for e in at.error]
    at = _predict(at)
    assert not _shows_probability(at)


def test_a_file_the_loader_refuses_is_named_at_predict(app_path, monkeypatch):
    import gzip

    ct = (ROOT / "sample_data" / "images" / "SIM0001_ct.nii.gz").read_bytes()
    junk = FakeUpload("pet.nii.gz", gzip.compress(b"not a NIfTI header " * 40))  # passes the first check
    _uploads(monkeypatch, {"pet_up": junk, "ct_up": FakeUpload("ct.nii.gz", ct)})
    at = _page(app_path)
    at.radio(key="source").set_value("Upload PET/CT").run()
    assert not at.error
    at = _predict(at)
    assert any("pet.nii.gz" in e.value for e in at.error), [e.value for e in at.error]
    assert not any("pfs_upload_" in e.value for e in at.error)  # the user's file name, not the temporary folder
    assert not _shows_probability(at)


# --- Input that fits clinical habits (issue 25, item 5): lab import, a reload keeps the case --------------

def _one_browser(monkeypatch, browser: str = "browser-a"):
    """A fresh in-memory store and a fixed browser key (AppTest sends no cookies, so no XSRF token)."""
    from pfs_ui import persist

    store = persist.InputStore()
    monkeypatch.setattr(persist, "STORE", store)
    monkeypatch.setattr(persist, "browser_key", lambda: browser)
    return store


def test_a_lab_import_fills_the_fields_which_stay_editable(app_path, monkeypatch):
    export = json.dumps({"patient_id": "P7", "Albumin (g/L)": 39, "Chromogranin A": 250, "sex": "m",
                         "sodium": 140}).encode()
    _uploads(monkeypatch, {"lab_import": FakeUpload("labs.json", export)})
    at = _page(app_path)
    sample = at.selectbox(key="sample_id").value
    assert at.number_input(key=f"lab_{sample}_albumin").value == 39.0
    assert at.selectbox(key=f"lab_{sample}_albumin_unit").value == "g/L"
    assert at.number_input(key=f"lab_{sample}_chromogranin_a").value == 250.0
    assert at.selectbox(key=f"lab_{sample}_sex").value == "M"
    note = next(c.value for c in at.caption if c.value.startswith("Imported from labs.json"))
    assert "Albumin" in note and "Ignored column(s), no lab field: sodium" in note and "patient_id" not in note
    assert "Not in the file, left as they were: Gamma-GT" in note and "gamma_gt" not in note
    at.number_input(key=f"lab_{sample}_albumin").set_value(41.0).run()  # editable: the import is not put back
    assert at.number_input(key=f"lab_{sample}_albumin").value == 41.0
    assert not [e.value for e in at.error]


def test_a_bad_lab_import_is_one_error_naming_the_column(app_path, monkeypatch):
    _uploads(monkeypatch, {"lab_import": FakeUpload("labs.csv", b"Albumin (mmol/L);age\n3;60\n")})
    at = _page(app_path)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "column 'Albumin (mmol/L)'" in errors[0] and "give it in g/dL or g/L" in errors[0]


def test_a_reload_restores_the_case_and_clear_case_forgets_it(app_path, monkeypatch):
    store = _one_browser(monkeypatch)
    uploads = {"pet_up": FakeUpload("pet.nii.gz", b"\x1f\x8b" + bytes(100))}
    _uploads(monkeypatch, uploads)
    at = _page(app_path)
    at.radio(key="source").set_value("Upload PET/CT").run()
    at.number_input(key="lab_upload_albumin").set_value(4.2)
    at.selectbox(key="lab_upload_sex").set_value("F")
    at.number_input(key="weight").set_value(70.0).run()
    assert store.get("browser-a").files["pet"][0].name == "pet.nii.gz"

    uploads.clear()  # a reload: a new session, the uploaders empty
    at = _page(app_path)
    assert at.radio(key="source").value == "Upload PET/CT"
    assert at.number_input(key="lab_upload_albumin").value == 4.2
    assert at.selectbox(key="lab_upload_sex").value == "F" and at.number_input(key="weight").value == 70.0
    restored = [i.value for i in at.info if i.value.startswith("Restored from this browser session")]
    assert restored and "PET pet.nii.gz" in restored[0]

    assert not any("Session State API" in w.value for w in at.warning)

    at.button(key="clear_case").click().run()
    assert not at.exception
    kept = store.get("browser-a")  # the emptied page is kept again, without files or labs
    assert kept is not None and not kept.files and not any(k.startswith("lab_upload_") for k in kept.fields)
    assert at.radio(key="source").value == "Sample case"
    assert not any(i.value.startswith("Restored") for i in at.info)
