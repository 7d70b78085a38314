"""Case Explorer page: sample case → results; bad upload → error box; missing lab → imputation note."""

import io

import pytest
from case_pages import open_case_page, press_predict
from streamlit.testing.v1 import AppTest


def _page(app_path: str) -> AppTest:
    return open_case_page(app_path, timeout_s=120)


def _predict(at: AppTest) -> AppTest:
    return press_predict(at)


@pytest.mark.slow
def test_sample_case_gives_probability_shap_3d_and_report(app_path):
    at = _predict(_page(app_path))
    labels = [m.label for m in at.metric]
    assert "P(PFS ≤ 12 months)" in labels
    value = next(m.value for m in at.metric if m.label == "P(PFS ≤ 12 months)")
    assert value.endswith("%") and 0 <= int(value.rstrip("%")) <= 100
    assert {"90 % interval", "Progressed by 6 months", "Progressed by 12 months", "Progressed by 24 months"} <= set(labels)
    low, high = (int(v) for v in next(m.value for m in at.metric if m.label == "90 % interval").rstrip("%").split("%–"))
    assert low <= int(value.rstrip("%")) <= high
    assert any("90 %" in md.value for md in at.markdown), "no interval sentence"
    by = [int(next(m.value for m in at.metric if m.label == f"Progressed by {n} months").rstrip("%")) for n in (6, 12, 24)]
    assert by == sorted(by), by
    assert len(at.get("plotly_chart")) >= 2  # the Why part: lab SHAP, modalities (and the lesion charts)
    buttons = [b.proto.label for b in at.get("download_button")]
    assert buttons == ["Report (PDF)", "Report (HTML)"], buttons
    assert any("simulated" in c.value.lower() for c in at.caption)
    for view, charts in (("PET/CT viewer", 4), ("Outlook and cohort", 3)):
        at.button_group(key="result_view").set_value(view).run()
        assert not at.exception, at.exception
        assert len(at.get("plotly_chart")) >= charts, view


def test_missing_lab_is_imputed_and_said_so(app_path):
    # SIM0004 of sample_data has no AST (AppTest cannot empty a number_input).
    at = _page(app_path)
    at.selectbox(key="sample_id").set_value("SIM0004").run()
    assert at.number_input(key="lab_SIM0004_ast").value is None
    at = _predict(at)
    missing = [i.value for i in at.info if "Missing inputs" in i.value]
    assert len(missing) == 1 and "imputed" in missing[0] and "AST" in missing[0], missing
    assert not any("imputed" in w.value for w in at.warning), "the imputation said twice"
    assert "P(PFS ≤ 12 months)" in [m.label for m in at.metric]


def test_bad_upload_shows_an_error_box_and_page_still_works(app_path, monkeypatch):
    from streamlit.delta_generator import DeltaGenerator

    class FakeUpload(io.BytesIO):
        def __init__(self, name: str, data: bytes) -> None:
            super().__init__(data)
            self.name = name

    uploads = {"pet_up": FakeUpload("pet.nii.gz", b"not an image"), "ct_up": FakeUpload("ct.nii.gz", b"junk")}
    # AppTest cannot upload files: the uploader widget hands back these bytes instead.
    monkeypatch.setattr(DeltaGenerator, "file_uploader", lambda self, *a, key=None, **k: uploads.get(key))
    at = _page(app_path)
    at.radio(key="source").set_value("Upload PET/CT").run()
    at = _predict(at)
    assert at.error, "expected an error box"
    assert "pet.nii.gz" in at.error[0].value
    assert not any(m.label == "P(PFS ≤ 12 months)" for m in at.metric)
    at.radio(key="source").set_value("Sample case").run()
    at = _predict(at)
    assert "P(PFS ≤ 12 months)" in [m.label for m in at.metric]


def test_no_upload_is_an_error_box(app_path):
    at = _page(app_path)
    at.radio(key="source").set_value("Upload PET/CT").run()
    at = _predict(at)
    assert at.error and "upload" in at.error[0].value.lower()


def test_unit_choice_converts_for_the_model(app_path):
    """130 g/L of hemoglobin reaches the model as 13 g/dL (its unit); 130 g/dL would be refused as implausible."""
    at = _page(app_path)
    sample = at.selectbox(key="sample_id").value
    at.number_input(key=f"lab_{sample}_hemoglobin").set_value(130.0)
    at.selectbox(key=f"lab_{sample}_hemoglobin_unit").set_value("g/L")
    at = _predict(at)
    assert not at.error, [e.value for e in at.error]
    assert not any("hemoglobin" in w.value and "outside" in w.value for w in at.warning)
    result = at.session_state["case_result"]
    assert result.labs["hemoglobin"] == pytest.approx(13.0)
    assert "hemoglobin" not in result.explanation.prediction.imputed_fields
    at.selectbox(key=f"lab_{sample}_hemoglobin_unit").set_value("g/dL")
    at = _predict(at)
    assert any("Hemoglobin (g/dL): outside the plausible range 2–25 g/dL" in e.value for e in at.error), \
        "130 g/dL accepted"
    assert not any(m.label == "P(PFS ≤ 12 months)" for m in at.metric)
