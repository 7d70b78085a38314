"""Model card page: the bundle digest (sha256 over the manifest and so every file) is shown; a manifest whose
fields were edited without renewing it is refused."""

from __future__ import annotations

import json
import shutil

from streamlit.testing.v1 import AppTest

from pfs_core.models.bundle import DIGEST_FIELD, manifest_digest

PAGE = "pages/model_card.py"


def _card(app_path: str, monkeypatch, models) -> AppTest:
    monkeypatch.setenv("PFS_MODELS_DIR", str(models))
    monkeypatch.setenv("PFS_RUNS_DIR", str(models.parent / "runs"))
    at = AppTest.from_file(app_path, default_timeout=120)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_model_card_shows_the_bundle_digest(app_path, monkeypatch, tmp_path, tiny_bundle):
    bundle = shutil.copytree(tiny_bundle("lab_rf"), tmp_path / "models" / "lab_rf")
    manifest = json.loads((bundle / "manifest.json").read_text())
    digest = manifest[DIGEST_FIELD]
    assert digest == manifest_digest(manifest)
    at = _card(app_path, monkeypatch, tmp_path / "models")
    assert not at.error, [e.value for e in at.error]
    assert f"Bundle digest (sha256): `{digest}`" in [m.value for m in at.markdown]


def test_edited_manifest_field_is_refused_and_no_digest_shown(app_path, monkeypatch, tmp_path, tiny_bundle):
    bundle = shutil.copytree(tiny_bundle("lab_rf"), tmp_path / "models" / "lab_rf")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.setdefault("training_cohort", {})["simulated"] = False  # "not simulated", digest left as it was
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))
    at = _card(app_path, monkeypatch, tmp_path / "models")
    assert any("Hash check failed" in e.value for e in at.error), [e.value for e in at.error]
    assert not any("Bundle digest" in m.value for m in at.markdown)
