"""JSON text from bytes a user gave, with one plain reason when it cannot be read (for the caller's message)."""

from __future__ import annotations

import json
from typing import Any


class JsonProblem(ValueError):
    """Why bytes are not JSON we can use (``str(exc)``: the reason, for a message that names the file)."""


def decode_json(raw: bytes) -> Any:
    """``raw`` (UTF-8, with or without a byte-order mark) as a JSON value; :class:`JsonProblem` otherwise."""
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        reason = "nested too deeply"
    except ValueError:  # Python refuses to read an integer of more than 4300 digits
        reason = "a number has too many digits"
    raise JsonProblem(reason)
