"""The scale-out backends under the unchanged delivery worker: a JetStream log (3-server cluster), destination
cursors as durable consumers, dead letters, replays and status in PostgreSQL, the catalog in PostgreSQL
seen by several nodes at once, and the registry that picks each backend by name."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from sluice import backends
from sluice.catalog.models import Source
from sluice.catalog.postgres import PostgresCatalog
from sluice.catalog.store import CatalogError
from sluice.delivery.jetstream_cursors import JetStreamCursors
from sluice.delivery.pg_state import PgCursors, PostgresDeliveryState
from sluice.delivery.worker import Worker
from sluice.destinations.base import Failure, Target
from sluice.ingest.auth_watch import WatchedSourceRegistry
from sluice.log.base import Entry, Record
from sluice.log.nats import JetStreamOptions, NatsLog
from sluice.log.nats_client import NatsError
from sluice.metrics import Metrics
from sluice.settings import Settings

FAST = Settings(retry_initial_seconds=0.01, retry_max_seconds=0.05, load_linger_seconds=0.01,
                nats_head_poll_seconds=0.02)
SOURCE = Source(1, "http", "Web", "web", "key", None, "")


def eventually(check: Callable[[], Any], what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.02)


class Recorder(Target):
    """A webhook-like destination (the worker keeps its cursor) that refuses the events it is told to."""

    label = "recorder"
    consumer = "dest-1"

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.refuse = refuse or set()
        self.got: list[str] = []

    def deliver(self, source: Source, entries: Sequence[Entry], replay: bool = False) -> list[Failure]:
        failures = []
        for e in entries:
            mid = orjson.loads(e.body)["messageId"]
            if mid in self.refuse:
                failures.append(Failure(e, f"refused {mid}"))
            else:
                self.got.append(mid)
        return failures


def connect(cluster: Any, stream: str) -> NatsLog:
    deadline = time.monotonic() + 60
    while True:
        try:
            return NatsLog(JetStreamOptions(cluster.url, stream=stream, replicas=3))
        except NatsError:
            assert time.monotonic() < deadline
            time.sleep(0.5)


def send(log: NatsLog, ids: list[str]) -> None:
    records = [Record(1, mid, int(time.time() * 1000), b"", orjson.dumps({"messageId": mid})) for mid in ids]
    assert all(asyncio.run(log.append(records)))


@pytest.fixture
def node(nats_cluster: Any, pg_database: str) -> Iterator[Callable[[], tuple[NatsLog, PostgresDeliveryState]]]:
    """Opens a 'node': its own NATS connection and PostgreSQL state over the shared cluster and database."""
    opened: list[tuple[NatsLog, PostgresDeliveryState]] = []

    def open_node() -> tuple[NatsLog, PostgresDeliveryState]:
        log = connect(nats_cluster, "DELIVERY")
        state = PostgresDeliveryState(pg_database, JetStreamCursors(log, ack_wait_seconds=30))
        opened.append((log, state))
        return log, state

    yield open_node
    for log, state in opened:
        state.close()
        log.close()


def run_worker(log: NatsLog, state: PostgresDeliveryState, target: Target) -> Worker:
    worker = Worker(log, state, SOURCE, target, FAST, Metrics())  # type: ignore[arg-type]
    worker.start()
    return worker


def stop(worker: Worker) -> None:
    worker.stop()
    worker.join(timeout=30)


def test_the_worker_delivers_through_a_durable_cursor_with_dead_letters_replay_and_redrive(node: Any) -> None:
    log, state = node()
    send(log, [f"e{i}" for i in range(20)])
    target = Recorder(refuse={"e3", "e7"})
    worker = run_worker(log, state, target)
    eventually(lambda: state.cursor("dest-1") == 20, "delivery of the first 20")
    stop(worker)
    assert target.got == [f"e{i}" for i in range(20) if i not in (3, 7)]
    dead = state.dead_letters("dest-1")
    assert [orjson.loads(d["body"])["messageId"] for d in dead] == ["e3", "e7"]
    assert dead[0]["reason"] == "refused e3"
    status = state.status("dest-1")
    assert status["dead_letters"] == 2 and status["last_success"] and "refused e7" in status["last_error"]
    # The cursor is the durable consumer's ack floor, on the server.
    info = log.conn.run(log.conn.api("CONSUMER.INFO.DELIVERY.dest-1"))
    assert info["ack_floor"]["stream_seq"] == 20 and info["config"]["headers_only"]

    # Another node takes over with nothing but the shared state: it carries on, sends nothing twice.
    log2, state2 = node()
    send(log2, ["late1", "late2"])
    since = int(time.time() * 1000)
    time.sleep(0.05)  # distinct store times either side of `since` (not a timing assertion)
    send(log2, ["late3"])
    again = Recorder()
    worker = run_worker(log2, state2, again)
    eventually(lambda: again.got == ["late1", "late2", "late3"], "delivery of what came later")
    # Replay by time: the range is found through JetStream's store times, then read back from JetStream.
    after = log2.seq_before(1, since)
    state2.add_replay("dest-1", after, log2.last_seq(1))
    eventually(lambda: again.got == ["late1", "late2", "late3", "late3"], "the replay")
    # Re-drive the dead letters: delivered, they leave the store.
    assert state2.request_retry("dest-1", None) == 2
    eventually(lambda: state2.status("dest-1")["dead_letters"] == 0, "the re-drive")
    stop(worker)
    assert again.got[4:] == ["e3", "e7"]
    assert state2.pending_replays("dest-1") == 0


class Loaded(Target):
    """A warehouse-like destination that keeps its own cursor with its rows."""

    transactional = True
    label = "warehouse"
    consumer = "dest-2"

    def __init__(self) -> None:
        self.rows: list[int] = []

    def position(self) -> int:
        return self.rows[-1] if self.rows else 0

    def deliver(self, source: Source, entries: Sequence[Entry], replay: bool = False) -> list[Failure]:
        self.rows += [e.seq for e in entries if not self.rows or e.seq > self.rows[-1]]
        return []


def test_a_warehouse_cursor_is_mirrored_to_its_durable_consumer(node: Any) -> None:
    log, state = node()
    send(log, ["w1", "w2", "w3"])
    target = Loaded()
    worker = run_worker(log, state, target)
    head = log.last_seq(1)
    eventually(lambda: target.position() == head, "the load")
    # The warehouse's own cursor decides where it reads; the durable follows it after each commit, so
    # every node sees its position (status, lag, and a prune that must not drop what it has not loaded).
    eventually(lambda: state.cursor("dest-2") == head, "the mirrored position")
    stop(worker)


def test_cursors_in_postgresql_commit_with_their_dead_letters(pg_database: str) -> None:
    state = PostgresDeliveryState(pg_database)  # with the embedded log: cursors in a table beside the rest
    assert isinstance(state.cursors, PgCursors)
    entry = Entry(5, None, 1, b'{"messageId":"x"}')
    state.advance("dest-9", 1, 5, [Failure(entry, "no")])
    assert state.cursor("dest-9") == 5 and state.status("dest-9")["dead_letters"] == 1
    # A write as the admin API sends it (the embedded state's operation names).
    assert state.apply("request_retry", consumer="dest-9", ids=None) == 1
    state.forget("dest-9")
    assert state.cursor("dest-9") == 0 and state.status("dest-9")["dead_letters"] == 0
    state.close()


def test_the_postgresql_catalog_is_seen_by_every_node_at_once(pg_database: str) -> None:
    node_a = PostgresCatalog(pg_database, poll_seconds=30)  # the poll is only a safety net: NOTIFY does it
    node_b = PostgresCatalog(pg_database, poll_seconds=30)
    keys_b = WatchedSourceRegistry(node_b)
    try:
        assert keys_b.all() == []
        web = node_a.create_source("http", "Web", "web")
        assert eventually(lambda: keys_b.by_write_key(web.write_key), "the new source on node b").id == web.id
        rotated = node_a.rotate_key("web")
        eventually(lambda: keys_b.by_write_key(rotated.write_key), "the rotated key on node b")
        assert keys_b.by_write_key(web.write_key) is None  # the old key stops working there too
        node_a.update_source("web", allowed_origins=["https://shop.example"], store_ips=False)
        updated = eventually(lambda: (s := keys_b.by_write_key(rotated.write_key)) and not s.store_ips and s,
                             "the updated settings on node b")
        assert updated.allowed_origins == ("https://shop.example",)
        with pytest.raises(CatalogError, match="16 characters"):
            node_b.update_source("web", segment_secret="short")
        dest = node_a.add_destination("web", "webhook", "hook", {"url": "http://127.0.0.1:1/"})
        assert [d.name for d in node_b.list_destinations()] == ["hook"] and dest.consumer == "dest-1"
        with pytest.raises(CatalogError, match="already used"):
            node_b.create_source("http", "Again", "web")
        node_b.delete_source("web")
        eventually(lambda: keys_b.all() == [], "the deletion on node b")
        assert node_a.list_destinations() == []  # its destinations went with it
    finally:
        keys_b.close()
        node_a.close()
        node_b.close()


def test_backends_are_chosen_by_name(tmp_path: Path, nats_cluster: Any, pg_database: str) -> None:
    embedded = Settings(data_dir=tmp_path)
    assert backends.check(embedded) == ("sqlite", "sqlite") and backends.embedded(embedded)
    with pytest.raises(ValueError, match="SLUICE_CATALOG=postgresql"):
        backends.check(Settings(data_dir=tmp_path, log=nats_cluster.url))
    with pytest.raises(ValueError, match="nats://"):
        backends.check(Settings(data_dir=tmp_path, log="kafka://x"))
    scale_out = Settings(data_dir=tmp_path, log=nats_cluster.url, catalog=pg_database, nats_stream="BACKENDS")
    built = backends.open_backends(scale_out)
    try:
        assert isinstance(built.log, NatsLog) and isinstance(built.catalog, PostgresCatalog)
        assert isinstance(built.state, PostgresDeliveryState) and isinstance(built.state.cursors, JetStreamCursors)
        assert isinstance(built.sources, WatchedSourceRegistry)
    finally:
        built.close()
    # `sluice serve` runs the embedded layout or the scale-out roles, and says why not for anything between.
    from sluice.server import StartupError, serve

    assert backends.deployment(scale_out) == "scale-out" and backends.deployment(embedded) == "embedded"
    with pytest.raises(StartupError, match="--role ingest runs one part of a scale-out deployment"):
        serve(Settings(data_dir=tmp_path, role="ingest"))
    with pytest.raises(StartupError, match=r"set both --log nats://\S+ and --catalog postgresql://\S+, or neither"):
        serve(Settings(data_dir=tmp_path, catalog=pg_database))
