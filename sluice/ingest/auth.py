"""Who is sending: write keys (HTTP Basic or body `writeKey`), Drip webhook tokens and Segment webhook tokens."""

from __future__ import annotations

import base64
import binascii
import os
import threading
import time

from sluice.catalog.models import Source
from sluice.catalog.store import Catalog


def basic_username(header: str | None) -> str | None:
    """The write key from `Authorization: Basic base64("<key>:")`; a key without the colon is tolerated.

    None without a Basic header; ValueError, with the reason, for one that is not base64 of UTF-8 text
    (header bytes arrive as latin-1, so any byte can be in `header`)."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip().encode("ascii"), validate=True).decode()
    except (UnicodeError, binascii.Error):
        raise ValueError("the Authorization header's Basic credentials are not base64 of key: (UTF-8)") from None
    return decoded.split(":", 1)[0] or None


_SETTLE_NS = 1_000_000_000


class SourceRegistry:
    """Write key / webhook token -> source, reloaded whenever the catalog changes on disk."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._lock = threading.Lock()
        # data_version is per connection and the catalog's connections are per thread, so each
        # thread remembers the version it last saw on its own connection.
        self._seen = threading.local()
        self._files = (catalog.path, catalog.path.with_name(catalog.path.name + "-wal"))
        self._stamp: tuple[int, ...] = ()
        self._by_key: dict[str, Source] = {}
        self._by_token: dict[str, Source] = {}
        self._by_segment_token: dict[str, Source] = {}
        self._by_id: dict[int, Source] = {}

    def _files_stamp(self) -> tuple[int, ...]:
        # Any commit by another process touches the WAL file (or, after a checkpoint, the database):
        # two stat calls are far cheaper than asking SQLite on every request.
        stamp: list[int] = []
        for f in self._files:
            try:
                st = os.stat(f)
            except FileNotFoundError:
                stamp += (0, 0)
                continue
            stamp += (st.st_mtime_ns, st.st_size)
        return tuple(stamp)

    def _fresh(self) -> None:
        stamp = self._files_stamp()
        # A commit's files change a moment before SQLite publishes it: while the files are that
        # fresh, ask SQLite every time instead of trusting the stamp.
        settled = time.time_ns() - max(stamp[0::2]) > _SETTLE_NS
        if stamp == self._stamp and settled and getattr(self._seen, "version", None) is not None:
            return
        if settled:
            self._stamp = stamp
        version = self._catalog.data_version()
        if version == getattr(self._seen, "version", None):
            return
        with self._lock:
            sources = self._catalog.list_sources()
            self._by_key = {s.write_key: s for s in sources}
            self._by_token = {s.webhook_token: s for s in sources if s.webhook_token}
            self._by_segment_token = {s.segment_token: s for s in sources if s.segment_token}
            self._by_id = {s.id: s for s in sources}
        self._seen.version = version

    def by_write_key(self, key: str) -> Source | None:
        self._fresh()
        return self._by_key.get(key)

    def by_webhook_token(self, token: str) -> Source | None:
        self._fresh()
        return self._by_token.get(token)

    def by_segment_token(self, token: str) -> Source | None:
        self._fresh()
        return self._by_segment_token.get(token)

    def all(self) -> list[Source]:
        self._fresh()
        return list(self._by_id.values())
