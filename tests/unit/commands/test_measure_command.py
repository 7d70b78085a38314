"""``python -m pfs_core measure`` (through ``pfs_core.cli.main``) on a small phantom written as NIfTI files.

The phantom builder is the measurement tests' (tests/unit/measure/conftest.py), loaded under its own name.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from pfs_core.cli import main
from pfs_core.io.organs import ORGAN_CODE
from pfs_core.measure.table import LESION_COLUMNS


def _phantoms():
    """The builders of tests/unit/measure/conftest.py (registered as ``measure_phantoms`` once pytest loaded it)."""
    if "measure_phantoms" in sys.modules:
        return sys.modules["measure_phantoms"]
    spec = importlib.util.spec_from_file_location(
        "measure_phantoms", Path(__file__).resolve().parents[1] / "measure" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["measure_phantoms"] = module
    spec.loader.exec_module(module)
    return module


phantoms = _phantoms()

FILES = ("lesions.csv", "measurements.json", "lesions.nii.gz", "organs.nii.gz")
HOT = ((24, 40), (48, 60), (40, 52))  # 2.304 mL at SUV 30 in the liver


@pytest.fixture
def case(tmp_path: Path) -> dict[str, Path]:
    """pet.nii.gz, ct.nii.gz and a TotalSegmentator-style folder organs/ (one 0/1 mask per organ)."""
    p = phantoms.Phantom()
    p.paint(p.box(HOT), suv=30.0)
    p.paint(p.sphere((56.0, 72.0, 64.0), 10.0), suv=3.0, hu_delta=-40.0)  # SSTR-negative
    pet, ct = p.pet(), p.ct()
    nib.save(nib.Nifti1Image(pet.data, pet.affine), tmp_path / "pet.nii.gz")
    nib.save(nib.Nifti1Image(ct.data, ct.affine), tmp_path / "ct.nii.gz")
    folder = tmp_path / "organs"
    folder.mkdir()
    for name, code in ORGAN_CODE.items():
        if (p.labels == code).any():
            nib.save(nib.Nifti1Image((p.labels == code).astype(np.uint8), ct.affine), folder / f"{name}.nii.gz")
    return {"pet": tmp_path / "pet.nii.gz", "ct": tmp_path / "ct.nii.gz", "organs": folder, "labels": p.labels,
            "affine": ct.affine, "hot": p.box(HOT)}


def measure(case: dict, out: Path, *extra: str) -> int:
    return main(["measure", "--pet", str(case["pet"]), "--ct", str(case["ct"]), "--organs", str(case["organs"]),
                 "--out", str(out), *extra])


def test_measure_writes_four_files_on_the_ct_grid(case, tmp_path, capsys):
    out = tmp_path / "out"
    assert measure(case, out) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "2 lesions (1 SSTR-positive, 1 SSTR-negative)" in printed and "Research use only" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, ".pfs_core-output.json"])  # + the marker
    table = pd.read_csv(out / "lesions.csv")
    assert list(table.columns) == list(LESION_COLUMNS)
    assert list(table["sstr_status"]) == ["SSTR-positive", "SSTR-negative"]
    assert table.loc[0, "volume_ml"] == 2.304 and table.loc[0, "suv_max"] == 30.0
    summary = json.loads((out / "measurements.json").read_text())
    assert set(summary) == {"disclaimer", "measure_version", "features", "n_lesions", "liver_reference",
                            "liver_density", "organs", "settings"}
    assert summary["n_lesions"] == 2 and summary["features"]["sstr_negative_count"] == 1.0
    assert summary["features"]["sstr_positive_volume_ml"] == 2.304
    assert summary["organs"]["source"].startswith("TotalSegmentator folder 'organs'")
    lesions, organs = nib.load(out / "lesions.nii.gz"), nib.load(out / "organs.nii.gz")
    for image in (lesions, organs):
        assert image.shape == case["labels"].shape and np.allclose(image.affine, case["affine"])
    ids = np.asarray(lesions.dataobj)
    assert ids.dtype == np.uint16 and set(np.unique(ids)) == {0, 1, 2}
    assert np.array_equal(ids == 1, case["hot"])
    assert np.array_equal(np.asarray(organs.dataobj), case["labels"])


def test_measure_twice_gives_identical_files(case, tmp_path):
    assert measure(case, tmp_path / "a") == 0 and measure(case, tmp_path / "b") == 0
    for name in ("lesions.csv", "measurements.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in ("lesions.nii.gz", "organs.nii.gz"):
        a, b = nib.load(tmp_path / "a" / name), nib.load(tmp_path / "b" / name)
        assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)), name
        assert a.header.binaryblock == b.header.binaryblock, name


def one_error_line(capsys, fragment: str) -> None:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], captured.err


def test_missing_ct_is_a_usage_error(case, tmp_path, capsys):
    assert main(["measure", "--pet", str(case["pet"]), "--organs", str(case["organs"]),
                 "--out", str(tmp_path / "out")]) == 2
    one_error_line(capsys, "--ct")


def test_corrupt_pet_is_an_input_error(case, tmp_path, capsys):
    case["pet"].write_bytes(b"\x1f\x8b\x08\x00garbage")
    assert measure(case, tmp_path / "out") == 2
    one_error_line(capsys, "pet.nii.gz")


def test_organ_labels_without_organs_is_a_usage_error(case, tmp_path, capsys):
    names = tmp_path / "names.json"
    names.write_text('{"1": "liver"}')
    assert main(["measure", "--pet", str(case["pet"]), "--ct", str(case["ct"]), "--organ-labels", str(names),
                 "--out", str(tmp_path / "out")]) == 2
    one_error_line(capsys, "--organs")


def test_network_organs_without_an_upper_abdomen_are_refused(case, tmp_path, capsys, monkeypatch):
    """A CT of another region: the network still labels a 'liver'; without spleen or kidneys it is refused."""
    import pfs_core.models.organ_seg as organ_seg
    from pfs_core.io.organs import OrganMasks

    def liver_only(ct, device=None):
        labels = np.where(case["labels"] == ORGAN_CODE["liver"], ORGAN_CODE["liver"], 0).astype(np.uint8)
        return OrganMasks(labels=labels, affine=case["affine"], source="organ network (stub)", present=("liver",))

    monkeypatch.setattr(organ_seg, "segment_organs", liver_only)
    assert main(["measure", "--pet", str(case["pet"]), "--ct", str(case["ct"]), "--out", str(tmp_path / "out")]) == 2
    one_error_line(capsys, "--organs")


def test_network_organs_of_an_abdomen_are_kept(case):
    from pfs_core.io.organs import OrganMasks
    from pfs_core.measure.case import plausible_abdomen

    # the phantom's kidneys (about 20 mL) are child-sized; voxels of twice the size make them adult-sized
    adult = np.asarray(case["affine"], dtype=float) @ np.diag([2.0, 2.0, 2.0, 1.0])
    organs = OrganMasks(labels=case["labels"], affine=adult, source="organ network (stub)",
                        present=tuple(n for n, c in ORGAN_CODE.items() if (case["labels"] == c).any()))
    assert plausible_abdomen(organs) is organs
