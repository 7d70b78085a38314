"""Case Explorer, lesions: table and features of a sample case, organ-mask upload (bad, good), no organ network."""

import io
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/case_explorer.py"


class FakeUpload(io.BytesIO):
    def __init__(self, name: str, data: bytes) -> None:
        super().__init__(data)
        self.name = name


@pytest.fixture
def uploads(monkeypatch) -> dict[str, object]:
    """What the upload widgets hand back, by key (AppTest cannot upload files)."""
    from streamlit.delta_generator import DeltaGenerator

    given: dict[str, object] = {}
    monkeypatch.setattr(DeltaGenerator, "file_uploader", lambda self, *a, key=None, **k: given.get(key))
    return given


def _predict(app_path: str, case: str = "SIM0003") -> AppTest:
    """Predict a sample case (SIM0003 has SSTR-positive and SSTR-negative lesions)."""
    at = AppTest.from_file(app_path, default_timeout=180)
    at.switch_page(PAGE).run()
    at.selectbox(key="sample_id").set_value(case).run()
    at.button(key="predict").click().run()
    assert not at.exception, at.exception
    return at


def _show(at: AppTest, view: str) -> AppTest:
    """One part of the result (the selector above it), drawn without an exception."""
    at.button_group(key="result_view").set_value(view).run()
    assert not at.exception, at.exception
    return at


def _lesion_table(at: AppTest):
    return next((d.value for d in at.dataframe if "SSTR status" in d.value.columns), None)


def test_sample_case_shows_lesion_table_features_and_report(app_path, uploads):
    from pfs_ui import case_view

    at = _show(_predict(app_path), "Lesions")
    assert not at.error, [e.value for e in at.error]
    table = _lesion_table(at)
    assert table is not None and len(table) > 0
    assert {"volume (mL)", "SUVmax (g/mL)", "tumour-to-liver (SUVmax / liver SUV)"} <= set(table.columns)
    assert set(table["SSTR status"]) <= {"SSTR-positive", "SSTR-negative"}
    assert list(table["SSTR status"]) == sorted(table["SSTR status"], key=lambda s: s != "SSTR-positive")
    labels = [m.label for m in at.metric]
    for label in ("SSTR-positive volume", "Tumour-to-liver, max / mean", "SSTR-negative lesions",
                  "SSTR-negative volume", "Liver tumour fraction"):
        assert label in labels
    captions = " ".join(c.value for c in at.caption)
    assert "simulated organ masks shipped with sample case" in captions and "delineated automatically" in captions
    assert "P(PFS ≤ 12 months)" in labels and "simulated" in captions.lower()  # the prediction is still there
    result = at.session_state["case_result"]
    report = case_view._report_builder(result, "SIM0003", "")().html.decode()
    assert "Lesion measurements (automatic delineation)" in report and "simulated organ masks" in report
    assert "SSTR-positive tumour volume" in report
    _show(at, "PET/CT viewer")
    planes = set().union(*(_trace_names(at, f"{p} ·") for p in ("Axial", "Coronal", "Sagittal")))
    assert {"SSTR-positive lesions", "SSTR-negative lesions"} <= planes  # the viewer starts on a lesion
    assert "liver" not in _trace_names(at, "Axial ·")
    at.checkbox(key="viewer_organs").check().run()
    assert not at.exception and "liver" in _trace_names(at, "Axial ·")
    assert {"SSTR-positive lesions", "liver"} <= _trace_names(at, "PET MIP")
    _show(at, "3D view")
    at.checkbox(key="scene_organs").check().run()
    assert not at.exception and {"SSTR-positive lesions", "liver"} <= _trace_names(at, "Body surface")


def _trace_names(at: AppTest, title: str) -> set[str]:
    """Trace names of the chart whose title starts with ``title`` (the 3D view: that holds a trace named so)."""
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        names = {t.get("name") for t in spec["data"]}
        if spec["layout"].get("title", {}).get("text", "").startswith(title) or title in names:
            return names
    raise AssertionError(f"no chart titled {title!r}")


def test_organ_masks_uploaded_with_the_pet_ct_bad_then_good(app_path, uploads):
    """Organ masks are given with the PET/CT, before Predict: the model measures its lesions against them."""
    images = ROOT / "sample_data" / "images"
    uploads["pet_up"] = FakeUpload("pet.nii.gz", (images / "SIM0003_pet.nii.gz").read_bytes())
    uploads["ct_up"] = FakeUpload("ct.nii.gz", (images / "SIM0003_ct.nii.gz").read_bytes())
    uploads["organ_up"] = [FakeUpload("my_organs.nii.gz", b"not a NIfTI")]
    at = AppTest.from_file(app_path, default_timeout=180)
    at.switch_page(PAGE).run()
    at.radio(key="source").set_value("Upload PET/CT").run()
    at.button(key="predict").click().run()
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "my_organs.nii.gz" in at.error[0].value
    assert "pfs_upload" not in at.error[0].value and "/tmp" not in at.error[0].value
    assert _lesion_table(at) is None and "P(PFS ≤ 12 months)" not in [m.label for m in at.metric]

    organs = images / "SIM0003_organ_masks.nii.gz"
    uploads["organ_up"] = [FakeUpload(organs.name, organs.read_bytes())]
    at.button(key="predict").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = _lesion_table(_show(at, "Lesions"))
    assert table is not None and "share of the risk (percentage points)" in table.columns
    assert any(f"multi-label NIfTI '{organs.name}'" in c.value for c in at.caption)
    assert "Lesion contribution" in _show(at, "PET/CT viewer").selectbox(key="viewer_overlay").options


REAL_CT = ROOT.parent / "shared" / "data" / "real" / "totalseg_ct"


@pytest.mark.real_data
@pytest.mark.skipif(not (REAL_CT / "organs").is_dir(), reason=f"real CT with TotalSegmentator masks not at {REAL_CT}")
def test_real_ct_upload_with_totalsegmentator_masks_shows_the_lesion_contribution_map(app_path, uploads, tmp_path):
    """The real TotalSegmentator example CT with placed liver lesions and a PET simulated on it
    (tests/unit/measure/test_measure_real.py), uploaded as NIfTI with its TotalSegmentator folder as .zip."""
    import shutil
    import sys

    import nibabel as nib

    sys.path.insert(0, str(ROOT / "tests" / "unit" / "measure"))
    from test_measure_real import placed_case

    pet, ct, _, _ = placed_case()
    for name, volume in (("pet", pet), ("ct", ct)):
        nib.save(nib.Nifti1Image(volume.data, volume.affine), tmp_path / f"{name}.nii.gz")
    archive = shutil.make_archive(str(tmp_path / "segmentations"), "zip", REAL_CT, "organs")
    uploads["pet_up"] = FakeUpload("pet.nii.gz", (tmp_path / "pet.nii.gz").read_bytes())
    uploads["ct_up"] = FakeUpload("ct.nii.gz", (tmp_path / "ct.nii.gz").read_bytes())
    uploads["organ_up"] = [FakeUpload("segmentations.zip", Path(archive).read_bytes())]
    at = AppTest.from_file(app_path, default_timeout=300)
    at.switch_page(PAGE).run()
    at.radio(key="source").set_value("Upload PET/CT").run()
    at.button(key="predict").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = _lesion_table(_show(at, "Lesions"))
    assert table is not None and len(table) >= 3 and "share of the risk (percentage points)" in table.columns
    assert any("TotalSegmentator" in c.value for c in at.caption)
    _show(at, "PET/CT viewer").selectbox(key="viewer_overlay").set_value("Lesion contributions").run()
    assert not at.exception and not at.error
