"""The Drip catalog in the embedded warehouse, in the Drip source's schema, and the sync that keeps it.

Tables (their names start with `_drip_`, which no event's table can have, so they never meet the loader):
- `_drip_broadcasts (id, name, subject, status, send_at, created_at)`
- `_drip_campaigns (id, name, status, created_at)` (email series)
- `_drip_workflows (id, name, status, created_at)`
- `_drip_email_broadcasts (email_id, broadcast_id, title)`: which broadcast an email was
each replaced whole by every sync, in one transaction, with `synced_at`.

The deliver process (it owns the DuckDB file) runs `DripCatalogSync`: every connected Drip source is
synced when it never was or `drip_sync_interval_seconds` have passed (default hourly: a sync makes a
handful of listing calls and 4 of the metrics endpoint's 20 an hour). A 429 or another failure is kept
as the connection's `sync_error` (shown by `sources show`) and tried again after its `Retry-After`, or 5
minutes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import duckdb

from sluice.settings import Settings
from sluice.sources.drip_api import DripAPI, DripAPIError
from sluice.sources.drip_catalog import DripCatalog, fetch_catalog
from sluice.sources.drip_store import DripStore
from sluice.warehouse.naming import quote_ident

TABLES: dict[str, list[tuple[str, str]]] = {
    "_drip_broadcasts": [("id", "VARCHAR"), ("name", "VARCHAR"), ("subject", "VARCHAR"), ("status", "VARCHAR"),
                         ("send_at", "VARCHAR"), ("created_at", "VARCHAR")],
    "_drip_campaigns": [("id", "VARCHAR"), ("name", "VARCHAR"), ("status", "VARCHAR"), ("created_at", "VARCHAR")],
    "_drip_workflows": [("id", "VARCHAR"), ("name", "VARCHAR"), ("status", "VARCHAR"), ("created_at", "VARCHAR")],
    "_drip_email_broadcasts": [("email_id", "VARCHAR"), ("broadcast_id", "VARCHAR"), ("title", "VARCHAR")],
}
TICK_SECONDS = 30.0
FAILURE_PAUSE_SECONDS = 300.0


def _rows(catalog: DripCatalog) -> dict[str, list[tuple[Any, ...]]]:
    def text(v: Any) -> str | None:
        return None if v is None else str(v)

    return {
        "_drip_broadcasts": [tuple(text(b.get(k)) for k, _ in TABLES["_drip_broadcasts"]) for b in catalog.broadcasts],
        "_drip_campaigns": [tuple(text(c.get(k)) for k, _ in TABLES["_drip_campaigns"]) for c in catalog.campaigns],
        "_drip_workflows": [tuple(text(w.get(k)) for k, _ in TABLES["_drip_workflows"]) for w in catalog.workflows],
        "_drip_email_broadcasts": list(catalog.email_broadcasts),
    }


def write_catalog(con: duckdb.DuckDBPyConnection, schema: str, catalog: DripCatalog) -> dict[str, int]:
    """Replace the schema's Drip catalog tables with `catalog`, in one transaction; rows per table."""
    s = quote_ident(schema)
    counts = {}
    con.execute("BEGIN")
    try:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        for table, rows in _rows(catalog).items():
            columns = TABLES[table]
            t = f"{s}.{quote_ident(table)}"
            ddl = ", ".join(f"{quote_ident(n)} {ty}" for n, ty in columns)
            con.execute(f"CREATE TABLE IF NOT EXISTS {t} ({ddl}, synced_at TIMESTAMPTZ)")
            con.execute(f"DELETE FROM {t}")
            if rows:
                marks = ", ".join("?" for _ in columns)
                con.executemany(f"INSERT INTO {t} VALUES ({marks}, now())", rows)
            counts[table] = len(rows)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return counts


def sync_source(settings: Settings, store: DripStore, source: Any,
                connect: Callable[[], duckdb.DuckDBPyConnection], today: Any = None) -> dict[str, int]:
    """Fetch one connected source's Drip catalog and write it; DripAPIError when Drip refuses."""
    connection = store.get(source.id)
    if connection is None:
        raise ValueError(f"source {source.schema!r} is not connected to a Drip account")
    with DripAPI(connection.account_id, connection.api_token, settings.drip_api_url, max_wait=10) as api:
        catalog = fetch_catalog(api, today or datetime.now(UTC).date())
    con = connect()
    try:
        counts = write_catalog(con, source.schema, catalog)
    finally:
        con.close()
    store.synced(source.id, None)
    return counts


class DripCatalogSync(threading.Thread):
    def __init__(self, settings: Settings, catalog: Any, connect: Callable[[], duckdb.DuckDBPyConnection]) -> None:
        super().__init__(name="drip-catalog-sync", daemon=True)
        self.settings, self.catalog, self.connect = settings, catalog, connect
        self.halt = threading.Event()
        self._not_before: dict[int, float] = {}  # after a failure: wait out Retry-After, or FAILURE_PAUSE_SECONDS

    def due(self, synced_at: str | None, now: datetime) -> bool:
        if synced_at is None:
            return True
        last = datetime.fromisoformat(synced_at.replace("Z", "+00:00"))
        return (now - last).total_seconds() >= self.settings.drip_sync_interval_seconds

    def run_once(self) -> None:
        store = DripStore(self.settings.data_dir)
        sources = {s.id: s for s in self.catalog.list_sources() if s.type == "drip"}
        for connection in store.all():
            source = sources.get(connection.source_id)
            now = datetime.now(UTC)
            if source is None or not self.due(connection.synced_at, now):
                continue
            if now.timestamp() < self._not_before.get(source.id, 0.0):
                continue
            try:
                sync_source(self.settings, store, source, self.connect)
            except (DripAPIError, ValueError, duckdb.Error) as e:
                wait = max(FAILURE_PAUSE_SECONDS, getattr(e, "retry_after", None) or 0.0)
                self._not_before[source.id] = now.timestamp() + wait
                store.synced(source.id, str(e))

    def run(self) -> None:
        while not self.halt.is_set():
            with contextlib.suppress(Exception):  # a locked file, a closing warehouse: the next round tries again
                self.run_once()
            self.halt.wait(min(TICK_SECONDS, self.settings.drip_sync_interval_seconds))
