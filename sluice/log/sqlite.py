"""The embedded log: a SQLite database in WAL mode with group commit.

One writer thread owns the write connection. Requests queue their records and await a future;
the writer drains everything queued, writes it in one transaction and commits with fsync
(synchronous=FULL), then resolves every waiting request at once. So a 200 always means "on
disk", and concurrent requests share one fsync.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from sluice.log.base import Entry, Log, LogError, Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY,
  source_id INTEGER NOT NULL,
  received_at INTEGER NOT NULL,  -- ms since epoch
  shape INTEGER NOT NULL,
  body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_source ON events (source_id, seq);
CREATE TABLE IF NOT EXISTS seen (message_id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
# SQLite allows 32,766 bound variables per statement; `seen` rows take two.
_SEEN_CHUNK = 8000
_PRUNE_SEEN_EVERY_S = 60.0

_Waiter = tuple[Sequence[Record], asyncio.Future[list[bool]], asyncio.AbstractEventLoop]


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit: a 200 survives power loss
    db.execute("PRAGMA cache_size=-16384")  # 16 MiB page cache: appends need little
    return db


class SqliteLog(Log):
    def __init__(self, path: Path, dedup_window_seconds: int, readonly: bool = False) -> None:
        """`readonly`: for the CLI, which reads the log of a running (or stopped) server."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._dedup_window_ms = dedup_window_seconds * 1000
        self._wdb = _connect(path)
        self._wdb.executescript(_SCHEMA)
        self._head = int(self._wdb.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
        if not readonly:  # a log written before generations existed adopts one, like a new log
            self._wdb.execute("INSERT INTO meta VALUES ('generation', ?) ON CONFLICT DO NOTHING", (uuid.uuid4().hex,))
        row = self._wdb.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        self._generation = str(row[0]) if row else ""
        self._local = threading.local()
        self._pending: list[_Waiter] = []
        self._cv = threading.Condition()
        self._committed = threading.Condition()
        self._closed = False
        self._last_seen_prune = 0.0
        self._writer = threading.Thread(target=self._write_loop, name="log-writer", daemon=True)
        if not readonly:
            self._writer.start()

    # -- writing ----------------------------------------------------------------------------

    async def append(self, records: Sequence[Record]) -> list[bool]:
        if not records:
            return []
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[bool]] = loop.create_future()
        with self._cv:
            if self._closed:
                raise LogError("the log is closed")
            self._pending.append((records, fut, loop))
            self._cv.notify()
        return await fut

    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closed:
                    self._cv.wait()
                if not self._pending and self._closed:
                    return
                group, self._pending = self._pending, []
            try:
                results = self._commit(group)
            except Exception as e:  # disk full, I/O error: every waiter hears about it
                error = LogError(f"could not write to the log: {e}")
                self._resolve(group, [None] * len(group), error)
                continue
            self._resolve(group, results, None)

    def _commit(self, group: list[_Waiter]) -> list[list[bool]]:
        db = self._wdb
        now_ms = int(time.time() * 1000)
        ids = [r.message_id for records, _, _ in group for r in records]
        db.execute("BEGIN IMMEDIATE")
        try:
            fresh: set[str] = set()
            for i in range(0, len(ids), _SEEN_CHUNK):
                chunk = ids[i : i + _SEEN_CHUNK]
                sql = (
                    "INSERT INTO seen (message_id, at) VALUES "
                    + ",".join(["(?,?)"] * len(chunk))
                    + " ON CONFLICT DO NOTHING RETURNING message_id"
                )
                params = [v for mid in chunk for v in (mid, now_ms)]
                fresh.update(row[0] for row in db.execute(sql, params))
            results: list[list[bool]] = []
            rows: list[tuple[int, int, int, bytes]] = []
            for records, _, _ in group:
                flags = []
                for r in records:
                    # The first occurrence of a new id is stored; repeats (even in this group) are not.
                    if r.message_id in fresh:
                        fresh.discard(r.message_id)
                        rows.append((r.source_id, r.received_ms, r.shape, r.body))
                        flags.append(True)
                    else:
                        flags.append(False)
                results.append(flags)
            if rows:
                db.executemany(
                    "INSERT INTO events (source_id, received_at, shape, body) VALUES (?, ?, ?, ?)", rows
                )
            if time.monotonic() - self._last_seen_prune > _PRUNE_SEEN_EVERY_S:
                self._last_seen_prune = time.monotonic()
                db.execute("DELETE FROM seen WHERE at < ?", (now_ms - self._dedup_window_ms,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if rows:
            head = int(db.execute("SELECT max(seq) FROM events").fetchone()[0])
            with self._committed:
                self._head = head
                self._committed.notify_all()
        return results

    @staticmethod
    def _resolve(group: list[_Waiter], results: list, error: Exception | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[list[bool]], object]]] = {}
        for (_, fut, loop), result in zip(group, results, strict=True):
            by_loop.setdefault(loop, []).append((fut, result))
        for loop, items in by_loop.items():
            # One wake-up per event loop per commit, not one per request.
            loop.call_soon_threadsafe(_settle, items, error)

    # -- reading ----------------------------------------------------------------------------

    def _rdb(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._local.db = db
        return db

    def read(self, source_id: int, after_seq: int, limit: int) -> list[Entry]:
        cur = self._rdb().execute(
            "SELECT seq, shape, received_at, body FROM events WHERE source_id = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (source_id, after_seq, limit),
        )
        return [Entry(*row) for row in cur]

    def head(self) -> int:
        return self._head

    def generation(self) -> str:
        return self._generation

    def wait_for(self, after_seq: int, timeout: float) -> int:
        with self._committed:
            self._committed.wait_for(lambda: self._head > after_seq or self._closed, timeout)
            return self._head

    def seq_before(self, source_id: int, received_ms: int) -> int:
        row = self._rdb().execute(
            "SELECT min(seq) FROM events WHERE source_id = ? AND received_at >= ?", (source_id, received_ms)
        ).fetchone()
        return int(row[0]) - 1 if row[0] is not None else self.last_seq(source_id)

    def last_seq(self, source_id: int, until_ms: int | None = None) -> int:
        sql, args = "SELECT max(seq) FROM events WHERE source_id = ?", [source_id]
        if until_ms is not None:
            sql += " AND received_at < ?"
            args.append(until_ms)
        row = self._rdb().execute(sql, args).fetchone()
        return int(row[0] or 0)

    def prune(self, keep_after: dict[int, int], older_than_ms: int) -> int:
        dropped = 0
        db = self._rdb()
        for source_id, seq in keep_after.items():
            # Never the log's newest row: SQLite numbers the next insert max(seq) + 1, and seqs must
            # keep rising past every cursor, or new events would hide behind them.
            cur = db.execute(
                "DELETE FROM events WHERE source_id = ? AND seq <= ? AND received_at < ?"
                " AND seq < (SELECT max(seq) FROM events)",
                (source_id, seq, older_than_ms),
            )
            dropped += cur.rowcount
        return dropped

    def depth(self, source_id: int, after_seq: int) -> int:
        row = self._rdb().execute(
            "SELECT count(*) FROM events WHERE source_id = ? AND seq > ?", (source_id, after_seq)
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._writer.is_alive():
            self._writer.join(timeout=10)
        with self._committed:
            self._committed.notify_all()
        self._wdb.close()


def _settle(items: list[tuple[asyncio.Future[list[bool]], object]], error: Exception | None) -> None:
    for fut, result in items:
        if fut.done():  # the request was cancelled (client went away); its data is stored anyway
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)  # type: ignore[arg-type]
