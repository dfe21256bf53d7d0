"""Who runs each (source, destination) worker: exactly one process, wherever several could.

On one machine the one delivery process runs every worker (`LocalOwners` grants everything). Several
deliver nodes share the catalog in PostgreSQL, so a worker's owner is the node holding a PostgreSQL
session-level advisory lock for it (`PgOwners`): taken with `pg_try_advisory_lock` before the worker
starts, released once it has stopped. A node that dies (SIGKILL, power, network) loses its session,
PostgreSQL releases its locks, and another node's next sync (every half second) takes them over and
starts the workers from the cursors on the NATS servers; nothing needs handing over.

The locks live in one connection per node. If that connection breaks, the node can no longer tell
whether it still owns anything (PostgreSQL released its locks when the session ended), so it reports
every worker lost: the manager stops them all, and takes them again once it reconnects and wins the
locks. Until its workers notice the stop, the last batch may overlap with the new owner's; the
PostgreSQL warehouse keeps its cursor with its rows and its `id` key (loads nothing twice), other
destinations get at-least-once delivery, as after any crash.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib

import psycopg

logger = logging.getLogger("sluice.delivery")


def lock_key(namespace: str, source_id: int, consumer: str) -> tuple[int, int]:
    """The two 32-bit keys of a worker's advisory lock: its consumer name (within the stream, so two
    deployments may share a database) and its source. Signed, as PostgreSQL's int4."""
    digest = zlib.crc32(f"sluice:{namespace}:{consumer}".encode())
    return digest - (1 << 32) if digest >= 1 << 31 else digest, source_id


class LocalOwners:
    """One delivery process: it owns every worker."""

    def acquire(self, source_id: int, consumer: str) -> bool:
        return True

    def release(self, source_id: int, consumer: str) -> None:
        pass

    def alive(self) -> bool:
        return True

    def close(self) -> None:
        pass


class PgOwners:
    """Workers owned through advisory locks in this node's own PostgreSQL session."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self.held: set[tuple[int, str]] = set()

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            self.held.clear()  # a new session holds nothing
        return self._conn

    def acquire(self, source_id: int, consumer: str) -> bool:
        """True when this node now runs the worker (or already did); False when another node does."""
        with self._lock:
            if (source_id, consumer) in self.held:
                return True
            row = self._connection().execute(
                "SELECT pg_try_advisory_lock(%s, %s)", lock_key(self.namespace, source_id, consumer)
            ).fetchone()
            if row and row[0]:
                self.held.add((source_id, consumer))
                return True
            return False

    def release(self, source_id: int, consumer: str) -> None:
        with self._lock:
            if (source_id, consumer) not in self.held:
                return
            self.held.discard((source_id, consumer))
            try:
                self._connection().execute(
                    "SELECT pg_advisory_unlock(%s, %s)", lock_key(self.namespace, source_id, consumer)
                )
            except psycopg.Error:  # the session is gone, and its locks with it
                self._drop()

    def alive(self) -> bool:
        """False when the session that held the locks has broken (they are released): stop every worker."""
        with self._lock:
            if self._conn is None:
                return True  # nothing held yet
            try:
                self._conn.execute("SELECT 1")
                return True
            except psycopg.Error as e:
                if self.held:
                    logger.warning("lost the PostgreSQL session holding %d delivery locks (%s): stopping"
                                   " those workers until the locks are taken again", len(self.held), e)
                self._drop()
                return False

    def _drop(self) -> None:
        self.held.clear()
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()  # closing the session releases every lock at once
