"""The delivery process: every delivery worker, the embedded warehouse's loader, and the admin API.

It owns warehouse.duckdb (DuckDB allows one writing process), so admin SQL (`sluice query`), status
and later the reports and the console's data are served here, on the admin listener the supervisor
bound. It reads log.db itself and hands every write of it (cursor advances, dead letters, prunes, the
CLI's replays and re-drives) to the log-writer process. What ingest shows about delivery (`/health`'s
problems, the lag gauges of `/metrics`) it publishes every `status_interval_seconds`: the health file
in the run dir and the shared metrics directory.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import orjson

from sluice.analytics.reader import DuckDBReader
from sluice.analytics.service import report_service
from sluice.analytics.views import IdentityViewKeeper
from sluice.api.app import AdminServices, create_admin_app
from sluice.api.reports import REPORT_ROUTES
from sluice.api.schemas import SCHEMA_ROUTES, drop_source_schema
from sluice.catalog.store import Catalog
from sluice.console import app as web_console
from sluice.datadir import LOG_FILE, WAREHOUSE_FILE, DataDirError, advice
from sluice.delivery.manager import DeliveryManager
from sluice.delivery.state import DeliveryState
from sluice.destinations.warehouse import WarehouseTarget
from sluice.ingest.auth import SourceRegistry
from sluice.log.base import LogMismatch
from sluice.log.sqlite import SqliteLog
from sluice.log.wire import Codec, RemoteWriter
from sluice.metrics import Metrics
from sluice.server import http
from sluice.server.child import Child
from sluice.server.common import HEALTH_FILE, StartupError, admin_token
from sluice.server.log_role import WIRE_CLASSES
from sluice.settings import Settings
from sluice.warehouse.drip_catalog import DripCatalogSync
from sluice.warehouse.duckdb_engine import DuckDBWarehouse
from sluice.warehouse.loader import Caps
from sluice.warehouse.readonly import QueryLimits


class LogMismatchAtStart(StartupError):
    """The warehouse's cursor belongs to another log, or is ahead of this one."""


def check_cursors(warehouse: DuckDBWarehouse, log: SqliteLog) -> None:
    """Refuse to start when the warehouse has loaded further than this log goes, or from another log:
    new events would get seqs the cursor has passed and never load."""
    problems = []
    for consumer in warehouse.cursors():
        try:
            warehouse.check_log(consumer, log.generation(), log.head())
        except LogMismatch as e:
            problems.append(str(e))
    if problems:
        log.close()
        warehouse.close()
        raise LogMismatchAtStart(
            f"{log.path} does not match the warehouse: {'; '.join(problems)}.\n"
            "  Starting would reuse sequence numbers the warehouse has passed, and new events would never load.\n"
            f"  Restore {log.path.name} from a backup, or run `sluice recover` (with this data dir) to load what the\n"
            "  current log holds again, skipping rows the warehouse has, and continue from there."
        )


def resources(settings: Settings) -> dict[str, str]:
    """DuckDB's threads and memory for the embedded warehouse, from the settings (0: DuckDB's default)."""
    out = {}
    if settings.warehouse_threads:
        out["threads"] = str(settings.warehouse_threads)
    if settings.warehouse_memory_limit_mb:
        out["memory_limit"] = f"{settings.warehouse_memory_limit_mb}MB"
    return out


