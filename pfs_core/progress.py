"""Machine-readable progress: one JSON line per step, appended to a file the caller chooses.

The long loops of ``benchmark`` and ``train`` call :func:`emit`
(:func:`pfs_core.preprocessing.model_grid.preprocess_cohort`: one step per patient;
:func:`pfs_core.training.cv.cross_validate`: one step per model fitted on one fold). While a
sink is open (the commands' ``--progress-file PATH``, or :func:`writing_to` from Python) each
call appends one line (wrapped here) and flushes it::

    {"stage": "cross-validation", "done": 5, "total": 48, "time": 1767225600.123,
     "model": "pet_cnn", "repeat": 0, "fold": 2}

``done`` of ``total`` steps were complete at ``time`` (Unix seconds); the other keys name the
step that starts now. A stage starts with a line with ``done`` 0 and ends with ``done == total``.
The lines hold stage names, counts and model/fold names, never patient ids or values. Without a
sink :func:`emit` does nothing. :func:`read_steps` reads the lines back
(:func:`pfs_core.jobs.runs.progress` turns them into a fraction and the time left).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

#: Keys of every line; any other key describes the step that starts.
KEYS: tuple[str, ...] = ("stage", "done", "total", "time")

_sink: TextIO | None = None


@contextmanager
def writing_to(path: str | Path | None) -> Iterator[None]:
    """Append the progress lines of the code inside the ``with`` block to ``path`` (None: no change).

    The file is opened (created) on entry, so an unwritable path raises OSError before any work.
    """
    global _sink
    if path is None:
        yield
        return
    previous = _sink
    with open(path, "a", encoding="utf-8") as handle:
        _sink = handle
        try:
            yield
        finally:
            _sink = previous


def emit(stage: str, done: int, total: int, **info: Any) -> None:
    """Append ``{"stage", "done", "total", "time", **info}`` to the open sink, if any (flushed at once).

    A failing write (e.g. a full disk) turns progress off with one warning on stderr instead of
    stopping the work.
    """
    global _sink
    if _sink is None:
        return
    line = {"stage": stage, "done": int(done), "total": int(total), "time": round(time.time(), 3), **info}
    try:
        _sink.write(json.dumps(line) + "\n")
        _sink.flush()
    except (OSError, ValueError) as exc:  # ValueError: the file was closed
        sys.stderr.write(f"warning: progress file not written any more ({exc})\n")
        _sink = None


def read_steps(path: str | Path) -> list[dict[str, Any]]:
    """The progress lines in ``path``, oldest first ([] without the file; a partial or foreign line is skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    steps = []
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if (isinstance(line, dict) and isinstance(line.get("stage"), str)
                and all(isinstance(line.get(k), int | float) for k in KEYS[1:])):
            steps.append(line)
    return steps
