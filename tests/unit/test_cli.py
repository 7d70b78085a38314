import subprocess
import sys

import pytest

from pfs_core.cli import COMMANDS, main


def test_help_lists_available_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "pfs_core" in out


def test_unknown_command_is_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error:")


def test_every_available_command_has_help():
    import importlib.util

    for name in COMMANDS:
        if importlib.util.find_spec(f"pfs_core.commands.{name}") is None:
            continue
        proc = subprocess.run([sys.executable, "-m", "pfs_core", name, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert name in proc.stdout
