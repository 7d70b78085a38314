"""Exception types that reach the user as one plain message.

Every problem with what a user gave us (a file, a field, an argument) raises a
subclass of :class:`PfsError`. The command line prints ``error: <message>`` and
exits with status 2; the dashboard shows the message in an error box. Messages
name the file or field, what is wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PfsError(Exception):
    """A problem the user can fix; never shown with a traceback."""


class InputError(PfsError):
    """An input file or value cannot be used (wrong shape, units, geometry...)."""


class UsageError(PfsError):
    """A command-line argument or option is invalid."""


class BundleError(PfsError):
    """A model bundle is missing, incomplete or fails its hash check."""


@contextmanager
def reading(path: Path, *, what: str, accepted: str) -> Iterator[None]:
    """Turn an unexpected error while reading ``path`` into one InputError naming it, ``what`` it should
    be (e.g. "this image") and the ``accepted`` formats; our own InputErrors pass unchanged."""
    try:
        yield
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot read {what} ({type(exc).__name__}: {exc}); give {accepted}") from exc
