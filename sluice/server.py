"""`sluice serve`: assemble catalog, log, warehouse, delivery workers and the two HTTP listeners, and run.

One process, one event loop, two uvicorn servers: ingest (`--port`, public-facing if you choose) and
the admin API (`--admin-port`, 127.0.0.1 unless told otherwise). Both sockets are bound before
anything is said to be listening, so a busy port is one clear line and a non-zero exit; SIGINT and
SIGTERM stop both gracefully and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import uvicorn

from sluice.api.app import AdminServices, create_admin_app
from sluice.backends import embedded
from sluice.catalog.store import Catalog
from sluice.datadir import LOG_FILE, WAREHOUSE_FILE, DataDirError, advice
from sluice.delivery.manager import DeliveryManager
from sluice.delivery.state import DeliveryState
from sluice.destinations.warehouse import WarehouseTarget
from sluice.ingest.app import Services, create_app
from sluice.ingest.auth import SourceRegistry
from sluice.ingest.edge import protocol_for
from sluice.log.base import LogMismatch
from sluice.log.sqlite import SqliteLog
from sluice.metrics import Metrics
from sluice.settings import Settings
from sluice.warehouse.duckdb_engine import DuckDBWarehouse
from sluice.warehouse.loader import Caps
from sluice.warehouse.readonly import QueryLimits

SERVER_FILE = "server.json"
ADMIN_TOKEN_FILE = "admin-token"


class StartupError(RuntimeError):
    """The server cannot start; the message is one line for the user (what, and what to do)."""


class AlreadyRunning(StartupError):
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


class LogMismatchAtStart(StartupError):
    """The warehouse's cursor belongs to another log, or is ahead of this one."""


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


def _listen(host: str, port: int, flag: str) -> socket.socket:
    """A listening socket, or one line saying why not (before anything claims to be listening)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does: restart at once
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        hint = f"; is another sluice (or another program) using it? choose another with {flag}"
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
    return sock


def open_warehouse(path: Path, wait_seconds: float, caps: Caps | None = None) -> DuckDBWarehouse:
    """The embedded warehouse, or one line saying why not.

    Another process may hold the file for a moment: a `sluice query` run while no server was up holds
    it for at most the query time limit, so that long is waited for before giving up."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return DuckDBWarehouse(path, caps)
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


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve`, which stops both listeners on one signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=protocol_for(settings),
        lifespan="off",  # serve() starts and stops everything around the listeners
        access_log=False,
        log_level="warning",
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 by default: the ingest app does it itself, only
        # for settings.trusted_proxies (sluice/ingest/app.py, IngestApp), so no client can pick its context.ip.
        proxy_headers=False,
        timeout_keep_alive=settings.keep_alive_timeout_seconds,  # type: ignore[arg-type]
        timeout_graceful_shutdown=10,
    )


async def _run(servers: list[tuple[_Server, socket.socket]], started: Any) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server, _ in servers:
            if server.should_exit:  # a second Ctrl-C: stop waiting for open requests
                server.force_exit = True
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    while not all(server.started for server, _ in servers) and not any(t.done() for t in tasks):
        await asyncio.sleep(0.01)
    if all(server.started for server, _ in servers):
        started()
    else:
        stop()
    await asyncio.gather(*tasks)


def serve(settings: Settings) -> None:
    try:
        scale_out = not embedded(settings)
    except ValueError as e:
        raise StartupError(str(e)) from None
    if scale_out:  # the backends exist (sluice/backends.py); running them in `serve` comes with --role
        raise StartupError(
            "SLUICE_LOG / SLUICE_CATALOG name scale-out backends, which `sluice serve` does not run yet"
            " (docs/scale-out.md#what-is-not-wired-yet); unset them to serve from the data dir"
        )
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock(data_dir)
    sockets: list[socket.socket] = []
    try:
        sockets.append(_listen(settings.host, settings.port, "--port"))
        sockets.append(_listen(settings.admin_host, settings.admin_port, "--admin-port"))
        _serve(settings, data_dir, sockets)
    finally:
        for sock in sockets:
            sock.close()
        os.close(lock_fd)


def _serve(settings: Settings, data_dir: Path, sockets: list[socket.socket]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    catalog = Catalog(data_dir)
    log = SqliteLog(data_dir / LOG_FILE, settings.dedup_window_seconds)
    try:
        warehouse = open_warehouse(data_dir / WAREHOUSE_FILE, settings.query_time_limit_seconds + 5,
                                   Caps.from_settings(settings))
    except DataDirError:
        log.close()
        raise
    _check_cursors(warehouse, log)
    metrics = Metrics()
    registry = SourceRegistry(catalog)
    state = DeliveryState(data_dir / LOG_FILE, log.writer)
    manager = DeliveryManager(
        log, state, catalog, registry, lambda source: WarehouseTarget.embedded(warehouse, source), settings, metrics
    )
    limits = QueryLimits(settings.query_time_limit_seconds, settings.query_max_rows)

    def status() -> dict[str, Any]:
        return {"log_head": log.head(), "deliveries": manager.status()}

    ingest_app = create_app(Services(
        settings=settings, registry=registry, log=log, metrics=metrics, status=manager.status,
        problems=manager.problems,
    ))
    admin_app = create_admin_app(AdminServices(
        settings=settings, admin_token=admin_token(data_dir), query=lambda sql: warehouse.query(sql, limits),
        status=status, delivery_state=state.apply,
    ))
    server_file = data_dir / SERVER_FILE
    ingest_url = f"http://{settings.host}:{sockets[0].getsockname()[1]}"
    admin_url = f"http://{settings.admin_host}:{sockets[1].getsockname()[1]}"

    def started() -> None:
        server_file.write_bytes(orjson.dumps({"pid": os.getpid(), "url": ingest_url, "admin_url": admin_url}))
        print(
            f"sluice is listening on {ingest_url}\n"
            f"  admin API: {admin_url} (token in {data_dir / ADMIN_TOKEN_FILE})\n"
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

    servers = [
        (_Server(_uvicorn_config(ingest_app, settings)), sockets[0]),
        (_Server(_uvicorn_config(admin_app, settings)), sockets[1]),
    ]
    manager.start()
    try:
        uvicorn_loop = servers[0][0].config.get_loop_factory()
        with asyncio.Runner(loop_factory=uvicorn_loop) as runner:
            runner.run(_run(servers, started))
    finally:
        with contextlib.suppress(FileNotFoundError):
            server_file.unlink()
        manager.stop()
        log.close()
        warehouse.close()
