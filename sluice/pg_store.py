"""One PostgreSQL database shared by every node: a connection per thread, short transactions.

The PostgreSQL counterpart of `sqlite_file.py`, for the catalog and the delivery state of the scale-out
deployment (docs/scale-out.md). Their tables live in the `_sluice` schema, which no source can take
(warehouse/naming.py reserves it), so they may share a database with a PostgreSQL warehouse.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

SCHEMA = "_sluice"
_DDL_LOCK = 0x51C3  # pg_advisory_xact_lock key: nodes starting together create the tables one at a time


class PgStore:
    def __init__(self, url: str, ddl: str, connect_timeout: float = 10.0) -> None:
        self.url = url
        self._connect_timeout = connect_timeout
        self._local = threading.local()
        self._all: list[psycopg.Connection[dict[str, Any]]] = []
        self._all_lock = threading.Lock()
        with self.tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            db.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            db.execute(ddl)  # type: ignore[arg-type]

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(
            self.url, autocommit=True, row_factory=dict_row, connect_timeout=int(self._connect_timeout),
            options="-c TimeZone=UTC",
        )

    def db(self) -> psycopg.Connection[dict[str, Any]]:
        """This thread's connection, (re)opened on demand: PostgreSQL being away is a transient failure."""
        conn: psycopg.Connection[dict[str, Any]] | None = getattr(self._local, "db", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._local.db = self._connect()
            with self._all_lock:
                self._all = [c for c in self._all if not c.closed] + [conn]
        return conn

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        conn = self.db()
        with conn.transaction():
            yield conn

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
