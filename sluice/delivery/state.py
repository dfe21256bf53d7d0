"""Delivery bookkeeping: cursors, dead letters, replays and last-known status per destination.

It lives in its own tables of the log's SQLite file. Every write is a named operation (`OPS`, plain
arguments): in the server each one goes through the log's writer thread (sluice/log/writer.py), so
log.db has one writer; the CLI asks the running server to apply it (`/admin/delivery-state`) and
applies it itself only when no server runs. Moving a cursor and dead-lettering the events it skips
happen in one transaction, so an event is either delivered, dead-lettered, or still ahead of the
cursor: never lost.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice.datadir import LOG_FILE
from sluice.destinations.base import Failure
from sluice.log.base import Entry
from sluice.log.writer import Writer
from sluice.sqlite_file import SqliteFile

__all__ = ["LOG_FILE", "OPS", "DeliveryState", "Replay"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cursors (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  consumer TEXT NOT NULL,
  source_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  body BLOB NOT NULL,          -- a copy: dead letters outlive the log's retention
  reason TEXT NOT NULL,
  failed_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 1,
  retry_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dead_letters_by_consumer ON dead_letters (consumer, retry_requested, id);
CREATE TABLE IF NOT EXISTS replays (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  consumer TEXT NOT NULL,
  next_seq INTEGER NOT NULL,   -- deliver entries with seq > next_seq ...
  end_seq INTEGER NOT NULL,    -- ... up to and including end_seq
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS delivery_status (
  consumer TEXT PRIMARY KEY,
  last_success INTEGER,
  last_error TEXT,
  last_error_at INTEGER
);
"""


@dataclass(frozen=True)
class Replay:
    id: int
    next_seq: int
    end_seq: int


def _ms() -> int:
    return int(time.time() * 1000)


# -- the writing operations (each runs inside the writer's transaction) ------------------------


def _set_cursor(db: sqlite3.Connection, consumer: str, seq: int) -> None:
    db.execute(
        "INSERT INTO cursors (consumer, seq) VALUES (?, ?) ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq",
        (consumer, seq),
    )


def _dead_letter(db: sqlite3.Connection, consumer: str, source_id: int, failures: Sequence[Failure]) -> None:
    if not failures:
        return
    now = _ms()
    db.executemany(
        "INSERT INTO dead_letters (consumer, source_id, seq, received_at, body, reason, failed_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(consumer, source_id, f.entry.seq, f.entry.received_ms, f.entry.body, f.reason, now) for f in failures],
    )
    # Refusals are errors too: `deliveries status` shows the latest one.
    _error(db, consumer, f"refused {len(failures)} event{'s' if len(failures) != 1 else ''}: {failures[-1].reason}")


def _success(db: sqlite3.Connection, consumer: str) -> None:
    db.execute(
        "INSERT INTO delivery_status (consumer, last_success) VALUES (?, ?)"
        " ON CONFLICT (consumer) DO UPDATE SET last_success = excluded.last_success",
        (consumer, _ms()),
    )


def _error(db: sqlite3.Connection, consumer: str, error: str) -> None:
    db.execute(
        "INSERT INTO delivery_status (consumer, last_error, last_error_at) VALUES (?, ?, ?)"
        " ON CONFLICT (consumer) DO UPDATE SET last_error = excluded.last_error,"
        " last_error_at = excluded.last_error_at",
        (consumer, error, _ms()),
    )


def _advance(db: sqlite3.Connection, consumer: str, source_id: int, seq: int | None,
             failures: Sequence[Failure] = ()) -> None:
    _dead_letter(db, consumer, source_id, failures)
    if seq is not None:
        _set_cursor(db, consumer, seq)
    # A success unless the batch ended in a refusal (a retry window given up dead-letters all of it).
    if not failures or (seq is not None and failures[-1].entry.seq != seq):
        _success(db, consumer)


def _forget(db: sqlite3.Connection, consumer: str) -> None:
    for table in ("cursors", "dead_letters", "replays", "delivery_status"):
        db.execute(f"DELETE FROM {table} WHERE consumer = ?", (consumer,))


def _request_retry(db: sqlite3.Connection, consumer: str, ids: Sequence[int] | None) -> int:
    if ids is None:
        cur = db.execute("UPDATE dead_letters SET retry_requested = 1 WHERE consumer = ?", (consumer,))
    else:
        cur = db.executemany(
            "UPDATE dead_letters SET retry_requested = 1 WHERE consumer = ? AND id = ?", [(consumer, i) for i in ids]
        )
    return int(cur.rowcount)


def _finish_redrive(db: sqlite3.Connection, consumer: str, ids: Sequence[int], failures: dict[int, str]) -> None:
    delivered = [(i,) for i in ids if i not in failures]
    db.executemany("DELETE FROM dead_letters WHERE id = ?", delivered)
    db.executemany(
        "UPDATE dead_letters SET retry_requested = 0, reason = ?, attempts = attempts + 1, failed_at = ? WHERE id = ?",
        [(reason, _ms(), i) for i, reason in failures.items()],
    )
    if delivered:
        _success(db, consumer)
    if failures:
        _error(db, consumer, f"re-drive refused again: {next(reversed(failures.values()))}")


def _add_replay(db: sqlite3.Connection, consumer: str, after_seq: int, end_seq: int) -> int:
    cur = db.execute(
        "INSERT INTO replays (consumer, next_seq, end_seq, created_at) VALUES (?, ?, ?, ?)",
        (consumer, after_seq, end_seq, _ms()),
    )
    return int(cur.lastrowid or 0)


