"""The ingest app in-process (Starlette's TestClient) over a real catalog and log in a temporary data dir:
for request handling that needs no real server process (STYLE: keep subprocesses for what needs one)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from starlette.testclient import TestClient

from sluice.catalog.models import Source
from sluice.catalog.store import Catalog
from sluice.ingest.app import Services, create_app
from sluice.ingest.auth import SourceRegistry
from sluice.log.base import Entry
from sluice.log.sqlite import SqliteLog
from sluice.metrics import Metrics
from sluice.settings import Settings


@dataclass
class Ingest:
    client: TestClient
    log: SqliteLog
    catalog: Catalog
    web: Source
    drip: Source

    def stored_ids(self, source: Source) -> list[str]:
        return [m["messageId"] for m in self.stored(source)]

    def stored(self, source: Source) -> list[dict[str, Any]]:
        """The canonical messages the log holds for `source`, in order."""
        return [orjson.loads(e.body) for e in self.log.read(source.id, 0, 1_000_000)]

    def entries(self, source: Source) -> list[Entry]:
        return self.log.read(source.id, 0, 1_000_000)


@contextmanager
def ingest(
    data_dir: Path, settings: Settings | None = None, client: tuple[str, int] = ("127.0.0.1", 50000)
) -> Iterator[Ingest]:
    """`client` is the connection's peer address the app sees."""
    settings = settings or Settings(data_dir=data_dir)
    catalog = Catalog(data_dir)
    web = catalog.create_source("http", "Web", "web")
    drip = catalog.create_source("drip", "Drip", "drip")
    log = SqliteLog(data_dir / "log.db", settings.dedup_window_seconds)
    services = Services(settings=settings, registry=SourceRegistry(catalog), log=log, metrics=Metrics(),
                        status=lambda: None, problems=lambda: [])
    try:
        with TestClient(create_app(services), raise_server_exceptions=False, client=client) as test_client:
            yield Ingest(test_client, log, catalog, web, drip)
    finally:
        log.close()
