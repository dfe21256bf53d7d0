"""The JetStream log against a real three-server cluster on local ports (tests/nats_cluster.py).

What a 200 promises on the scale-out log: an acknowledged append survives the SIGKILL of a server,
a messageId is stored once whichever node sends it, sequence numbers are stable and shared, replays
find events by time, and retention never drops what a destination has not passed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from sluice.delivery.jetstream_cursors import JetStreamCursors
from sluice.log.base import LogError, Record
from sluice.log.nats import JetStreamOptions, NatsLog
from sluice.log.nats_client import NatsError

_opened: list[NatsLog] = []


@pytest.fixture(autouse=True)
def _close_logs() -> Iterator[None]:
    """Every log a test opened is closed, even when the test fails (a connection left behind would keep
    reconnecting to the cluster after it stops)."""
    yield
    while _opened:
        _opened.pop().close()


def open_log(cluster: Any, stream: str, replicas: int = 3, **options: Any) -> NatsLog:
    """A log on the cluster; while the cluster is still electing its leaders, JetStream answers 503."""
    deadline = time.monotonic() + 60
    while True:
        try:
            log = NatsLog(JetStreamOptions(cluster.url, stream=stream, replicas=replicas, **options))
            _opened.append(log)
            return log
        except NatsError as e:
            if time.monotonic() > deadline:
                raise
            print(f"waiting for the cluster: {e}")
            time.sleep(0.5)


def records(source: int, ids: list[str], received_ms: int = 0) -> list[Record]:
    return [
        Record(source, mid, received_ms or int(time.time() * 1000), uuid.uuid4().bytes,
               orjson.dumps({"type": "track", "messageId": mid}))
        for mid in ids
    ]


def append(log: NatsLog, recs: list[Record]) -> list[bool]:
    return asyncio.run(log.append(recs))


def append_retrying(log: NatsLog, recs: list[Record], seconds: float = 60) -> list[bool]:
    """Append as a client would: retry a refused request (a leader election in progress) until it is taken.
    Retries are safe: the ids deduplicate."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return append(log, recs)
        except LogError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_retrying(log: NatsLog, source: int, seconds: float = 60) -> list[Any]:
    """One read of up to 1,000 entries, tried again while the cluster is still settling after a kill (a
    reader's creation can time out then, as a delivery worker's would, and it retries too)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return log.read(source, 0, 1000)
        except NatsError:
            assert time.monotonic() < deadline, "the cluster did not serve reads again"
            time.sleep(0.2)


def all_ids(log: NatsLog, source: int, seconds: float = 60) -> list[str]:
    """Every id of the source, read as a delivery worker reads: a read refused while the cluster elects a new
    leader is tried again."""
    ids: list[str] = []
    after = 0
    deadline = time.monotonic() + seconds
    while True:
        try:
            batch = log.read(source, after, 1000)
        except NatsError:
            assert time.monotonic() < deadline, "the cluster did not serve reads again"
            time.sleep(0.2)
            continue
        if not batch:
            return ids
        ids += [orjson.loads(e.body)["messageId"] for e in batch]
        after = batch[-1].seq


def stream_leader(log: NatsLog) -> str:
    info = log.conn.run(log.conn.api(f"STREAM.INFO.{log.stream}"))
    return str(info["cluster"]["leader"])


def test_acknowledged_appends_survive_sigkill_of_the_stream_leader(nats_cluster: Any) -> None:
    log = open_log(nats_cluster, "KILL")
    before = [f"a{i}" for i in range(300)]
    assert append(log, records(1, before)) == [True] * 300
    leader = int(stream_leader(log).removeprefix("n"))
    nats_cluster.kill(leader)  # the server that acknowledged every append, with no chance to flush
    try:
        # The two others elect a new leader and keep taking appends: a quorum of 2 of 3.
        after = [f"b{i}" for i in range(100)]
        flags = append_retrying(log, records(1, after))
        assert flags.count(True) == 100
        # A new client (another node) reads every acknowledged event, once, in order.
        other = open_log(nats_cluster, "KILL")
        assert all_ids(other, 1) == before + after
        seqs = [e.seq for e in read_retrying(other, 1)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 400
    finally:
        nats_cluster.start(leader)
    # The killed server comes back and catches up; nothing acknowledged went missing on the way.
    deadline = time.monotonic() + 60
    while True:
        info = log.conn.run(log.conn.api(f"STREAM.INFO.{log.stream}"))
        replicas = info["cluster"].get("replicas") or []
        if len(replicas) == 2 and all(r.get("current") for r in replicas):
            break
        assert time.monotonic() < deadline, f"the restarted server did not catch up: {info['cluster']}"
        time.sleep(0.2)
    # A reader may sit on the replica that is still applying what it caught up with: it then sees a prefix
    # of the stream (never a gap), and the rest as it arrives, which is what a delivery worker waits for.
    while (ids := all_ids(log, 1)) != before + after:
        assert ids == (before + after)[: len(ids)], "a reader saw events out of order or with a gap"
        assert time.monotonic() < deadline + 30, "the restarted server never served every acknowledged event"
        time.sleep(0.2)
    log.close()


def test_a_message_id_is_stored_once_whichever_node_sends_it(nats_cluster: Any) -> None:
    one = open_log(nats_cluster, "DEDUP")
    two = open_log(nats_cluster, "DEDUP")  # a second ingest node: its own connection
    assert one.generation() == two.generation()
    ids = [f"m{i}" for i in range(200)]

    async def both() -> tuple[list[bool], list[bool]]:
        a, b = await asyncio.gather(one.append(records(7, ids)), two.append(records(7, ids[::-1])))
        return a, b[::-1]

    first, second = asyncio.run(both())
    # Each id was stored by exactly one of the two; the other was told it was a duplicate (and answers 200).
    assert all(x != y for x, y in zip(first, second, strict=True))
    assert sorted(all_ids(one, 7)) == sorted(ids)
    assert append(two, records(7, ["m5", "new"])) == [False, True]
    one.close()
    two.close()


def test_reading_by_source_and_sequence(nats_cluster: Any) -> None:
    log = open_log(nats_cluster, "READ")
    append(log, records(1, ["a1", "a2"]) + records(2, ["b1"]) + records(1, ["a3"]))
    assert [e.seq for e in log.read(1, 0, 10)] == [1, 2, 4]
    assert [e.seq for e in log.read(1, 2, 10)] == [4]  # after a seq of its own, or of another source
    assert [e.seq for e in log.read(2, 0, 10)] == [3]
    assert log.read(1, 4, 10) == []
    first = log.read(1, 0, 1)[0]
    assert first.shape is not None and len(first.shape) == 16 and orjson.loads(first.body)["messageId"] == "a1"
    assert (log.depth(1, 0), log.depth(1, 2), log.last_seq(1), log.last_seq(2), log.last_seq(3)) == (3, 1, 4, 3, 0)
    assert log.head() >= 4 and log.wait_for(0, 1.0) >= 4
    log.close()


def test_replay_by_time(nats_cluster: Any) -> None:
    log = open_log(nats_cluster, "REPLAY")
    append(log, records(1, ["old1", "old2"]))
    time.sleep(0.05)  # distinct store times on either side of `since` (not a timing assertion)
    since = int(time.time() * 1000)
    time.sleep(0.05)
    append(log, records(1, ["new1", "new2"]))
    after = log.seq_before(1, since)
    assert after == 2
    assert [orjson.loads(e.body)["messageId"] for e in log.read(1, after, 10)] == ["new1", "new2"]
    assert log.last_seq(1, until_ms=since) == 2
    assert log.seq_before(1, int(time.time() * 1000) + 60_000) == log.last_seq(1)  # nothing that late
    log.close()


def test_cursors_are_durable_consumers_that_survive_client_restarts(nats_cluster: Any) -> None:
    log = open_log(nats_cluster, "CURSORS")
    append(log, records(1, [f"e{i}" for i in range(50)]) + records(2, ["other"]))
    cursors = JetStreamCursors(log, ack_wait_seconds=30)
    assert cursors.cursor("dest-1") == 0  # a new destination starts from the oldest event
    cursors.commit("dest-1", 1, 20)
    cursors.commit("dest-1", 1, 35)
    assert cursors.cursor("dest-1") == 35
    log.close()
    # A restarted client (or another node) reads the position from the server.
    again = open_log(nats_cluster, "CURSORS")
    fresh = JetStreamCursors(again, ack_wait_seconds=30)
    assert fresh.cursor("dest-1") == 35
    fresh.commit("dest-1", 1, 50)
    assert fresh.cursor("dest-1") == 50
    info = again.conn.run(again.conn.api(f"CONSUMER.INFO.{again.stream}.dest-1"))
    assert info["num_pending"] == 0 and info["ack_floor"]["stream_seq"] == 50
    fresh.forget("dest-1")
    assert fresh.cursor("dest-1") == 0
    again.close()


def test_prune_never_drops_what_a_destination_has_not_passed(nats_cluster: Any) -> None:
    log = open_log(nats_cluster, "PRUNE", replicas=1)
    append(log, records(1, [f"e{i}" for i in range(10)]))
    cursors = JetStreamCursors(log, ack_wait_seconds=30)
    cursors.commit("slow", 1, 4)  # a destination (run by any node) that has loaded up to seq 4
    everything_is_old = int(time.time() * 1000) + 60_000
    # This node's workers have all passed seq 10, but the durable cursor on the server has not.
    assert log.prune({1: 10}, everything_is_old) == 4
    assert [e.seq for e in log.read(1, 0, 100)] == list(range(5, 11))
    # Younger than the retention: kept, whatever the cursors say.
    assert log.prune({1: 10}, 0) == 0
    append(log, records(1, ["after-prune"]))
    assert log.read(1, 10, 10)[0].seq == 11  # sequence numbers keep rising past a purge
    log.close()


def test_a_full_stream_refuses_new_events_instead_of_dropping_old_ones(nats_cluster: Any) -> None:
    log = open_log(nats_cluster, "FULL", replicas=1, max_bytes=4096)
    big = [Record(1, f"x{i}", 1, b"", b"x" * 1000) for i in range(3)]
    assert append(log, big) == [True] * 3
    with pytest.raises(LogError, match="JetStream refused"):
        append(log, [Record(1, f"y{i}", 1, b"", b"y" * 1000) for i in range(3)])
    assert len(log.read(1, 0, 100)) >= 3  # the old events are all still there
    log.close()


def test_a_generation_per_stream(nats_cluster: Any) -> None:
    log = open_log(nats_cluster, "GEN", replicas=1)
    first = log.generation()
    assert first
    log.conn.run(log.conn.api(f"STREAM.DELETE.{log.stream}"))
    log.close()
    again = open_log(nats_cluster, "GEN", replicas=1)
    assert again.generation() not in ("", first)  # a re-created stream: warehouse cursors are refused
    again.close()
