"""The one writer of log.db: one thread, one connection, group commit for everything that writes.

Ingest's appends and every other write of the file (the delivery state's cursor advances, dead
letters, replay bookkeeping and status, and the log's prunes) queue here. The thread takes everything
queued, applies it in one transaction and commits with fsync (synchronous=FULL), then answers every
caller at once: an append's 200 still means "on disk", and a cursor advance costs no fsync of its own.
Each operation other than the appends runs inside a savepoint, so one that fails fails only its
caller; a failed commit (disk full, I/O error) fails everyone in the group, and nothing is
half-acknowledged.

Operations are plain data: a registered name and keyword arguments. That is what lets other
processes feed this queue over a local socket (`wire.py`): under `sluice serve` this thread runs in
the log-writer process, and ingest processes send their records, the delivery process its
operations, and wait for the answer exactly as `call` and `append` wait here: a 200 still means
fsynced.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sluice.log.base import LogError, Record
from sluice.sqlite_file import rollback

# (db, [records of each append request]) -> per request, per record: stored (True) or duplicate (False).
AppendFn = Callable[[sqlite3.Connection, list[Sequence[Record]]], list[list[bool]]]
OpFn = Callable[..., Any]  # (db, **arguments) -> answer


@dataclass
class _Request:
    op: str | None  # None: an append
    payload: Any  # the records of an append, or an operation's arguments
    future: asyncio.Future[Any] | concurrent.futures.Future[Any]
    loop: asyncio.AbstractEventLoop | None  # the event loop of an awaiting request


class Writer:
    def __init__(self, db: sqlite3.Connection, append: AppendFn, committed: Callable[[], None]) -> None:
        self._db = db
        self._append = append
        self._committed = committed  # told after each commit that stored something (the log's head moved)
        self._ops: dict[str, OpFn] = {}
        self._pending: list[_Request] = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def register(self, name: str, fn: OpFn) -> None:
        self._ops[name] = fn

    async def append(self, records: Sequence[Record]) -> list[bool]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bool]] = loop.create_future()
        self._queue(_Request(None, records, future, loop))
        return await future

    async def call_async(self, op: str, **arguments: Any) -> Any:
        """`call` for an event loop (the log-writer process answering its socket's clients)."""
        if op not in self._ops:
            raise ValueError(f"unknown log operation {op!r}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue(_Request(op, arguments, future, loop))
        return await future

    def call(self, op: str, **arguments: Any) -> Any:
        """Apply a registered operation in the next group commit; blocks until it is on disk."""
        if op not in self._ops:
            raise ValueError(f"unknown log operation {op!r}")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue(_Request(op, arguments, future, None))
        return future.result()

    def _queue(self, request: _Request) -> None:
        with self._cv:
            if self._closed:
                raise LogError("the log is closed")
            self._pending.append(request)
            self._cv.notify()

    def close(self) -> None:
        """Write what is queued, then stop."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=10)

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closed:
                    self._cv.wait()
                if not self._pending:
                    return
                group, self._pending = self._pending, []
            try:
                answers, stored = self._commit(group)
            except Exception as e:  # disk full, I/O error: every caller of the group hears about it
                error = LogError(f"could not write to the log: {e}")
                _settle([(r, None, error) for r in group])
                continue
            if stored:
                self._committed()
            _settle(answers)

    def _commit(self, group: list[_Request]) -> tuple[list[tuple[_Request, Any, BaseException | None]], bool]:
        db = self._db
        appends = [r for r in group if r.op is None]
        answers: list[tuple[_Request, Any, BaseException | None]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            stored = False
            if appends:
                flags = self._append(db, [r.payload for r in appends])
                stored = any(any(f) for f in flags)
                answers += [(r, f, None) for r, f in zip(appends, flags, strict=True)]
            for r in group:
                if r.op is not None:
                    answers.append(self._apply(db, r))
            db.execute("COMMIT")
        except BaseException:
            rollback(db)
            raise
        return answers, stored

    def _apply(self, db: sqlite3.Connection, r: _Request) -> tuple[_Request, Any, BaseException | None]:
        assert r.op is not None
        db.execute("SAVEPOINT op")
        try:
            answer = self._ops[r.op](db, **r.payload)
        except Exception as e:
            db.execute("ROLLBACK TO op")
            db.execute("RELEASE op")
            return r, None, e
        db.execute("RELEASE op")
        return r, answer, None


def _settle(answers: list[tuple[_Request, Any, BaseException | None]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
    for request, answer, error in answers:
        if request.loop is None:  # a thread waits in call()
            future: Any = request.future
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(answer)
        else:
            by_loop.setdefault(request.loop, []).append((request.future, answer, error))
    for loop, items in by_loop.items():
        # One wake-up per event loop per commit, not one per request.
        loop.call_soon_threadsafe(_settle_async, items)


def _settle_async(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, answer, error in items:
        if future.done():  # the request was cancelled (client went away); its data is stored anyway
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(answer)
