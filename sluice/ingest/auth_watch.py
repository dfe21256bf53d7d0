"""Write keys and webhook tokens for a catalog that announces its changes (the PostgreSQL catalog).

`SourceRegistry` (auth.py) notices changes to the embedded catalog through its files and SQLite's
`data_version`; a server-side catalog has no files to stat, so this registry reloads whenever the
catalog's watch reports a new version (`catalog/postgres.py`: NOTIFY, with a periodic re-check). The
check on each request is one attribute read.
"""

from __future__ import annotations

import threading
from typing import Protocol

from sluice.catalog.models import Source
from sluice.ingest.auth import SourceRegistry


class Watch(Protocol):
    version: int

    def close(self) -> None: ...


class WatchedCatalog(Protocol):
    def watch(self) -> Watch: ...

    def list_sources(self) -> list[Source]: ...


class WatchedSourceRegistry(SourceRegistry):
    def __init__(self, catalog: WatchedCatalog) -> None:  # no super(): nothing here is a file
        self._catalog = catalog  # type: ignore[assignment]
        self._lock = threading.Lock()
        self._watch = catalog.watch()
        self._loaded: int | None = None
        self._by_key: dict[str, Source] = {}
        self._by_token: dict[str, Source] = {}
        self._by_segment_token: dict[str, Source] = {}
        self._by_id: dict[int, Source] = {}

    def _fresh(self) -> None:
        version = self._watch.version
        if version == self._loaded:
            return
        with self._lock:
            if version == self._loaded:
                return
            sources = self._catalog.list_sources()
            self._by_key = {s.write_key: s for s in sources}
            self._by_token = {s.webhook_token: s for s in sources if s.webhook_token}
            self._by_segment_token = {s.segment_token: s for s in sources if s.segment_token}
            self._by_id = {s.id: s for s in sources}
            self._loaded = version

    def close(self) -> None:
        self._watch.close()
