"""The ingest app in-process (Starlette's TestClient) over a real catalog and log in a temporary data dir:
for request handling that needs no real server process (STYLE: keep subprocesses for what needs one)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.testclient import TestClient

from sluice.catalog.models import Source
from sluice.catalog.store import Catalog
from sluice.ingest.app import Services, create_app
from sluice.ingest.auth import SourceRegistry
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
        import orjson

        return [orjson.loads(e.body)["messageId"] for e in self.log.read(source.id, 0, 1_000_000)]


@contextmanager
def ingest(data_dir: Path, settings: Settings | None = None) -> Iterator[Ingest]:
    settings = settings or Settings(data_dir=data_dir)
    catalog = Catalog(data_dir)
    web = catalog.create_source("http", "Web", "web")
    drip = catalog.create_source("drip", "Drip", "drip")
    log = SqliteLog(data_dir / "log.db", settings.dedup_window_seconds)
    services = Services(settings=settings, registry=SourceRegistry(catalog), log=log, metrics=Metrics(),
                        status=lambda: None, problems=lambda: [])
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            yield Ingest(client, log, catalog, web, drip)
    finally:
        log.close()
