"""Delivery state in PostgreSQL, shared by every node: dead letters, replays, status, and cursors.

The same API as the embedded `DeliveryState` (sluice/delivery/state.py), so the worker, the manager and
the admin API do not know which one runs. Differences, each for a reason:

- **Cursors** live where the log is: with the JetStream log, a durable consumer per destination
  (`jetstream_cursors.py`); with the embedded log, the `_sluice.delivery_cursors` table here. A cursor
  store that `mirrors_transactional` is also told where a warehouse (which keeps its own cursor with
  its rows) has committed to, so that every node sees its position.
- **Dead letters and replays** are rows here rather than JetStream messages: a dead letter is mutable
  (re-drive requested, attempts, the latest reason) and must outlive the log's retention, which a
  PostgreSQL row does simply, durably and visibly to every node (`sluice deliveries dead-letters`
  from any of them). A replay by time is a range of log sequence numbers, found through JetStream
  (`Log.seq_before`, by store time) and read back from JetStream.
- **Writes** are plain transactions (PostgreSQL takes concurrent writers), not operations queued to
  the log's writer thread. Dead letters commit before the cursor moves past them: a crash in between
  leaves a dead letter whose event is offered again, never an event that is neither delivered,
  dead-lettered nor ahead of the cursor. With cursors in this database both go in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg

from sluice.delivery.state import CLI_OPS, Replay
from sluice.destinations.base import Failure
from sluice.log.base import Entry
from sluice.pg_store import SCHEMA, PgStore

__all__ = ["CLI_OPS", "CursorStore", "PgCursors", "PostgresDeliveryState"]

_DDL = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.delivery_cursors (consumer text PRIMARY KEY, seq bigint NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.dead_letters (
  id bigserial PRIMARY KEY,
  consumer text NOT NULL,
  source_id bigint NOT NULL,
  seq bigint NOT NULL,
  received_at bigint NOT NULL,
  body bytea NOT NULL,          -- a copy: dead letters outlive the log's retention
  reason text NOT NULL,
  failed_at bigint NOT NULL,
  attempts integer NOT NULL DEFAULT 1,
  retry_requested integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dead_letters_by_consumer ON {SCHEMA}.dead_letters (consumer, retry_requested, id);
CREATE TABLE IF NOT EXISTS {SCHEMA}.replays (
  id bigserial PRIMARY KEY,
  consumer text NOT NULL,
  next_seq bigint NOT NULL,
  end_seq bigint NOT NULL,
  created_at bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.delivery_status (
  consumer text PRIMARY KEY,
  last_success bigint,
  last_error text,
  last_error_at bigint
);
"""


def _ms() -> int:
    return int(time.time() * 1000)


class CursorStore(Protocol):
    mirrors_transactional: bool

    def cursor(self, consumer: str) -> int: ...

    def commit(self, consumer: str, source_id: int, seq: int) -> None: ...

    def forget(self, consumer: str) -> None: ...


class PgCursors:
    """Cursors as rows of `_sluice.delivery_cursors` (with the embedded log)."""

    mirrors_transactional = False

    def __init__(self, store: PgStore) -> None:
        self.store = store

    def cursor(self, consumer: str) -> int:
        row = self.store.db().execute(
            f"SELECT seq FROM {SCHEMA}.delivery_cursors WHERE consumer = %s", (consumer,)
        ).fetchone()
        return int(row["seq"]) if row else 0

    def commit(self, consumer: str, source_id: int, seq: int, db: psycopg.Connection[Any] | None = None) -> None:
        (db or self.store.db()).execute(
            f"INSERT INTO {SCHEMA}.delivery_cursors (consumer, seq) VALUES (%s, %s)"
            " ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq",
            (consumer, seq),
        )

    def forget(self, consumer: str) -> None:
        self.store.db().execute(f"DELETE FROM {SCHEMA}.delivery_cursors WHERE consumer = %s", (consumer,))


