"""Unexpected errors in the dashboard: a short message with an error id on the page, the traceback in the server log.

An input problem is a :class:`pfs_core.errors.PfsError` and gets its own error box
(:func:`pfs_ui.common.show_error`); anything else is a bug. The user then sees what
failed and an id to quote, never a traceback (``client.showErrorDetails = "none"`` in
``.streamlit/config.toml`` covers what escapes these helpers). The log holds the
traceback with every number of the exception messages masked, so no lab value or voxel
value reaches it; file names and code lines are kept.
"""

from __future__ import annotations

import logging
import re
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st

from pfs_core.errors import PfsError
from pfs_ui.common import show_error

LOGGER = logging.getLogger("pfs_ui")
_NUMBER = re.compile(r"[-+]?\d[\d.,eE+-]*")


@dataclass
class Outcome:
    """What :func:`guarded` saw: ``failed`` after an error box, ``error_id`` after an unexpected error."""

    failed: bool = False
    error_id: str | None = None


def masked_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` (and of its causes), each exception message with its numbers masked as ``#``."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}"
                     f"{type(current).__name__}: {_NUMBER.sub('#', str(current))}")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n\nwhich was raised while handling or from:\n\n".join(parts)


def report_unexpected(exc: BaseException, *, doing: str) -> str:
    """Log ``exc`` under a new error id and show a short error box; returns the id.

    ``doing``: what the page was doing, in words a user knows ("predicting this case").
    """
    error_id = uuid.uuid4().hex[:8]
    LOGGER.error("unexpected error %s while %s\n%s", error_id, doing, masked_traceback(exc))
    st.error(f"Something went wrong while {doing}: an error in the program, not in your input (error id "
             f"{error_id}). Try again; if it happens again, report this id: the details are in the server log.",
             icon=":material/error:")
    return error_id


@contextmanager
def guarded(doing: str) -> Iterator[Outcome]:
    """Run the block; an input problem becomes its error box, anything else :func:`report_unexpected`.

    The block stops at the error and the page goes on; check ``outcome.failed`` after it.
    Streamlit's own control flow (``st.stop``, reruns) is not an ``Exception`` and passes through.
    """
    outcome = Outcome()
    try:
        yield outcome
    except PfsError as exc:
        outcome.failed = True
        show_error(exc)
    except Exception as exc:  # noqa: BLE001 - the point: no traceback in the browser, one id in the log
        outcome.failed = True
        outcome.error_id = report_unexpected(exc, doing=doing)
