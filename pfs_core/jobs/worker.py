"""``python -m pfs_core.jobs.worker RUN_DIR -- COMMAND...``: run one background command and record its exit code.

Started by :func:`pfs_core.jobs.runs.start_run` as the leader of a new session/process
group. It runs COMMAND with stdout and stderr appended to ``RUN_DIR/log.txt`` and,
when COMMAND ends (normally, with an error, or killed), writes its exit status to
``RUN_DIR/exit_code`` (negative = killed by that signal). SIGTERM to the group
(:func:`pfs_core.jobs.runs.cancel_run`) stops COMMAND; the worker then still writes the code.
When COMMAND ends, ``RUN_DIR/input`` (the copy of the cohort's usable rows) is deleted,
so no patient values stay in the runs folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from pfs_core.io.outputs import atomic_write_text

LOG = "log.txt"
EXIT_CODE = "exit_code"
INPUT_FOLDER = "input"


def write_exit_code(run_dir: Path, code: int) -> None:
    """Write ``code`` to ``run_dir/exit_code`` atomically."""
    atomic_write_text(run_dir / EXIT_CODE, f"{code}\n")


def run(run_dir: Path, command: list[str]) -> int:
    """Run ``command`` with its output in ``run_dir/log.txt``; returns and records its exit status."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(run_dir / LOG, "ab") as log:
        try:
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=os.getcwd())
        except OSError as exc:
            log.write(f"error: cannot start the command ({exc})\n".encode())
            write_exit_code(run_dir, 127)
            return 127

        def forward(signum: int, _frame: object) -> None:
            child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        code = child.wait()
    # The copy of the cohort's rows (lab values included) is needed only while the command runs.
    shutil.rmtree(run_dir / INPUT_FOLDER, ignore_errors=True)
    write_exit_code(run_dir, code)
    return code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: python -m pfs_core.jobs.worker RUN_DIR -- COMMAND...\n")
        return 2
    return run(Path(args[0]), args[2:])


if __name__ == "__main__":
    raise SystemExit(main())
