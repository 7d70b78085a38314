"""pfs_core.results.report: the tumour-board report (HTML and PDF from the same sections) of a synthetic case."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pfs_core.explain import Explanation, LabShap, ModalityShapley
from pfs_core.explain.lesions import LesionContributions
from pfs_core.inference import Prediction
from pfs_core.io import Volume
from pfs_core.results import report as rp

pypdf = pytest.importorskip("pypdf")

LIMIT = 2 * 1024 * 1024
CASE_ID = "TB-2026-0042"
NOTE = "Discussed with Dr. Example: <script>alert('x')</script> & re-check lesion 2 on the MRI."


def _volumes() -> tuple[Volume, Volume, np.ndarray, np.ndarray]:
    """A tiny body (CT 40 HU, PET SUV 1) with three spherical lesions; the PET on a coarser grid of its own."""
    shape, spacing = (48, 36, 30), (8.0, 8.0, 10.0)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-190.0, -140.0, -800.0)
    i, j, k = np.indices(shape)
    body = ((i - 24) / 20) ** 2 + ((j - 18) / 14) ** 2 < 1
    ct = np.where(body, 40.0, -1000.0).astype(np.float32)
    pet = np.where(body, 1.0, 0.0).astype(np.float32)
    labels = np.zeros(shape, np.int32)
    for lesion_id, (centre, radius, suv) in enumerate([((14, 14, 15), 3, 15.0), ((30, 20, 18), 4, 8.0),
                                                      ((24, 10, 8), 2, 1.2)], start=1):
        inside = (i - centre[0]) ** 2 + (j - centre[1]) ** 2 + (k - centre[2]) ** 2 <= radius ** 2
        labels[inside] = lesion_id
        pet[inside] = suv
    pet_affine = affine.copy()
    pet_affine[:3, :3] *= 2.0
    pet_volume = Volume(pet[::2, ::2, ::2].copy(), pet_affine, "pet.nii.gz", "PET", "SUVbw")
    return pet_volume, Volume(ct, affine, "ct.nii.gz", "CT", "HU"), labels, affine


def _lesions() -> pd.DataFrame:
    return pd.DataFrame({
        "lesion_id": [1, 2, 3], "sstr_status": ["SSTR-positive", "SSTR-positive", "SSTR-negative"],
        "site": ["liver", "bone", "liver"], "volume_ml": [7.2, 17.1, 1.1], "suv_max": [15.0, 8.0, 1.2],
        "suv_mean": [12.0, 6.5, 1.1], "suv_peak": [13.0, 7.0, 1.1], "tumour_to_liver": [2.5, 1.3, 0.2],
        "heterogeneity": [0.1, 0.2, 0.05], "mean_hu": [45.0, 300.0, 20.0], "centre_x_mm": [-78.0, 50.0, 2.0],
        "centre_y_mm": [-28.0, 20.0, -60.0], "centre_z_mm": [-650.0, -620.0, -720.0]})


def _prediction(*, imputed: list[str], missing: list[str] | None = None, **extra) -> Prediction:
    warnings = ["chromogranin_a = 9000 ng/mL is outside the training range 10-5000; the prediction extrapolates"]
    if imputed:
        warnings.append(f"missing lab value(s) imputed with the training median: {', '.join(imputed)}")
    return Prediction(
        probability=0.34, interval=(0.21, 0.48), fold_probabilities=[0.3, 0.38], risk_group="high",
        risk_threshold=0.3, percentile_in_training=71.0, missing_modalities=missing or [],
        inputs_used=["lab", "pet", "ct"], imputed_fields=imputed, out_of_range_fields=["chromogranin_a"],
        post_baseline_used=False, warnings=warnings, device="cpu", timings_s={"predict": 0.1},
        model_name="lab_pet_ct", model_version="1.0.0", bundle_sha256="ab" * 32, trained_on_simulated_data=True,
        **extra)


def _explanation(prediction: Prediction, labels: np.ndarray) -> Explanation:
    lab = LabShap(names=["chromogranin_a", "ki67", "sex", "primary_site"], values=[9000.0, 12.0, None, None],
                  units=["ng/mL", "%", "", ""], shap_values=[0.06, 0.03, 0.0, 0.0], base_value=0.25, output=0.34,
                  imputed=[False, False, True, True], method="Kernel SHAP")
    table = _lesions()
    contributions = LesionContributions(
        features=pd.DataFrame({"name": ["sstr_positive_volume_ml"], "label": ["SSTR-positive tumour volume"],
                               "value": [0.4], "measured": [24.3], "unit": ["mL"], "shap": [0.02]}),
        lesions=table.assign(contribution=[0.004, 0.015, -0.001]), base_value=0.32, output=0.34,
        unattributed=0.002)
    measurement = SimpleNamespace(lesions=table, lesion_labels=labels,
                                  features={"sstr_positive_volume_ml": 24.3, "liver_tumour_fraction": 0.012,
                                            "sstr_negative_count": 1.0, "lesions_liver": 2.0},
                                  organs=SimpleNamespace(source="organ network (simulated CTs)"))
    return Explanation(prediction=prediction, lab_shap=lab,
                       modalities=ModalityShapley({"lab": 0.05, "pet": 0.03, "ct": -0.01}, 0.27, 0.34), gradcam={},
                       prepared=None, measurement=measurement, lesions=contributions)  # type: ignore[arg-type]


def _report(prediction: Prediction | None = None, **kwargs) -> tuple[rp.CaseReport, str]:
    pet, ct, labels, _ = _volumes()
    explanation = _explanation(prediction or _prediction(imputed=["sex", "primary_site"]), labels)
    report = rp.case_report(explanation, labs={"chromogranin_a": 9000.0, "ki67": 12.0},
                            inputs={"PET": "pet.nii.gz", "CT": "ct.nii.gz"}, case_id=CASE_ID, pet=pet, ct=ct,
                            outlook={6: 0.12, 12: 0.34, 24: 0.61}, note=NOTE,
                            created=datetime(2026, 12, 7, 9, 30, tzinfo=UTC), **kwargs)
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(report.pdf)).pages)
    return report, text


@pytest.fixture(scope="module")
def built() -> tuple[rp.CaseReport, str]:
    return _report()


def test_both_formats_are_small_and_self_contained(built):
    report, _ = built
    assert report.pdf.startswith(b"%PDF") and len(report.pdf) < LIMIT
    assert len(report.html) < LIMIT
    page = report.html.decode("utf-8")
    images = re.findall(r"<img src='data:image/png;base64,", page)
    assert len(images) >= 2  # the MIP, the lesion slices and the charts
    assert "plotly" not in page.lower() and "<script" not in page.lower().replace("&lt;script", "")
    assert "http://" not in page and "https://" not in page  # nothing loaded from the network


def test_pdf_holds_the_case_the_lesion_table_and_the_note(built):
    _, text = built
    flat = " ".join(text.split())
    assert CASE_ID in flat
    assert "lab_pet_ct, version 1.0.0" in flat and "abababababababab" in flat
    assert "34 %" in flat and "21 %–48 %" in flat
    assert "by 24 months" in flat and "61 %" in flat
    packed = "".join(text.split())  # cells may wrap inside a row
    for row in rp.lesion_table_rows(_lesions())[1]:  # every lesion row, cell by cell
        assert "".join("".join(cell.split()) for cell in row) in packed
    assert "re-check lesion 2 on the MRI" in flat and "<script>" in flat  # the note as written, as text
    assert "trained on simulated data" in flat
    assert flat.count("Research and demonstration use only") >= 1


def test_missing_and_imputed_said_once(built):
    report, text = built
    for body in (" ".join(text.split()), re.sub(r"<[^>]+>", " ", report.html.decode())):
        assert body.lower().count("imputed") == 1
        assert "Sex, " in body or "sex, " in body.lower()
        assert "missing: none" not in body.lower()
    warnings = rp.missing_and_warnings(_prediction(imputed=["sex"]))[1]
    assert len(warnings) == 1 and "outside the training range" in warnings[0]


def test_nothing_missing_says_so():
    missing, _ = rp.missing_and_warnings(_prediction(imputed=[]))
    assert missing == ["Nothing: every input the model reads was given."]


def test_missing_modality_is_in_the_missing_section_not_in_the_warnings():
    prediction = _prediction(imputed=[], missing=["pet"])
    prediction.warnings.append("PET missing: the model predicts without it (learned 'missing' input); expect a "
                               "less reliable estimate")
    missing, warnings = rp.missing_and_warnings(prediction)
    assert missing[0].startswith("Images not used: PET") and "less reliable" in missing[0]
    assert not any("PET" in w for w in warnings)


def test_note_is_escaped_in_the_html(built):
    page = built[0].html.decode("utf-8")
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; re-check" in page


def test_interval_sentence_is_used_when_the_prediction_has_one():
    sentence = "Nine in ten models of the ensemble gave 21 % to 48 %."
    prediction = _prediction(imputed=[])
    prediction.interval_sentence = sentence  # type: ignore[attr-defined]  # the field another change adds
    blocks = rp._result_blocks(prediction, None)
    assert any(isinstance(b, rp.Text) and b.text == sentence for b in blocks)
    assert not any(isinstance(b, rp.Table) for b in blocks)  # no outlook without one


def test_html_and_pdf_come_from_the_same_sections(built):
    report, text = built
    flat = " ".join(text.split())
    page = report.html.decode("utf-8")
    for title in ("Missing inputs", "Warnings", "Clinician's note", "Key images", "Lesion measurements",
                  "Model and software"):
        assert title in flat and title.replace("'", "&#x27;") in page


def test_without_images_the_report_still_builds():
    _, _, labels, _ = _volumes()
    explanation = _explanation(_prediction(imputed=[]), labels)
    report = rp.case_report(explanation, labs={}, inputs={}, case_id="no-images", measurement=None)
    assert report.html.count(b"<img") >= 1  # the charts
    assert b"Key images" not in report.html