def _advance_replay(db: sqlite3.Connection, replay_id: int, seq: int, consumer: str, source_id: int,
                    failures: Sequence[Failure] = ()) -> None:
    _dead_letter(db, consumer, source_id, failures)
    moved = db.execute("UPDATE replays SET next_seq = ? WHERE id = ? AND next_seq < ?", (seq, replay_id, seq))
    db.execute("DELETE FROM replays WHERE id = ? AND next_seq >= end_seq", (replay_id,))
    if moved.rowcount:  # the replay delivered something
        _success(db, consumer)


OPS: dict[str, Callable[..., Any]] = {
    "set_cursor": _set_cursor,
    "advance": _advance,
    "record_error": _error,
    "forget": _forget,
    "request_retry": _request_retry,
    "finish_redrive": _finish_redrive,
    "add_replay": _add_replay,
    "advance_replay": _advance_replay,
}
# What the CLI may ask a running server to apply (the rest is the workers' own bookkeeping).
CLI_OPS = frozenset({"forget", "request_retry", "add_replay"})


class DeliveryState(SqliteFile):
    def __init__(self, path: Path, writer: Writer | None = None) -> None:
        """`writer`: the log's writer, through which the server applies every write; without one (the
        CLI when no server runs) this process writes itself."""
        super().__init__(path, _SCHEMA, "PRAGMA synchronous=FULL")
        self._writer = writer
        if writer is not None:
            for name, fn in OPS.items():
                writer.register(name, fn)

    def apply(self, op: str, **arguments: Any) -> Any:
        """Apply one named write operation, durably, and return its answer."""
        if self._writer is not None:
            return self._writer.call(op, **arguments)
        with self._tx() as db:
            return OPS[op](db, **arguments)

    # -- cursors ----------------------------------------------------------------------------

    def cursor(self, consumer: str) -> int:
        row = self._db().execute("SELECT seq FROM cursors WHERE consumer = ?", (consumer,)).fetchone()
        return int(row[0]) if row else 0

    def advance(self, consumer: str, source_id: int, seq: int | None, failures: Sequence[Failure] = (),
                through: int | None = None) -> None:
        """Dead-letter `failures` and move the cursor to `seq` (if given), atomically. `through` (the last seq a
        transactional target committed with its rows) matters only to a state that mirrors such cursors
        (pg_state.py with JetStream cursors); log.db keeps none for them."""
        self.apply("advance", consumer=consumer, source_id=source_id, seq=seq, failures=list(failures))

    def set_cursor(self, consumer: str, seq: int) -> None:
        self.apply("set_cursor", consumer=consumer, seq=seq)

    def record_error(self, consumer: str, error: str) -> None:
        self.apply("record_error", consumer=consumer, error=error)

    def status(self, consumer: str) -> dict[str, Any]:
        db = self._db()
        row = db.execute("SELECT * FROM delivery_status WHERE consumer = ?", (consumer,)).fetchone()
        dead = db.execute("SELECT count(*) FROM dead_letters WHERE consumer = ?", (consumer,)).fetchone()[0]
        return {
            "last_success": row["last_success"] if row else None,
            "last_error": row["last_error"] if row else None,
            "last_error_at": row["last_error_at"] if row else None,
            "dead_letters": int(dead),
        }

    def forget(self, consumer: str) -> None:
        """A removed destination: its cursor, dead letters, replays and status go with it."""
        self.apply("forget", consumer=consumer)

    # -- dead letters -----------------------------------------------------------------------

    def dead_letters(self, consumer: str, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._db().execute(
            "SELECT id, seq, received_at, reason, failed_at, attempts, retry_requested, body"
            " FROM dead_letters WHERE consumer = ? ORDER BY id LIMIT ?",
            (consumer, limit),
        )
        return [dict(r) for r in rows]

    def request_retry(self, consumer: str, ids: Sequence[int] | None) -> int:
        """Mark dead letters (all, or these ids) for re-drive; the destination's worker takes them."""
        return int(self.apply("request_retry", consumer=consumer, ids=None if ids is None else list(ids)))

    def redrives(self, consumer: str, limit: int) -> list[tuple[int, Entry]]:
        rows = self._db().execute(
            "SELECT id, seq, received_at, body FROM dead_letters WHERE consumer = ? AND retry_requested = 1"
            " ORDER BY id LIMIT ?",
            (consumer, limit),
        )
        return [(r["id"], Entry(r["seq"], 0, r["received_at"], r["body"])) for r in rows]

    def finish_redrive(self, consumer: str, ids: Sequence[int], failures: dict[int, str]) -> None:
        """Delivered re-drives leave the store; ones refused again stay, with the new reason."""
        self.apply("finish_redrive", consumer=consumer, ids=list(ids), failures=dict(failures))

    # -- replays ----------------------------------------------------------------------------

    def add_replay(self, consumer: str, after_seq: int, end_seq: int) -> int:
        return int(self.apply("add_replay", consumer=consumer, after_seq=after_seq, end_seq=end_seq))

    def active_replay(self, consumer: str) -> Replay | None:
        row = self._db().execute(
            "SELECT id, next_seq, end_seq FROM replays WHERE consumer = ? ORDER BY id LIMIT 1", (consumer,)
        ).fetchone()
        return Replay(row["id"], row["next_seq"], row["end_seq"]) if row else None

    def advance_replay(self, replay_id: int, seq: int, consumer: str, source_id: int,
                       failures: Sequence[Failure] = ()) -> None:
        self.apply("advance_replay", replay_id=replay_id, seq=seq, consumer=consumer, source_id=source_id,
                   failures=list(failures))

    def pending_replays(self, consumer: str) -> int:
        return int(self._db().execute("SELECT count(*) FROM replays WHERE consumer = ?", (consumer,)).fetchone()[0])