def open_warehouse(path: Path, wait_seconds: float, caps: Caps | None = None,
                   config: dict[str, str] | None = None) -> DuckDBWarehouse:
    """The embedded warehouse, or one line saying why not.

    Another process may hold the file for a moment: a `sluice query` run while no server was up holds
    it for at most the query time limit, and a delivery process that just died is being reaped; that
    long is waited for before giving up."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return DuckDBWarehouse(path, caps, config)
        except duckdb.IOException as e:
            text = str(e)
            if "lock" not in text.lower():
                raise DataDirError(f"{path} cannot be opened ({text.splitlines()[0]}): {advice(path)}") from None
            if time.monotonic() > deadline:
                raise DataDirError(
                    f"{path} is held by another process (a `sluice query`?) for more than {wait_seconds:g} s:"
                    f" stop it and start again ({text.splitlines()[0]})"
                ) from None
            time.sleep(0.2)
        except duckdb.Error as e:
            raise DataDirError(f"{path} cannot be opened ({str(e).splitlines()[0]}): {advice(path)}") from None


GAUGE_ROUNDS = 4


class Publisher(threading.Thread):
    """Publishes what ingest processes show about delivery, without ever waiting on a destination."""

    def __init__(self, manager: DeliveryManager, log: SqliteLog, metrics: Metrics, health_file: Path,
                 interval: float) -> None:
        super().__init__(name="publish-status", daemon=True)
        self.manager, self.log, self.metrics = manager, log, metrics
        self.health_file = health_file
        self.interval = interval
        self.halt = threading.Event()

    def publish(self, gauges: bool = True) -> None:
        if gauges:
            self.manager.status()  # refreshes the lag gauges (from the positions the workers last knew)
            self.metrics.log_head.set(self.log.head())
        data = orjson.dumps({"at_ms": int(time.time() * 1000), "problems": self.manager.problems()})
        tmp = self.health_file.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.health_file)  # readers see the old file or the new one, never half of one

    def run(self) -> None:
        rounds = 0
        while not self.halt.is_set():
            # Lag counts the events beyond each cursor: with a large backlog that is tens of ms of SQLite, so
            # the gauges are refreshed every GAUGE_ROUNDS rounds, and /health's problems every round.
            with contextlib.suppress(Exception):  # a locked file, a full disk: the next round tries again
                self.publish(gauges=rounds % GAUGE_ROUNDS == 0)
            rounds += 1
            self.halt.wait(self.interval)


def run(child: Child) -> None:
    settings = child.settings
    data_dir = Path(child.config.data_dir)
    if settings.deliver_nice:  # under contention, ingest (whose answers wait) goes first; a backlog waits
        os.nice(settings.deliver_nice)
    remote = RemoteWriter(child.config.log_socket, Codec(WIRE_CLASSES))
    catalog = Catalog(data_dir)
    log = SqliteLog(data_dir / LOG_FILE, settings.dedup_window_seconds, remote=remote,
                    poll_seconds=settings.log_poll_seconds)
    try:
        # A `sluice query` ends within its time limit; on a busy machine its interrupt and exit take a while more.
        warehouse = open_warehouse(data_dir / WAREHOUSE_FILE, settings.query_time_limit_seconds + 30,
                                   Caps.from_settings(settings), resources(settings))
    except DataDirError:
        log.close()
        raise
    check_cursors(warehouse, log)
    metrics = Metrics()
    registry = SourceRegistry(catalog)
    state = DeliveryState(data_dir / LOG_FILE, remote)
    manager = DeliveryManager(
        log, state, catalog, registry, lambda source: WarehouseTarget.embedded(warehouse, source), settings, metrics
    )
    limits = QueryLimits(settings.query_time_limit_seconds, settings.query_max_rows)

    def status() -> dict[str, Any]:
        return {"log_head": log.head(), "deliveries": manager.status()}

    admin_services = AdminServices(
        settings=settings, admin_token=admin_token(data_dir), query=lambda sql: warehouse.query(sql, limits),
        status=status, delivery_state=manager.apply,
        reports=report_service(catalog, lambda: DuckDBReader(warehouse.connection, limits), limits, settings),
        drop_schema=lambda schema: drop_source_schema(catalog, warehouse, schema),
    )
    console = web_console.for_server(admin_services, catalog, log, state, Path(child.config.run_dir))
    admin_app = create_admin_app(admin_services, routes=[*REPORT_ROUTES, *SCHEMA_ROUTES, *console.routes],
                                 console_rule=console.guard)
    web_console.attach(admin_app, console)
    publisher = Publisher(manager, log, metrics, Path(child.config.run_dir) / HEALTH_FILE,
                          settings.status_interval_seconds)
    servers = [(http.Server(http.config(admin_app, settings)), http.inherited(child.config.fds["admin"]))]
    manager.start()
    publisher.start()
    views = IdentityViewKeeper(DuckDBReader(warehouse.connection, limits), warehouse.connection, 5)
    views.start()
    drip_sync = DripCatalogSync(settings, catalog, warehouse.connection)
    drip_sync.start()
    try:
        http.run(http.serve(servers, child.ready))
    finally:
        publisher.halt.set()
        views.halt.set()
        drip_sync.halt.set()
        manager.stop()
        with contextlib.suppress(Exception):
            publisher.publish()  # the last word: nothing stalled any more
        log.close()
        warehouse.close()
