"""The embedded log: a SQLite database in WAL mode with group commit.

One writer thread owns the write connection (`writer.py`): requests queue their records and await a
future; the writer drains everything queued, writes it in one transaction and commits with fsync
(synchronous=FULL), then resolves every waiting request at once. So a 200 always means "on disk", and
concurrent requests share one fsync. The delivery state's writes and the prunes go through the same
thread: the server has one writer of log.db.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from sluice.datadir import sqlite_error
from sluice.log.base import Entry, Log, LogError, Record
from sluice.log.wire import RemoteWriter
from sluice.log.writer import Writer

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


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit: a 200 survives power loss
    db.execute("PRAGMA cache_size=-16384")  # 16 MiB page cache: appends need little
    return db


class SqliteLog(Log):
    def __init__(self, path: Path, dedup_window_seconds: int, readonly: bool = False,
                 remote: RemoteWriter | None = None, poll_seconds: float = 0.05) -> None:
        """`readonly`: for the CLI, which reads the log of a running (or stopped) server.

        `remote`: the log-writer process's socket (`wire.py`): this process reads the file itself and
        hands every write to that process, which is the file's one writer. The head is then read
        from the file, and `wait_for` polls it every `poll_seconds`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._remote = remote
        self._poll_seconds = poll_seconds
        readonly = readonly or remote is not None
        self._dedup_window_ms = dedup_window_seconds * 1000
        self._local = threading.local()
        self._committed = threading.Condition()
        self._closed = False
        self._last_seen_prune = 0.0
        try:
            self._wdb = _connect(path)
            self._wdb.executescript(_SCHEMA)
            self._head = int(self._wdb.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
            if not readonly:  # a log written before generations existed adopts one, like a new log
                self._wdb.execute(
                    "INSERT INTO meta VALUES ('generation', ?) ON CONFLICT DO NOTHING", (uuid.uuid4().hex,)
                )
            row = self._wdb.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            self._generation = str(row[0]) if row else ""
        except sqlite3.DatabaseError as e:  # damaged, locked, unreadable: one clear line, not a traceback
            raise sqlite_error(path, e) from None
        self.writer: Writer | RemoteWriter | None = remote
        if not readonly:
            self.writer = Writer(self._wdb, self._append, self._moved)
            self.writer.register("prune", self._prune)


    # -- writing (on the writer's thread) ----------------------------------------------------

    async def append(self, records: Sequence[Record]) -> list[bool]:
        if not records:
            return []
        if self.writer is None:
            raise LogError("this log was opened read-only")
        return await self.writer.append(records)

    def _append(self, db: sqlite3.Connection, groups: list[Sequence[Record]]) -> list[list[bool]]:
        now_ms = int(time.time() * 1000)
        ids = [r.message_id for records in groups for r in records]
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
        # A record may also be known by an older id (a Drip webhook stored before its ids were scoped to
        # the source): within the dedup window, a retry of it is a duplicate too.
        older = [r.also_seen_as for records in groups for r in records if r.also_seen_as and r.message_id in fresh]
        known_older: set[str] = set()
        for i in range(0, len(older), _SEEN_CHUNK):
            chunk = older[i : i + _SEEN_CHUNK]
            sql = f"SELECT message_id FROM seen WHERE message_id IN ({','.join('?' * len(chunk))})"
            known_older.update(row[0] for row in db.execute(sql, chunk))
        results: list[list[bool]] = []
        rows: list[tuple[int, int, int, bytes]] = []
        for records in groups:
            flags = []
            for r in records:
                # The first occurrence of a new id is stored; repeats (even in this group) are not.
                if r.message_id in fresh and r.also_seen_as not in known_older:
                    fresh.discard(r.message_id)
                    rows.append((r.source_id, r.received_ms, r.shape, r.body))
                    flags.append(True)
                else:
                    flags.append(False)
            results.append(flags)
        if rows:
            db.executemany("INSERT INTO events (source_id, received_at, shape, body) VALUES (?, ?, ?, ?)", rows)
        if time.monotonic() - self._last_seen_prune > _PRUNE_SEEN_EVERY_S:
            self._last_seen_prune = time.monotonic()
            db.execute("DELETE FROM seen WHERE at < ?", (now_ms - self._dedup_window_ms,))
        return results

    def _moved(self) -> None:
        """After a commit that stored events: publish the new head to waiting workers."""
        head = int(self._wdb.execute("SELECT max(seq) FROM events").fetchone()[0])
        with self._committed:
            self._head = head
            self._committed.notify_all()

    def _prune(self, db: sqlite3.Connection, keep_after: dict[int, int], older_than_ms: int) -> int:
        dropped = 0
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

    # -- reading ----------------------------------------------------------------------------

    def _rdb(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._local.db = db
        return db

    def read(self, source_id: int, after_seq: int, limit: int, max_bytes: int | None = None) -> list[Entry]:
        cur = self._rdb().execute(
            "SELECT seq, shape, received_at, body FROM events WHERE source_id = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (source_id, after_seq, limit),
        )
        if max_bytes is None:
            return [Entry(*row) for row in cur]
        entries: list[Entry] = []
        size = 0
        while rows := cur.fetchmany(1000):
            for row in rows:
                size += len(row[3])
                if size > max_bytes and entries:
                    cur.close()  # the rest stays in the log for the next batch
                    return entries
                entries.append(Entry(*row))
        return entries

    def head(self) -> int:
        if self._remote is not None:  # another process writes: ask the file
            row = self._rdb().execute("SELECT max(seq) FROM events").fetchone()
            return int(row[0] or 0)
        return self._head

    def generation(self) -> str:
        return self._generation

    def wait_for(self, after_seq: int, timeout: float) -> int:
        if self._remote is not None:
            deadline = time.monotonic() + timeout
            while True:
                head = self.head()
                left = deadline - time.monotonic()
                if head > after_seq or left <= 0 or self._closed:
                    return head
                time.sleep(min(self._poll_seconds, left))
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
        if self.writer is None:
            raise LogError("this log was opened read-only")
        return int(self.writer.call("prune", keep_after=keep_after, older_than_ms=older_than_ms))

    def depth(self, source_id: int, after_seq: int) -> int:
        row = self._rdb().execute(
            "SELECT count(*) FROM events WHERE source_id = ? AND seq > ?", (source_id, after_seq)
        ).fetchone()
        return int(row[0])

    def size_bytes(self) -> int:
        """Pages in use in log.db (events, the dedup window, delivery state): the file itself never
        shrinks, but pruned pages are reused, so this is what falls when the log is pruned."""
        db = self._rdb()
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * int(db.execute("PRAGMA page_size").fetchone()[0])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        with self._committed:
            self._closed = True
            self._committed.notify_all()
        self._wdb.close()
