"""``python -m pfs_core check``: JSON on a good pair, one 'error:' line and exit 2 on a bad one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real"


def run_check(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pfs_core", "check", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def write_pair(folder: Path, *, pet_offset_mm: float = 0.0) -> tuple[Path, Path]:
    ct = np.full((20, 16, 12), -1000.0, dtype=np.float32)
    ct[4:-4, 4:-4, :] = 40.0
    pet = np.full((10, 8, 8), 0.5, dtype=np.float32)
    pet[5, 4, 3] = 12.0
    pet_affine = np.diag([4.0, 4.0, 4.0, 1.0])
    pet_affine[0, 3] = pet_offset_mm
    nib.save(nib.Nifti1Image(ct, np.diag([2.0, 2.0, 4.0, 1.0])), folder / "ct.nii.gz")
    nib.save(nib.Nifti1Image(pet, pet_affine), folder / "pet.nii.gz")
    return folder / "pet.nii.gz", folder / "ct.nii.gz"


def assert_single_error_line(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], proc.stderr


def test_good_pair_prints_json(tmp_path):
    pet, ct = write_pair(tmp_path)
    proc = run_check("--pet", pet, "--ct", ct)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["pet"]["shape"] == [10, 8, 8] and report["ct"]["spacing_mm"] == [2.0, 2.0, 4.0]
    assert report["ct"]["orientation"] == "RAS" and report["ct"]["value_range"] == [-1000.0, 40.0]
    assert report["pet_suv_max"] == 12.0 and report["pet"]["units"] == "SUVbw" and report["pet"]["suv_note"]
    assert report["overlap"]["fraction"] > 0.9


def test_bad_inputs_give_one_error_line(tmp_path):
    pet, ct = write_pair(tmp_path, pet_offset_mm=400.0)
    assert_single_error_line(run_check("--pet", pet, "--ct", ct), "overlap")
    assert_single_error_line(run_check("--pet", ct, "--ct", pet), "ct.nii.gz")  # swapped
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    assert_single_error_line(run_check("--ct", broken), "broken.nii.gz")
    assert_single_error_line(run_check("--pet", tmp_path / "nope.nii.gz"), "nope.nii.gz")
    assert_single_error_line(run_check(), "--pet")


@pytest.mark.real_data
@pytest.mark.skipif(not REAL.is_dir(), reason=f"real scans not present at {REAL}")
def test_real_bqml_dicom_pet_with_ibsi_ct():
    proc = run_check("--pet", REAL / "sts001_pet_dicom" / "FDG_PET" / "image",
                     "--ct", REAL / "ibsi_sts_fdg" / "STS_001" / "CT_image.nii.gz")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["pet"]["orientation"] == "LPS" and report["pet"]["shape"] == [128, 128, 267]
    assert "decay-corrected over 45.2 min (F-18)" in report["pet"]["suv_note"]
    assert report["overlap"]["fraction_of_ct"] > 0.99
