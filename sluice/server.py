"""`sluice serve`: assemble catalog, log, warehouse, delivery workers and the HTTP app, and run."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from sluice.catalog.store import Catalog
from sluice.delivery.manager import DeliveryManager
from sluice.delivery.state import LOG_FILE, DeliveryState
from sluice.destinations.warehouse import WarehouseTarget
from sluice.ingest.app import Services, create_app
from sluice.ingest.auth import SourceRegistry
from sluice.log.base import LogMismatch
from sluice.log.sqlite import SqliteLog
from sluice.metrics import Metrics
from sluice.settings import Settings
from sluice.warehouse.duckdb_engine import DuckDBWarehouse
from sluice.warehouse.loader import Caps

SERVER_FILE = "server.json"
ADMIN_TOKEN_FILE = "admin-token"
WAREHOUSE_FILE = "warehouse.duckdb"


class AlreadyRunning(RuntimeError):
    pass


def admin_token(data_dir: Path) -> str:
    """The admin token, created on first use, readable only by its owner."""
    path = data_dir / ADMIN_TOKEN_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _lock(data_dir: Path) -> int:
    fd = os.open(data_dir / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(f"another sluice server is already using {data_dir}") from None
    return fd


class LogMismatchAtStart(RuntimeError):
    pass


def _check_cursors(warehouse: DuckDBWarehouse, log: SqliteLog) -> None:
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


def serve(settings: Settings) -> None:
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock(data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    catalog = Catalog(data_dir)
    log = SqliteLog(data_dir / LOG_FILE, settings.dedup_window_seconds)
    warehouse = DuckDBWarehouse(data_dir / WAREHOUSE_FILE, Caps.from_settings(settings))
    _check_cursors(warehouse, log)
    metrics = Metrics()
    registry = SourceRegistry(catalog)

    state = DeliveryState(data_dir / LOG_FILE)
    manager = DeliveryManager(
        log, state, catalog, registry, lambda source: WarehouseTarget.embedded(warehouse, source), settings, metrics
    )

    def status() -> dict[str, Any]:
        return {"log_head": log.head(), "deliveries": manager.status()}

    services = Services(
        settings=settings,
        registry=registry,
        log=log,
        metrics=metrics,
        admin_token=admin_token(data_dir),
        query=warehouse.query,
        status=status,
    )
    server_file = data_dir / SERVER_FILE

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        manager.start()
        server_file.write_bytes(
            orjson.dumps({"pid": os.getpid(), "url": f"http://{settings.host}:{settings.port}"})
        )
        print(
            f"sluice is listening on http://{settings.host}:{settings.port}\n"
            f"  data dir:  {data_dir}\n"
            f"  warehouse: {data_dir / WAREHOUSE_FILE} (query it with: sluice query \"show all tables\")\n"
            + (
                ""
                if registry.all()
                else "  no sources yet; create one with:\n"
                "    sluice sources create http --name Web --schema web\n"
                "    sluice sources create drip --name Drip --schema drip\n"
            ),
            flush=True,
        )
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                server_file.unlink()
            manager.stop()
            log.close()
            warehouse.close()

    app = create_app(services, lifespan=lifespan)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        os.close(lock_fd)
