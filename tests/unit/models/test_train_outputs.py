"""``train --out``/``--force`` never destroys data (issue 24): a file is refused, a folder with files that
``train`` did not write is refused even with ``--force``, and a bundle folder (marked or shipped) is replaced."""

import json
import shutil

from pfs_core.cli import main
from pfs_core.io.outputs import MARKER


def _train(disk_cohort, small_json, tmp_path, out, *extra):
    pre, train = small_json
    return main(["train", "--cohort", str(disk_cohort), "--preprocess", str(pre), "--train-config", str(train),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--model", "lab_rf", "--out", str(out),
                 *extra])


def _one_error(capsys, fragment):
    err = capsys.readouterr().err
    assert err.startswith("error:") and fragment in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_train_out_a_file_is_refused_before_training(disk_cohort, small_json, tmp_path, capsys):
    target = tmp_path / "bundle"
    target.write_text("precious")
    assert _train(disk_cohort, small_json, tmp_path, target, "--force") == 2
    _one_error(capsys, "is a file, not a folder")
    assert target.read_text() == "precious" and not (tmp_path / "cache").exists()


def test_train_force_keeps_a_folder_with_files_it_did_not_write(disk_cohort, small_json, tmp_path, capsys):
    out = tmp_path / "mixed"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": "pfs_core-bundle"}))
    (out / "notes.txt").write_text("mine")
    assert _train(disk_cohort, small_json, tmp_path, out, "--force") == 2
    _one_error(capsys, "did not write (notes.txt)")
    assert (out / "notes.txt").read_text() == "mine"


def test_train_force_replaces_a_shipped_bundle_without_a_marker(disk_cohort, small_json, tmp_path, tiny_bundle,
                                                                capsys):
    out = shutil.copytree(tiny_bundle("lab_rf"), tmp_path / "lab_rf")
    assert not (out / MARKER).exists()
    assert _train(disk_cohort, small_json, tmp_path, out) == 2  # not without --force
    _one_error(capsys, "add --force")
    assert _train(disk_cohort, small_json, tmp_path, out, "--force") == 0, capsys.readouterr().err
    assert json.loads((out / MARKER).read_text())["command"] == "train"
    manifest = json.loads((out / "manifest.json").read_text())
    assert "train" in manifest["command"] and "bundle_digest" in manifest
