"""The scale-out deployment end to end, as an operator runs it on one machine: a 3-server JetStream
cluster, two `sluice serve --role ingest` nodes, two `--role deliver` nodes (one runs the workers, the
other stands by), the catalog and a PostgreSQL destination in one database. Segment's official Python
client sends to both ingest nodes while one NATS server and one ingest node are SIGKILLed and
restarted; every acknowledged event must be in PostgreSQL exactly once, delivery must resume by
itself, a key rotated through one node must take effect on the other, and when the deliver node that
runs the worker is SIGKILLed the standby takes over."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import segment.analytics as analytics
from conftest import free_port
from scaleout_node import Node, eventually


@pytest.fixture
def deployment(nats_cluster: Any, pg_database: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    env = {
        # A stream per test: the catalog (a new database) numbers its sources from 1 again.
        "SLUICE_LOG": nats_cluster.url, "SLUICE_CATALOG": pg_database, "SLUICE_NATS_STREAM": f"E2E_{uuid.uuid4().hex}",
        "SLUICE_NATS_REPLICAS": "3", "SLUICE_NATS_HEAD_POLL_SECONDS": "0.05", "SLUICE_LOAD_LINGER_SECONDS": "0.1",
        "SLUICE_RETRY_INITIAL_SECONDS": "0.2", "SLUICE_RETRY_MAX_SECONDS": "1", "SLUICE_CATALOG_POLL_SECONDS": "1",
        "SLUICE_DELIVER_NICE": "0",
    }
    nodes = {
        "ingest_a": Node(tmp_path / "ingest-a", env=env, role="ingest"),
        "ingest_b": Node(tmp_path / "ingest-b", env=env, role="ingest"),
        "deliver_1": Node(tmp_path / "deliver-1", env=env, role="deliver"),
    }
    # The stream and the catalog's tables are made by whoever comes first: the CLI here, like an operator.
    source = nodes["ingest_a"].create_source("http", "web")
    nodes["ingest_a"].cli("destinations", "add", "web", "postgres", "--name", "pg", "--url", pg_database)
    started: list[Node] = []
    try:
        threads = [threading.Thread(target=n.start) for n in nodes.values()]  # three cold starts at once
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        started += nodes.values()
        yield {"nodes": nodes, "source": source, "env": env, "tmp": tmp_path, "db": pg_database,
               "cluster": nats_cluster, "started": started}
    finally:
        for node in started:
            node.stop()


def stream_leader(cluster: Any, stream: str) -> int:
    """Which server (n0, n1, n2) leads the stream: the one whose death hurts most."""
    import asyncio

    import nats

    from sluice.log.nats_client import servers

    async def ask() -> str:
        nc = await nats.connect(servers=servers(cluster.url))
        try:
            return str((await nc.jetstream().stream_info(stream)).cluster.leader)  # type: ignore[union-attr]
        finally:
            await nc.close()

    return int(asyncio.run(ask()).removeprefix("n"))


def rows(db: str) -> list[str]:
    with psycopg.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM web.tracks")]


def send_all(client: analytics.Client, ids: list[str], pause: float) -> None:
    for mid in ids:
        client.track(f"user-{mid}", "Order Completed", {"n": mid}, message_id=mid)
        time.sleep(pause)
    client.flush()


def test_two_ingest_nodes_lose_nothing_when_a_nats_server_and_a_node_are_killed(deployment: dict[str, Any]) -> None:
    nodes, key, db, cluster = deployment["nodes"], deployment["source"]["write_key"], deployment["db"], \
        deployment["cluster"]
    ingest_a, ingest_b, deliver_1 = nodes["ingest_a"], nodes["ingest_b"], nodes["deliver_1"]

    # Segment's own client, one per ingest node (as behind a load balancer), retrying as it does by default.
    failed: list[str] = []

    def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
        failed.extend(m["messageId"] for m in batch)

    clients = [analytics.Client(key, host=n.url, on_error=on_error, max_retries=20, timeout=15, upload_size=50)
               for n in (ingest_a, ingest_b)]
    sent = {c: [f"{name}-{i}" for i in range(1000)] for c, name in zip(clients, ("a", "b"), strict=True)}  # ~4 s each
    senders = [threading.Thread(target=send_all, args=(c, ids, 0.004)) for c, ids in sent.items()]
    for t in senders:
        t.start()
    # Under load: SIGKILL the stream's leader among the NATS servers and every process of ingest node b at
    # once, then bring both back.
    eventually(lambda: len(rows(db)) >= 100, "the first events in PostgreSQL")
    leader = stream_leader(cluster, deployment["env"]["SLUICE_NATS_STREAM"])
    cluster.kill(leader)
    ingest_b.stop(signal.SIGKILL)
    time.sleep(1)  # let the senders run into the dead node and the missing server (not an assertion)
    cluster.start(leader)
    ingest_b.start()
    for t in senders:
        t.join(timeout=240)
        assert not t.is_alive(), "a sender did not finish"
    for c in clients:
        c.join()

    every = {mid for ids in sent.values() for mid in ids}
    # The client retries 5xx and refused connections: every event ends acknowledged by one node or the other.
    assert failed == [], f"{len(failed)} events were never acknowledged: {failed[:5]}"
    acknowledged = every
    # Every acknowledged event arrives, by itself, after the failures; nothing is in PostgreSQL twice.
    eventually(lambda: acknowledged <= set(rows(db)), "every acknowledged event in PostgreSQL", 120)
    loaded = rows(db)
    assert len(loaded) == len(set(loaded)) and set(loaded) <= every
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM web.order_completed").fetchone() == (len(loaded),)

    # Delivery goes on from where it was: new events after the restarts load too, through either node.
    for node, mid in ((ingest_a, "after-a"), (ingest_b, "after-b")):
        r = httpx.post(f"{node.url}/v1/track", auth=(key, ""), json={"userId": "u", "event": "Later",
                                                                      "messageId": mid}, timeout=30)
        assert r.status_code == 200, r.text
    eventually(lambda: {"after-a", "after-b"} <= set(rows(db)), "the events sent after the restarts")
    # Its status shows it recovered (its cursor's mirror on the NATS servers may lag the rows for a moment,
    # while the restarted server's consumer replica catches up).
    eventually(lambda: [(d["destination"], d["state"]) for d in deliver_1.admin("/admin/status")["deliveries"]]
               == [("pg", "ok")], "the destination's status back to ok")
    # The CLI reads the shared state from any node's machine, no server needed: nothing left to deliver.
    cli_status = orjson.loads(ingest_b.cli("deliveries", "status", "--json").stdout)
    assert [(d["destination"], d["lag"], d["dead_letters"]) for d in cli_status] == [("pg", 0, 0)]

    # Key rotation through node a (the CLI on its data dir, the shared catalog) takes effect on node b.
    rotated = orjson.loads(ingest_a.cli("sources", "rotate-key", "web", "--json").stdout)["write_key"]
    assert rotated != key

    def answer(node: Node, write_key: str) -> int:
        return httpx.post(f"{node.url}/v1/track", auth=(write_key, ""),
                          json={"userId": "u", "event": "Rotated", "messageId": f"r-{time.monotonic_ns()}"},
                          timeout=30).status_code

    eventually(lambda: answer(ingest_b, key) == 401, "the old key refused on node b", 30)
    assert answer(ingest_b, rotated) == 200  # b reloaded its keys: the new one works there
    eventually(lambda: answer(ingest_a, rotated) == 200, "the new key on node a", 30)  # a hears it on its own


def test_a_standby_deliver_node_takes_over_when_the_owner_dies(deployment: dict[str, Any]) -> None:
    nodes, key, db = deployment["nodes"], deployment["source"]["write_key"], deployment["db"]
    ingest_a, deliver_1 = nodes["ingest_a"], nodes["deliver_1"]
    standby = Node(deployment["tmp"] / "deliver-2", env=deployment["env"], role="deliver",
                   admin_port=free_port())
    standby.start()
    deployment["started"].append(standby)
    client = analytics.Client(key, host=ingest_a.url, sync_mode=True, max_retries=5, timeout=15)
    for i in range(20):
        client.track("u", "Before", message_id=f"before-{i}")
    eventually(lambda: len(rows(db)) == 20, "the first events")
    # One owner: the first node runs the worker, the standby says it runs elsewhere.
    # (A worker may be between a retry and its next success on a loaded machine: it settles by itself.)
    eventually(lambda: [d["state"] for d in deliver_1.admin("/admin/status")["deliveries"]] == ["ok"],
               "the owner's worker ok")
    assert [d["state"] for d in standby.admin("/admin/status")["deliveries"]] == ["elsewhere"]

    deliver_1.stop(signal.SIGKILL)  # its PostgreSQL sessions end with it, and its locks
    for i in range(20):
        client.track("u", "After", message_id=f"after-{i}")
    eventually(lambda: len(rows(db)) == 40, "delivery by the standby node")
    assert sorted(rows(db)) == sorted([f"before-{i}" for i in range(20)] + [f"after-{i}" for i in range(20)])
    assert [d["state"] for d in standby.admin("/admin/status")["deliveries"]] == ["ok"]
    assert os.path.exists(standby.data_dir / "server.json")

    # A replay asked for with the CLI anywhere (shared state, found in JetStream by time) is carried out by
    # the node running the worker; the warehouse keeps one row per event.
    out = ingest_a.cli("replay", "pg", "--since", "1h").stdout
    assert out.startswith("replaying 40 events of web to pg") and "every node sees it" in out

    def replays_left() -> int:
        with psycopg.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM _sluice.replays").fetchone()[0])  # type: ignore[index]

    with psycopg.connect(db) as conn:  # the CLI's request went to the shared state (and was taken from there)
        assert conn.execute("SELECT last_value, is_called FROM _sluice.replays_id_seq").fetchone() == (1, True)
    eventually(lambda: replays_left() == 0, "the replay")
    assert sorted(rows(db)) == sorted([f"before-{i}" for i in range(20)] + [f"after-{i}" for i in range(20)])
    assert "no dead letters for pg" in ingest_a.cli("deliveries", "dead-letters", "pg").stdout
