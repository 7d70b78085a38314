"""Bundle integrity (issue 24): the manifest's own fields are covered by the bundle digest, and a bundle whose
files were corrupted and then re-hashed is one BundleError naming the file, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pfs_core.cli import main
from pfs_core.errors import BundleError
from pfs_core.models.bundle import (
    DIGEST_FIELD,
    MANIFEST,
    add_digest,
    load_bundle,
    manifest_digest,
    sha256_file,
    verify_bundle,
    write_manifest,
)

MODELS = Path(__file__).resolve().parents[3] / "models"
SHIPPED = sorted(p.name for p in MODELS.iterdir() if (p / MANIFEST).is_file() and p.name != "organ_seg")


@pytest.fixture
def copy(tiny_bundle, tmp_path):
    """``copy(name)``: a private copy of the session's tiny bundle ``name``."""
    def make(name: str) -> Path:
        return Path(shutil.copytree(tiny_bundle(name), tmp_path / name))
    return make


def manifest_of(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())


def rehash(path: Path) -> None:
    """What someone who edits a file does to get it past the hash check: renew every sha256 and the digest."""
    manifest = manifest_of(path)
    manifest["files"] = {name: sha256_file(path / name) for name in manifest["files"]}
    write_manifest(path, manifest)


# ----------------------------------------------------------------------------- the digest


def test_the_digest_is_recorded_and_exposed(copy):
    path = copy("lab_rf")
    manifest = manifest_of(path)
    bundle = load_bundle(path)
    assert bundle.digest == manifest[DIGEST_FIELD] == manifest_digest(manifest)
    assert len(bundle.digest) == 64


@pytest.mark.parametrize(("field", "value"), [
    (("training_cohort", "simulated"), False),
    (("disclaimer",), "Validated for clinical use."),
    (("model_version",), "2099-01-01-00000000"),
])
def test_an_edited_manifest_field_is_refused(copy, field, value, capsys):
    path = copy("lab_rf")
    manifest = manifest_of(path)
    target = manifest
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    (path / MANIFEST).write_text(json.dumps(manifest, indent=1))
    with pytest.raises(BundleError, match="manifest.json was edited after the bundle was written .*; retrain or restore it"):
        load_bundle(path)
    assert main(["predict", "--model", str(path)]) == 2  # the command: one error line
    err = capsys.readouterr().err
    assert err.startswith("error:") and "edited" in err and len(err.strip().splitlines()) == 1


def test_the_digest_itself_cannot_be_edited(copy):
    path = copy("lab_rf")
    manifest = manifest_of(path)
    manifest[DIGEST_FIELD] = "0" * 64
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="was edited"):
        verify_bundle(path)


def test_an_old_bundle_without_a_digest_is_refused_until_digested(copy):
    path = copy("classic")
    manifest = manifest_of(path)
    del manifest[DIGEST_FIELD]
    (path / MANIFEST).write_text(json.dumps(manifest, indent=1))
    with pytest.raises(BundleError, match="has no bundle_digest .*add_bundle_digest.py"):
        load_bundle(path)
    digest = add_digest(path)
    assert load_bundle(path).digest == digest


def test_add_digest_still_refuses_a_changed_file(copy):
    path = copy("classic")
    manifest = manifest_of(path)
    del manifest[DIGEST_FIELD]
    (path / MANIFEST).write_text(json.dumps(manifest))
    (path / "training_oof.csv").write_text("patient_id\n")
    with pytest.raises(BundleError, match="training_oof.csv: sha256 does not match"):
        add_digest(path)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_bundle_carries_its_digest_and_loads(name):
    bundle = load_bundle(MODELS / name)
    assert bundle.digest == manifest_digest(bundle.manifest)


@pytest.mark.parametrize("name", ["classic", "lab_pet_ct", "lab_pet_ct_pretrained"])
def test_shipped_lesion_bundles_read_the_measurement_that_measure_reports(name):
    """The shipped image models are measured as ``measure`` measures (docs/models.md, "Which measurement")."""
    from pfs_core.inference import measure_settings
    from pfs_core.measure.settings import MeasureSettings

    bundle = load_bundle(MODELS / name)
    assert bundle.manifest["measurement"]["measurement"] == "1.3"
    assert measure_settings(bundle) == MeasureSettings()


def test_the_shipped_organ_network_carries_its_digest():
    from pfs_core.models.organ_seg import verify_organ_bundle

    manifest = verify_organ_bundle(MODELS / "organ_seg")
    assert manifest[DIGEST_FIELD] == manifest_digest(manifest)


