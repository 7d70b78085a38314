"""`python -m pfs_core synth`: output, errors (exit 2, one line, no traceback) and --force."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pfs_core.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--n", "0"], "--n"),
        (["--n", "-3"], "--n"),
        (["--n", "1000000000"], "20000 patients"),
        (["--n", "2", "--signal", "mri=1"], "--signal"),
        (["--n", "2", "--signal", "labs:1"], "--signal"),
        (["--n", "2", "--signal", "labs=-0.5"], "--signal"),
        (["--n", "2", "--strength", "-1"], "--strength"),
        (["--n", "2", "--workers", "0"], "--workers"),
        (["--n", "two"], "--n"),
        (["--n", "2", "--sstr-negative-rate", "1.5"], "--sstr-negative-rate"),
        (["--n", "2", "--sstr-negative-rate", "nan"], "--sstr-negative-rate"),
        (["--n", "2", "--contrast", "arterial"], "--contrast"),
        (["--n", "2", "--anatomy", "wide"], "--anatomy"),
    ],
)
def test_bad_arguments(extra: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["synth", "--out", str(tmp_path / "o"), "--no-images", *extra], capsys)
    assert code == 2
    assert err.startswith("error:") and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, _, err = _run(["synth", "--n", "1", "--no-images", "--out", str(blocker / "sub")], capsys)
    assert code == 2 and err.startswith("error: --out") and "Traceback" not in err
    code, _, err = _run(["synth", "--n", "1", "--no-images", "--out", str(blocker)], capsys)
    assert code == 2 and err.startswith("error: --out")


def test_existing_folder_refused_then_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cohort"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code, _, err = _run(["synth", "--n", "2", "--no-images", "--out", str(out)], capsys)
    assert code == 2 and err.startswith("error:") and "--force" in err
    assert (out / "keep.txt").read_text() == "precious"
    # --force replaces only a folder that synth wrote (docs/outputs.md): a foreign file keeps it
    code, _, err = _run(["synth", "--n", "2", "--no-images", "--out", str(out), "--force"], capsys)
    assert code == 2 and err.startswith(f"error: --out {out}") and "not a folder that 'pfs_core synth' wrote" in err
    assert (out / "keep.txt").read_text() == "precious"
    (out / "keep.txt").unlink()
    assert _run(["synth", "--n", "2", "--no-images", "--out", str(out)], capsys)[0] == 0
    code, stdout, _ = _run(["synth", "--n", "2", "--no-images", "--out", str(out), "--force"], capsys)
    assert code == 0 and "Bayes AUROC" in stdout and "wall time" in stdout
    assert (out / "cohort.csv").exists() and (out / ".pfs_core-output.json").exists()
    assert not list(tmp_path.glob(".cohort.partial-*"))


def test_null_signal_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["synth", "--n", "3", "--no-images", "--out", str(tmp_path / "o"), "--signal",
                         "labs=0,pet=0,ct=0"], capsys)
    assert code == 0 and err.startswith("warning: --signal has all weights 0")
    code, _, err = _run(["synth", "--n", "3", "--no-images", "--out", str(tmp_path / "o2"), "--signal",
                         "labs=0,pet=1,ct=0"], capsys)
    assert code == 0 and "warning" not in err  # one modality with signal: nothing to warn about


def test_subprocess_error_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pfs_core", "synth", "--n", "2", "--signal", "foo=1", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


def test_cli_workers_and_jobs_must_agree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    code, _, err = _run(["synth", "--n", "2", "--out", str(out), "--workers", "2", "--jobs", "1"], capsys)
    assert code == 2 and err.startswith("error:") and "--workers" in err and "--jobs" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    code, _, err = _run(["synth", "--n", "2", "--out", str(out), "--no-images", "--workers", "2", "--jobs", "2"],
                        capsys)
    assert code == 0, err


def test_cli_execution_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for extra, needle in ((["--jobs", "0"], "--jobs"), (["--address", "auto"], "--backend ray")):
        code, _, err = _run(["synth", "--n", "2", "--out", str(tmp_path / "o"), "--no-images", *extra], capsys)
        assert code == 2 and err.startswith("error:") and needle in err, err
        assert not (tmp_path / "o").exists()
