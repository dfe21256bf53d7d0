"""One SQLite file shared by threads and processes: a connection per thread, short write transactions."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sluice.datadir import sqlite_error


class SqliteFile:
    """Base for the catalog and the delivery state: WAL mode, autocommit connections, one per thread
    (sqlite3 connections must not be shared across threads), and `_tx()` for a write transaction."""

    def __init__(self, path: Path, schema: str, *pragmas: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._pragmas = ("PRAGMA journal_mode=WAL", *pragmas)
        self._local = threading.local()
        try:
            self._db().executescript(schema)  # executescript manages its own transaction
        except sqlite3.DatabaseError as e:  # damaged, locked, unreadable: one clear line, not a traceback
            raise sqlite_error(path, e) from None

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            for pragma in self._pragmas:
                db.execute(pragma)
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlocks later
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            rollback(db)
            raise


def rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLite has already rolled back after some failures (a
    full disk at COMMIT), and a second ROLLBACK would replace the real error with "no transaction"."""
    if db.in_transaction:
        db.execute("ROLLBACK")
