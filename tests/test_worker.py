"""The delivery worker against a real log and delivery state, with scripted targets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from sluice.catalog.models import Source
from sluice.delivery.state import DeliveryState
from sluice.delivery.worker import Worker
from sluice.destinations.base import Failure, Target
from sluice.log.base import Entry, Record
from sluice.log.sqlite import SqliteLog
from sluice.metrics import Metrics
from sluice.settings import Settings

SOURCE = Source(1, "http", "Web", "web", "key", None, "")
FAST = Settings(retry_initial_seconds=0.01, retry_max_seconds=0.05, load_linger_seconds=0.01)


class Scripted(Target):
    """A warehouse-like target whose cursor lives with its data; fails as told."""

    transactional = True
    label = "scripted"
    consumer = "scripted"

    def __init__(self, poison: set[int] | None = None, transient_failures: int = 0) -> None:
        self.poison = poison or set()
        self.transient_failures = transient_failures
        self.loaded: list[int] = []
        self.cursor = 0

    def position(self) -> int:
        return self.cursor

    def skip_to(self, seq: int) -> None:
        self.cursor = seq

    def is_transient(self, error: BaseException) -> bool:
        return isinstance(error, ConnectionError)

    def deliver(self, source: Source, entries: Sequence[Entry], replay: bool = False) -> list[Failure]:
        if self.transient_failures:
            self.transient_failures -= 1
            raise ConnectionError("warehouse unreachable")
        if any(e.seq in self.poison for e in entries):
            raise ValueError("cannot load this batch")
        self.loaded += [e.seq for e in entries]
        self.cursor = entries[-1].seq
        return []


def fill(log: SqliteLog, n: int) -> None:
    records = [Record(1, f"m{i}", 0, 0, orjson.dumps({"type": "track", "event": "E", "userId": "u"})) for i in range(n)]
    asyncio.run(log.append(records))


def run_until(worker: Worker, done: object, timeout: float = 10) -> None:
    worker.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():  # type: ignore[operator]
        time.sleep(0.02)
    worker.stop()
    worker.join(5)


def test_a_batch_that_keeps_failing_is_isolated_and_only_the_bad_event_is_dead_lettered(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db", 3600)
    state = DeliveryState(tmp_path / "log.db")
    fill(log, 6)
    target = Scripted(poison={4})
    worker = Worker(log, state, SOURCE, target, FAST, Metrics())
    run_until(worker, lambda: target.cursor == 6)
    assert target.loaded == [1, 2, 3, 5, 6]
    letters = state.dead_letters("scripted")
    assert [d["seq"] for d in letters] == [4] and "cannot load this batch" in letters[0]["reason"]
    log.close()


def test_engine_failures_are_retried_never_dead_lettered(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db", 3600)
    state = DeliveryState(tmp_path / "log.db")
    fill(log, 4)
    target = Scripted(transient_failures=5)
    worker = Worker(log, state, SOURCE, target, FAST, Metrics())
    run_until(worker, lambda: target.cursor == 4)
    assert target.loaded == [1, 2, 3, 4]
    assert state.dead_letters("scripted") == []
    assert "warehouse unreachable" in (state.status("scripted")["last_error"] or "")
    log.close()


def test_prune_keeps_what_a_destination_still_needs_and_what_is_younger_than_retention(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db", 3600)
    fill(log, 5)  # received_ms = 0: older than any retention
    asyncio.run(log.append([Record(1, "young", int(time.time() * 1000), 0, b"{}")]))
    cutoff = int((time.time() - 7 * 24 * 3600) * 1000)
    # The slowest destination of source 1 is at seq 3: seqs 4 and 5 are still needed.
    assert log.prune({1: 3}, cutoff) == 3
    assert [e.seq for e in log.read(1, 0, 100)] == [4, 5, 6]
    # Everyone is past seq 6, but seq 6 is younger than the retention (kept for replay).
    assert log.prune({1: 6}, cutoff) == 2
    assert [e.seq for e in log.read(1, 0, 100)] == [6]
    log.close()


def test_prune_never_lets_sequence_numbers_go_back_below_a_cursor(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db", 3600)
    fill(log, 4)
    log.prune({1: 4}, int(time.time() * 1000))  # every destination has everything, all old
    asyncio.run(log.append([Record(1, "after", 0, 0, b"{}")]))
    # A consumer whose cursor is 4 must still see the new event.
    assert [e.seq for e in log.read(1, 4, 100)] == [5]
    log.close()