# ----------------------------------------------------------------------------- malformed manifest


@pytest.mark.parametrize(("text", "fragment"), [
    ("[1, 2, 3]", "not a pfs_core bundle manifest"),
    ('"a string"', "not a pfs_core bundle manifest"),
    ('{"format": "pfs_core-bundle", "files": {"config.json": 5}}', "not a pfs_core bundle manifest"),
    ("{" * 100_000, "not valid JSON"),
    ('{"format": "pfs_core-bundle", "n": ' + "9" * 5000 + "}", "not valid JSON"),
    ("\xff\xfe", "not valid JSON"),
])
def test_a_malformed_manifest_is_one_bundle_error(copy, text, fragment):
    path = copy("lab_rf")
    (path / MANIFEST).write_bytes(text.encode("latin-1") if text == "\xff\xfe" else text.encode())
    with pytest.raises(BundleError, match=f"manifest.json: {fragment}"):
        load_bundle(path)


# ----------------------------------------------------------------------------- corrupted, then re-hashed


def _garble_header(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[0:8] = b"\xff\xff\xff\xff\xff\xff\xff\x7f"  # safetensors header length far past the file
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize("corrupt", [_garble_header, _truncate])
def test_rehashed_corrupt_weights_are_one_bundle_error(copy, corrupt):
    path = copy("lab_pet_ct")
    corrupt(path / "fold_1.safetensors")
    rehash(path)
    with pytest.raises(BundleError, match="fold_1.safetensors: weights cannot be read"):
        load_bundle(path)


def test_rehashed_weights_that_do_not_fit_the_network_are_one_bundle_error(copy):
    path = copy("lab_pet_ct")
    config = json.loads((path / "config.json").read_text())
    config["folds"][0]["net"]["hidden"] = config["folds"][0]["net"]["hidden"] + 1  # builds, but other shapes
    (path / "config.json").write_text(json.dumps(config))
    rehash(path)
    with pytest.raises(BundleError, match="fold_0.safetensors: weights cannot be read or do not fit"):
        load_bundle(path)


def _edit_config(change):
    def edit(path: Path) -> None:
        config = json.loads((path / "config.json").read_text())
        change(config)
        (path / "config.json").write_text(json.dumps(config))
    return edit


@pytest.mark.parametrize(("name", "corrupt"), [
    ("lab_rf", lambda p: (p / "config.json").write_text("{not json")),
    ("lab_rf", lambda p: (p / "config.json").write_text("[]")),
    ("lab_rf", _edit_config(lambda c: c.update(risk_threshold="abc"))),
    ("lab_rf", _edit_config(lambda c: c.update(risk_threshold=7.0))),
    ("lab_rf", _edit_config(lambda c: c.update(folds="abc"))),
    ("lab_rf", _edit_config(lambda c: c.update(folds=[]))),
    ("lab_rf", _edit_config(lambda c: c.update(model="no_such_model"))),
    ("lab_rf", _edit_config(lambda c: c["folds"][0].update(tabular={"nonsense": 1}))),
    ("lab_pet_ct", _edit_config(lambda c: c["folds"][0].update(net={"x": 1}))),
])
def test_rehashed_malformed_config_is_one_bundle_error(copy, name, corrupt):
    path = copy(name)
    corrupt(path)
    rehash(path)
    with pytest.raises(BundleError, match="config.json: "):
        load_bundle(path)


@pytest.mark.parametrize("content", [
    b"\xff\xfe\x00garbage\n\x00\x00",
    b"",
    b"a,b\n1,2\n",
    b"patient_id,oof_probability,pfs_months,progressed\nP1,7.5,3,1\n",
    b"patient_id,oof_probability,pfs_months,progressed\nP1,abc,3,1\n",
    b"patient_id,oof_probability,pfs_months,progressed\nP1,0.5,3,4\n",
    b'patient_id,oof_probability\n"unclosed,0.5\n',
])
def test_rehashed_malformed_training_oof_is_one_bundle_error(copy, content):
    path = copy("lab_rf")
    (path / "training_oof.csv").write_bytes(content)
    rehash(path)
    with pytest.raises(BundleError, match="training_oof.csv: malformed"):
        load_bundle(path)


def test_a_rehashed_bundle_with_good_content_still_loads(copy):
    path = copy("lab_rf")
    rehash(path)
    assert load_bundle(path).name == "lab_rf"
