"""Which backend runs each part, chosen by name (DESIGN: "Two deployments, one code path").

As uvicorn maps a setting's value to an implementation and imports only the one in use, these tables
map a backend's name (from the scheme of `SLUICE_LOG` / `SLUICE_CATALOG`) to a function that opens it,
importing its module only then:

| part | `sqlite` (empty URL: the data dir) | scale-out |
|---|---|---|
| log | `log.db` (`log/sqlite.py`) | `nats`: a JetStream stream (`log/nats.py`) |
| catalog | `catalog.db` (`catalog/store.py`) | `postgresql` (`catalog/postgres.py`) |
| delivery state | beside the catalog's kind: `log.db` tables | `postgresql` tables (`delivery/pg_state.py`) |
| destination cursors | where the log is: `log.db` (or PostgreSQL) | `nats`: durable consumers |

`open_backends(settings)` builds all four for a process: the scale-out roles of `sluice serve`
(`server/scaleout.py`) and the CLI's delivery commands take them from here, and `deployment()` tells
`sluice serve` which layout runs them, so no other module asks which backend runs. The JetStream log
is for several nodes, so its delivery state must be shared too: it needs the PostgreSQL catalog.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluice.datadir import LOG_FILE
from sluice.log.base import Log
from sluice.settings import Settings

EMBEDDED = "sqlite"


# -- opening each backend (imports happen here, for the one in use) ------------------------------


def _sqlite_log(settings: Settings, readonly: bool) -> Log:
    from sluice.log.sqlite import SqliteLog

    return SqliteLog(settings.data_dir / LOG_FILE, settings.dedup_window_seconds, readonly=readonly)


def _nats_log(settings: Settings, readonly: bool) -> Log:
    from sluice.log.nats import NatsLog

    return NatsLog.from_settings(settings, readonly=readonly)


def _sqlite_catalog(settings: Settings) -> Any:
    from sluice.catalog.store import Catalog

    return Catalog(settings.data_dir)


def _pg_catalog(settings: Settings) -> Any:
    from sluice.catalog.postgres import PostgresCatalog

    return PostgresCatalog(settings.catalog, settings.catalog_poll_seconds)


def _sqlite_state(settings: Settings, log: Log, cursors: Any) -> Any:
    from sluice.delivery.state import DeliveryState

    # The embedded state shares log.db and its one writer thread (None: a read-only log, the CLI).
    return DeliveryState(settings.data_dir / LOG_FILE, getattr(log, "writer", None))


def _pg_state(settings: Settings, log: Log, cursors: Any) -> Any:
    from sluice.delivery.pg_state import PostgresDeliveryState

    return PostgresDeliveryState(settings.catalog, cursors)


def _jetstream_cursors(settings: Settings, log: Log) -> Any:
    from sluice.delivery.jetstream_cursors import JetStreamCursors
    from sluice.log.nats import NatsLog

    assert isinstance(log, NatsLog)
    return JetStreamCursors(log, settings.nats_ack_wait_seconds)


def _local_owners(settings: Settings) -> Any:
    from sluice.delivery.ownership import LocalOwners

    return LocalOwners()


def _pg_owners(settings: Settings) -> Any:
    from sluice.delivery.ownership import PgOwners

    return PgOwners(settings.catalog, settings.nats_stream)


def _sqlite_sources(catalog: Any) -> Any:
    from sluice.ingest.auth import SourceRegistry

    return SourceRegistry(catalog)


def _watched_sources(catalog: Any) -> Any:
    from sluice.ingest.auth_watch import WatchedSourceRegistry

    return WatchedSourceRegistry(catalog)


LOG_BACKENDS: dict[str, Callable[[Settings, bool], Log]] = {"sqlite": _sqlite_log, "nats": _nats_log}
CATALOG_BACKENDS: dict[str, Callable[[Settings], Any]] = {"sqlite": _sqlite_catalog, "postgresql": _pg_catalog}
# Delivery state lives with the catalog (shared when the catalog is); cursors live with the log.
STATE_BACKENDS: dict[str, Callable[[Settings, Log, Any], Any]] = {"sqlite": _sqlite_state, "postgresql": _pg_state}
CURSOR_STORES: dict[str, Callable[[Settings, Log], Any] | None] = {"sqlite": None, "nats": _jetstream_cursors}
SOURCE_REGISTRIES: dict[str, Callable[[Any], Any]] = {"sqlite": _sqlite_sources, "postgresql": _watched_sources}
# Who runs each (source, destination) worker: one process on one machine; among deliver nodes, the holder of a
# PostgreSQL advisory lock (delivery/ownership.py). Follows the catalog, which every deliver node shares.
OWNERSHIP: dict[str, Callable[[Settings], Any]] = {"sqlite": _local_owners, "postgresql": _pg_owners}
# Whether every node (and the CLI) reads and writes the delivery state directly: shared state needs no running
# server to go through (the embedded log.db has one writer, the server, while it runs).
SHARED_STATE: dict[str, bool] = {"sqlite": False, "postgresql": True}
# How `sluice serve` runs (sluice/server/): the embedded layout (a log writer, delivery owning DuckDB, ingest),
# or the scale-out roles on shared engines (`--role ingest|deliver|all`, no log writer, no DuckDB).
DEPLOYMENTS: dict[tuple[str, str], str] = {("sqlite", "sqlite"): "embedded", ("nats", "postgresql"): "scale-out"}

_LOG_SCHEMES = {"": "sqlite", "nats": "nats", "tls": "nats"}
_CATALOG_SCHEMES = {"": "sqlite", "postgres": "postgresql", "postgresql": "postgresql"}


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else url.strip().lower()


def log_backend(settings: Settings) -> str:
    name = _LOG_SCHEMES.get(_scheme(settings.log))
    if name is None:
        raise ValueError(f"SLUICE_LOG={settings.log!r}: use nothing (the data dir's log.db) or nats://host:4222[,...]")
    return name


def catalog_backend(settings: Settings) -> str:
    name = _CATALOG_SCHEMES.get(_scheme(settings.catalog))
    if name is None:
        raise ValueError(
            f"SLUICE_CATALOG={settings.catalog!r}: use nothing (the data dir's catalog.db) or postgresql://..."
        )
    return name


def check(settings: Settings) -> tuple[str, str]:
    """(log backend, catalog backend), or ValueError for a combination that cannot work."""
    log, catalog = log_backend(settings), catalog_backend(settings)
    if log != EMBEDDED and catalog == EMBEDDED:
        raise ValueError(
            "a JetStream log serves several nodes, which must share their catalog and delivery state:"
            " set SLUICE_CATALOG=postgresql://... too (docs/scale-out.md)"
        )
    return log, catalog


def embedded(settings: Settings) -> bool:
    """True when every part runs on the embedded default (the data dir)."""
    return check(settings) == (EMBEDDED, EMBEDDED)


def deployment(settings: Settings) -> str:
    """How `sluice serve` runs these backends: "embedded" or "scale-out"; ValueError for a mix it does not run."""
    kind = DEPLOYMENTS.get(check(settings))
    if kind is None:
        raise ValueError(
            "`sluice serve` runs either everything in the data dir or the scale-out backends together:"
            " set both --log nats://... and --catalog postgresql://..., or neither (docs/scale-out.md)"
        )
    return kind


def shared_state(settings: Settings) -> bool:
    return SHARED_STATE[check(settings)[1]]


def open_owners(settings: Settings) -> Any:
    return OWNERSHIP[catalog_backend(settings)](settings)


def open_log(settings: Settings, readonly: bool = False) -> Log:
    return LOG_BACKENDS[log_backend(settings)](settings, readonly)


def open_catalog(settings: Settings) -> Any:
    return CATALOG_BACKENDS[catalog_backend(settings)](settings)


def open_state(settings: Settings, log: Log) -> Any:
    log_name, catalog_name = check(settings)
    cursors = CURSOR_STORES[log_name]
    return STATE_BACKENDS[catalog_name](settings, log, cursors(settings, log) if cursors else None)


@dataclass
class Backends:
    """What a sluice process needs, whichever backends run: the log, the catalog, the delivery state,
    and ingest's map of write keys (kept in step with the catalog)."""

    log: Log
    catalog: Any
    state: Any
    sources: Any

    def close(self) -> None:
        for part in (self.sources, self.state, self.catalog):
            close = getattr(part, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        self.log.close()


def open_backends(settings: Settings, readonly_log: bool = False) -> Backends:
    _, catalog_name = check(settings)
    # The catalog first: a wrong database is reported before a JetStream stream is created for nothing.
    catalog = open_catalog(settings)
    try:
        log = open_log(settings, readonly=readonly_log)
    except BaseException:
        with contextlib.suppress(Exception):
            getattr(catalog, "close", lambda: None)()
        raise
    try:
        state = open_state(settings, log)
        sources = SOURCE_REGISTRIES[catalog_name](catalog)
    except BaseException:
        with contextlib.suppress(Exception):
            getattr(catalog, "close", lambda: None)()
        log.close()
        raise
    return Backends(log, catalog, state, sources)