class PostgresDeliveryState:
    def __init__(self, url: str, cursors: CursorStore | None = None) -> None:
        self.store = PgStore(url, _DDL)
        self.cursors: CursorStore = cursors if cursors is not None else PgCursors(self.store)

    def apply(self, op: str, **arguments: Any) -> Any:
        """One named write, as the admin API and the CLI ask for it (the embedded state's names)."""
        if op not in _OPS:
            raise ValueError(f"unknown delivery-state operation {op!r}")
        return getattr(self, _OPS[op])(**arguments)

    # -- status -----------------------------------------------------------------------------

    def _success(self, db: psycopg.Connection[Any], consumer: str) -> None:
        db.execute(
            f"INSERT INTO {SCHEMA}.delivery_status (consumer, last_success) VALUES (%s, %s)"
            " ON CONFLICT (consumer) DO UPDATE SET last_success = excluded.last_success",
            (consumer, _ms()),
        )

    def _error(self, db: psycopg.Connection[Any], consumer: str, error: str) -> None:
        db.execute(
            f"INSERT INTO {SCHEMA}.delivery_status (consumer, last_error, last_error_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (consumer) DO UPDATE SET last_error = excluded.last_error,"
            " last_error_at = excluded.last_error_at",
            (consumer, error, _ms()),
        )

    def record_error(self, consumer: str, error: str) -> None:
        with self.store.tx() as db:
            self._error(db, consumer, error)

    def status(self, consumer: str) -> dict[str, Any]:
        db = self.store.db()
        row = db.execute(f"SELECT * FROM {SCHEMA}.delivery_status WHERE consumer = %s", (consumer,)).fetchone()
        dead = db.execute(f"SELECT count(*) AS n FROM {SCHEMA}.dead_letters WHERE consumer = %s", (consumer,))
        return {
            "last_success": row["last_success"] if row else None,
            "last_error": row["last_error"] if row else None,
            "last_error_at": row["last_error_at"] if row else None,
            "dead_letters": int(dead.fetchone()["n"]),  # type: ignore[index]
        }

    # -- cursors ----------------------------------------------------------------------------

    def cursor(self, consumer: str) -> int:
        return self.cursors.cursor(consumer)

    def set_cursor(self, consumer: str, seq: int, source_id: int = 0) -> None:
        self.cursors.commit(consumer, source_id, seq)

    def advance(self, consumer: str, source_id: int, seq: int | None, failures: Sequence[Failure] = (),
                through: int | None = None) -> None:
        """Dead-letter `failures`, then move the cursor to `seq` (if given). `through`: the last seq a
        transactional target committed itself (with its rows), for a cursor store that mirrors it."""
        in_db = isinstance(self.cursors, PgCursors)
        with self.store.tx() as db:
            self._dead_letter(db, consumer, source_id, failures)
            if seq is not None and in_db:
                self.cursors.commit(consumer, source_id, seq, db)  # type: ignore[call-arg]
            # A success unless the batch ended in a refusal (a retry window given up dead-letters all of it).
            if not failures or (seq is not None and failures[-1].entry.seq != seq):
                self._success(db, consumer)
        position = seq if seq is not None else (through if self.cursors.mirrors_transactional else None)
        if position is not None and not in_db:
            self.cursors.commit(consumer, source_id, position)  # after the dead letters are safe

    def forget(self, consumer: str) -> None:
        """A removed destination: its cursor, dead letters, replays and status go with it."""
        self.cursors.forget(consumer)
        with self.store.tx() as db:
            for table in ("dead_letters", "replays", "delivery_status"):
                db.execute(f"DELETE FROM {SCHEMA}.{table} WHERE consumer = %s", (consumer,))

    # -- dead letters -----------------------------------------------------------------------

    def _dead_letter(self, db: psycopg.Connection[Any], consumer: str, source_id: int,
                     failures: Sequence[Failure]) -> None:
        if not failures:
            return
        now = _ms()
        with db.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {SCHEMA}.dead_letters (consumer, source_id, seq, received_at, body, reason, failed_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(consumer, source_id, f.entry.seq, f.entry.received_ms, f.entry.body, f.reason, now)
                 for f in failures],
            )
        self._error(db, consumer, f"refused {len(failures)} event{'s' if len(failures) != 1 else ''}:"
                                  f" {failures[-1].reason}")

    def dead_letters(self, consumer: str, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self.store.db().execute(
            "SELECT id, seq, received_at, reason, failed_at, attempts, retry_requested, body"
            f" FROM {SCHEMA}.dead_letters WHERE consumer = %s ORDER BY id LIMIT %s",
            (consumer, limit),
        )
        return [{**r, "body": bytes(r["body"])} for r in rows]

    def request_retry(self, consumer: str, ids: Sequence[int] | None) -> int:
        with self.store.tx() as db:
            if ids is None:
                cur = db.execute(
                    f"UPDATE {SCHEMA}.dead_letters SET retry_requested = 1 WHERE consumer = %s", (consumer,)
                )
            else:
                cur = db.execute(
                    f"UPDATE {SCHEMA}.dead_letters SET retry_requested = 1 WHERE consumer = %s AND id = ANY(%s)",
                    (consumer, list(ids)),
                )
            return int(cur.rowcount)

    def redrives(self, consumer: str, limit: int) -> list[tuple[int, Entry]]:
        rows = self.store.db().execute(
            f"SELECT id, seq, received_at, body FROM {SCHEMA}.dead_letters"
            " WHERE consumer = %s AND retry_requested = 1 ORDER BY id LIMIT %s",
            (consumer, limit),
        )
        return [(int(r["id"]), Entry(int(r["seq"]), 0, int(r["received_at"]), bytes(r["body"]))) for r in rows]

    def finish_redrive(self, consumer: str, ids: Sequence[int], failures: dict[int, str]) -> None:
        """Delivered re-drives leave the store; ones refused again stay, with the new reason."""
        failures = {int(k): v for k, v in failures.items()}  # JSON (the admin API) makes the keys text
        delivered = [i for i in ids if i not in failures]
        with self.store.tx() as db:
            db.execute(f"DELETE FROM {SCHEMA}.dead_letters WHERE id = ANY(%s)", (delivered,))
            with db.cursor() as cur:
                cur.executemany(
                    f"UPDATE {SCHEMA}.dead_letters SET retry_requested = 0, reason = %s, attempts = attempts + 1,"
                    " failed_at = %s WHERE id = %s",
                    [(reason, _ms(), i) for i, reason in failures.items()],
                )
            if delivered:
                self._success(db, consumer)
            if failures:
                self._error(db, consumer, f"re-drive refused again: {next(reversed(failures.values()))}")

    # -- replays ----------------------------------------------------------------------------

    def add_replay(self, consumer: str, after_seq: int, end_seq: int) -> int:
        with self.store.tx() as db:
            row = db.execute(
                f"INSERT INTO {SCHEMA}.replays (consumer, next_seq, end_seq, created_at)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                (consumer, after_seq, end_seq, _ms()),
            ).fetchone()
        return int(row["id"])  # type: ignore[index]

    def active_replay(self, consumer: str) -> Replay | None:
        row = self.store.db().execute(
            f"SELECT id, next_seq, end_seq FROM {SCHEMA}.replays WHERE consumer = %s ORDER BY id LIMIT 1",
            (consumer,),
        ).fetchone()
        return Replay(int(row["id"]), int(row["next_seq"]), int(row["end_seq"])) if row else None

    def advance_replay(self, replay_id: int, seq: int, consumer: str, source_id: int,
                       failures: Sequence[Failure] = ()) -> None:
        with self.store.tx() as db:
            self._dead_letter(db, consumer, source_id, failures)
            moved = db.execute(
                f"UPDATE {SCHEMA}.replays SET next_seq = %s WHERE id = %s AND next_seq < %s", (seq, replay_id, seq)
            )
            db.execute(f"DELETE FROM {SCHEMA}.replays WHERE id = %s AND next_seq >= end_seq", (replay_id,))
            if moved.rowcount:  # the replay delivered something
                self._success(db, consumer)

    def pending_replays(self, consumer: str) -> int:
        row = self.store.db().execute(
            f"SELECT count(*) AS n FROM {SCHEMA}.replays WHERE consumer = %s", (consumer,)
        ).fetchone()
        return int(row["n"])  # type: ignore[index]

    def close(self) -> None:
        self.store.close()


# The embedded state's operation names (what the admin API and the CLI send) -> methods here.
_OPS = {
    "set_cursor": "set_cursor",
    "advance": "advance",
    "record_error": "record_error",
    "forget": "forget",
    "request_retry": "request_retry",
    "finish_redrive": "finish_redrive",
    "add_replay": "add_replay",
    "advance_replay": "advance_replay",
}
