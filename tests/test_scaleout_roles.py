"""The scale-out roles' parts that need no cluster: one owner per (source, destination) among deliver
nodes through PostgreSQL advisory locks, and `sluice serve`'s answers when the flags do not fit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from sluice.delivery.ownership import PgOwners


def test_one_owner_per_consumer_taken_released_and_taken_over(pg_database: str) -> None:
    node_a, node_b = PgOwners(pg_database, "SLUICE"), PgOwners(pg_database, "SLUICE")
    other_stream = PgOwners(pg_database, "OTHER")
    try:
        assert node_a.acquire(1, "dest-1") and node_a.acquire(1, "dest-1")  # held: asking again is a yes
        assert not node_b.acquire(1, "dest-1")  # another node runs it
        assert node_b.acquire(1, "dest-2") and node_b.acquire(2, "dest-1")  # other workers are free
        assert other_stream.acquire(1, "dest-1")  # another deployment sharing the database is independent
        # Released once the worker stopped (a destination disabled, a source deleted): another node takes it.
        node_a.release(1, "dest-1")
        assert node_b.acquire(1, "dest-1") and not node_a.acquire(1, "dest-1")

        # A node whose session dies (SIGKILL, network) loses every lock at once, and knows it.
        with psycopg.connect(pg_database, autocommit=True) as admin:
            pid = node_b._conn.info.backend_pid  # type: ignore[union-attr]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 30  # the backend exits a moment after it is told to
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                assert time.monotonic() < deadline, "the terminated session did not end"
                time.sleep(0.05)
        assert node_b.alive() is False and node_b.held == set()
        assert node_a.acquire(1, "dest-1") and node_a.acquire(1, "dest-2")  # taken over
        assert node_b.alive() and not node_b.acquire(1, "dest-1")  # back, with a new session, as a standby
        node_a.close()  # a node that stops cleanly releases everything (its backend ends a moment later)
        deadline = time.monotonic() + 30
        while not node_b.acquire(1, "dest-1"):  # as a deliver node's next sync would
            assert time.monotonic() < deadline, "the closed session's locks were not released"
            time.sleep(0.05)
        assert node_b.acquire(1, "dest-2")
    finally:
        for owners in (node_a, node_b, other_stream):
            owners.close()


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice.cli", "--data-dir", str(tmp_path / "d"), "serve", *args],
                          capture_output=True, text=True, timeout=120)


def test_serve_says_why_a_role_or_backend_cannot_run(tmp_path: Path, pg_database: str) -> None:
    # A role of its own needs the shared engines; the embedded data dir runs everything in one server.
    out = serve(tmp_path, "--role", "ingest")
    assert out.returncode == 1 and "--role ingest runs one part of a scale-out deployment" in out.stderr
    # Half a scale-out configuration is refused rather than half ignored.
    out = serve(tmp_path, "--catalog", pg_database)
    assert out.returncode == 1 and "set both --log nats://" in out.stderr
    out = serve(tmp_path, "--log", "kafka://x:1", "--catalog", pg_database)
    assert out.returncode == 1 and "SLUICE_LOG='kafka://x:1'" in out.stderr
    # An engine that does not answer: one line naming it, and never the password of its URL (the catalog is
    # opened first, so no NATS server is needed to hear of a wrong database).
    bad = pg_database.replace("postgres@", "postgres:hunter2secret@").rsplit("/", 1)[0] + "/no_such_database"
    out = serve(tmp_path, "--role", "deliver", "--admin-port", "0", "--log", "nats://127.0.0.1:1",
                "--catalog", bad)
    assert out.returncode == 1
    assert "error: cannot open the scale-out backends" in out.stderr and "no_such_database" in out.stderr
    assert "hunter2secret" not in out.stdout + out.stderr


def test_an_ingest_node_answers_503_while_nats_is_away_and_200_once_it_is_back(
    tmp_path: Path, pg_database: str
) -> None:
    from nats_cluster import NatsCluster, nats_server_binary
    from scaleout_node import Node

    if nats_server_binary() is None:
        pytest.skip("nats-server is not installed")
    nats = NatsCluster(tmp_path / "nats", size=1)
    nats.start()
    nats.wait_for_jetstream()
    env = {"SLUICE_LOG": nats.url, "SLUICE_CATALOG": pg_database, "SLUICE_NATS_STREAM": "AWAY",
           "SLUICE_NATS_REQUEST_TIMEOUT_SECONDS": "2"}
    node = Node(tmp_path / "ingest", env=env, role="ingest")
    try:
        key = node.create_source("http", "web")["write_key"]
        node.start()

        def track(mid: str) -> httpx.Response:
            return httpx.post(f"{node.url}/v1/track", auth=(key, ""), json={"userId": "u", "event": "E",
                                                                          "messageId": mid}, timeout=60)

        assert track("before").status_code == 200
        nats.kill(0)
        refused = track("while-away")
        assert refused.status_code == 503 and "retry later" in refused.json()["error"]
        # /health does not wait for the missing server (it would block the process's event loop): it
        # answers with the last position it knew.
        health = httpx.get(f"{node.url}/health", timeout=60)
        assert health.status_code == 200 and health.json()["log_head"] == 1
        nats.start(0)
        deadline = time.monotonic() + 90
        while (answer := track("while-away").status_code) != 200:  # the sender's retry, as Segment's clients do
            assert answer == 503 and time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        node.stop()
        nats.stop()
