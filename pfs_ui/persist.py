"""The Case Explorer's inputs kept across a browser reload, in this server process's memory only.

A reload starts a new Streamlit session, which would lose the uploads and the typed labs. The page keeps
them in :data:`STORE`, keyed by a hash of this browser's XSRF token (the ``_streamlit_xsrf`` cookie that
Streamlit sets with XSRF protection on, its default; the cookie's random mask changes with every page
load but the token it masks does not). Never on disk: a server restart forgets everything. An entry is
dropped after :data:`TTL_S` without use, the oldest first when the store is over :data:`MAX_TOTAL_BYTES`
or :data:`MAX_ENTRIES`, and a browser's files that together exceed :data:`MAX_ENTRY_BYTES` are not kept.
Without the cookie (XSRF protection turned off) nothing is kept: an id in the URL instead would hand the
case to whoever is given the link. docs/input.md, "Case inputs across a reload".

:class:`InputStore` is plain Python; the functions below it are the Streamlit glue.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

#: An entry unused for this long is forgotten (seconds).
TTL_S = 60 * 60
#: Files of one browser kept at most (bytes): a PET, a CT and organ masks at Streamlit's 200 MB per file.
MAX_ENTRY_BYTES = 1024 * 1024 * 1024
#: Files of all browsers kept at most (bytes); past it the least recently used entries go first.
MAX_TOTAL_BYTES = 2 * 1024 * 1024 * 1024
#: Browsers kept at most.
MAX_ENTRIES = 200
#: The cookie Streamlit's XSRF protection sets (starlette_server_config.XSRF_COOKIE_NAME in Streamlit 1.67).
XSRF_COOKIE = "_streamlit_xsrf"


@dataclass(frozen=True)
class KeptFile:
    """An uploaded file's name and bytes, kept for a reload; ``file_id`` is the upload's own id."""

    name: str
    data: bytes
    file_id: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Entry:
    """One browser's inputs: widget values by session-state key, and files by role (``pet``, ``ct``, ``organs``)."""

    fields: dict[str, Any] = field(default_factory=dict)
    files: dict[str, tuple[KeptFile, ...]] = field(default_factory=dict)
    used: float = 0.0

    @property
    def file_bytes(self) -> int:
        return sum(f.size for files in self.files.values() for f in files)


class InputStore:
    """Entries by browser key, with a time to live and size caps; safe to use from the sessions' threads."""

    def __init__(self, *, ttl_s: float = TTL_S, max_entry_bytes: int = MAX_ENTRY_BYTES,
                 max_total_bytes: int = MAX_TOTAL_BYTES, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.max_entry_bytes, self.max_total_bytes = ttl_s, max_entry_bytes, max_total_bytes
        self.max_entries, self._clock = max_entries, clock
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def get(self, browser: str) -> Entry | None:
        """The browser's entry (a copy of its mappings; its use time renewed), or None when none or expired."""
        with self._lock:
            self._expire()
            entry = self._entries.get(browser)
            if entry is None:
                return None
            entry.used = self._clock()
            return Entry(fields=dict(entry.fields), files=dict(entry.files), used=entry.used)

    def put_fields(self, browser: str, fields: Mapping[str, Any]) -> None:
        """Replace the browser's widget values."""
        with self._lock:
            self._entry(browser).fields = dict(fields)
            self._shrink(browser)

    def put_files(self, browser: str, role: str, files: tuple[KeptFile, ...]) -> bool:
        """Keep ``files`` as the browser's ``role`` (none: forget the role); False when over the caps (not kept)."""
        with self._lock:
            entry = self._entry(browser)
            entry.files.pop(role, None)
            if not files:
                return True
            if entry.file_bytes + sum(f.size for f in files) > min(self.max_entry_bytes, self.max_total_bytes):
                return False
            entry.files[role] = tuple(files)
            self._shrink(browser)
            return True

    def forget(self, browser: str) -> None:
        """Drop everything kept for the browser."""
        with self._lock:
            self._entries.pop(browser, None)

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)

    def total_bytes(self) -> int:
        with self._lock:
            return sum(e.file_bytes for e in self._entries.values())

    def _entry(self, browser: str) -> Entry:
        self._expire()
        entry = self._entries.setdefault(browser, Entry())
        entry.used = self._clock()
        return entry

    def _expire(self) -> None:
        now = self._clock()
        for browser in [b for b, e in self._entries.items() if now - e.used > self.ttl_s]:
            del self._entries[browser]

    def _shrink(self, keep: str) -> None:
        """Drop the least recently used other entries until the caps hold."""
        by_age = sorted((b for b in self._entries if b != keep), key=lambda b: self._entries[b].used)
        while by_age and (len(self._entries) > self.max_entries
                          or sum(e.file_bytes for e in self._entries.values()) > self.max_total_bytes):
            del self._entries[by_age.pop(0)]


#: The store of this server process (shared by its sessions; gone when it stops).
STORE = InputStore()


def xsrf_token(cookie: str | None) -> bytes | None:
    """The token inside a ``_streamlit_xsrf`` cookie (``2|mask|masked|time``: the mask changes per page
    load, the token does not), or None for no cookie or one that cannot be read."""
    if not cookie:
        return None
    parts = cookie.strip("\"'").split("|")
    try:
        if len(parts) == 4 and parts[0] == "2":
            mask, masked = binascii.a2b_hex(parts[1]), binascii.a2b_hex(parts[2])
            if not mask:
                return None
            token = bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked))
        else:
            token = binascii.a2b_hex(parts[0])
    except (binascii.Error, ValueError):
        return None
    return token or None


def browser_key() -> str | None:
    """This browser's key in :data:`STORE` (a hash of its XSRF token), or None where the cookie is absent."""
    token = xsrf_token(st.context.cookies.to_dict().get(XSRF_COOKIE))
    return None if token is None else hashlib.sha256(b"pfs-case-inputs\0" + token).hexdigest()


class RestoredFile(io.BytesIO):
    """A kept file handed to the page as if uploaded: ``name``, ``size``, ``file_id``, ``getvalue``, ``getbuffer``."""

    def __init__(self, kept: KeptFile) -> None:
        super().__init__(kept.data)
        self.name, self.size, self.file_id, self.type = kept.name, kept.size, kept.file_id, ""


def kept_file(upload: Any) -> KeptFile:
    """An upload (Streamlit's UploadedFile, or a restored one) as a :class:`KeptFile`."""
    file_id = getattr(upload, "file_id", None) or hashlib.sha256(upload.getvalue()).hexdigest()
    return KeptFile(name=str(upload.name), data=upload.getvalue(), file_id=str(file_id))
