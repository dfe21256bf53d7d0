"""A 200 means durable, and nothing is loaded twice: SIGKILL the server at awkward moments (the whole process
tree, or one ingest process, the delivery process or the log writer while batches keep coming), restart it,
and count every acknowledged event in the warehouse exactly once."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Sluice, try_query

EVENT_TABLE = "crash_test"


def batch_body(ids: list[str]) -> dict[str, Any]:
    return {
        "batch": [
            {"type": "track", "userId": f"u{i % 13}", "event": "Crash Test", "messageId": mid,
             "properties": {"n": i, "label": f"event {mid}"}}
            for i, mid in enumerate(ids)
        ]
    }


def post_batch(http: httpx.Client, url: str, key: str, ids: list[str]) -> bool:
    """True only for an answer of 200 that stored or knew every message."""
    try:
        r = http.post(f"{url}/v1/batch", json=batch_body(ids), auth=(key, ""))
    except httpx.HTTPError:
        return False  # no answer: the sender does not know, and would retry
    if r.status_code != 200:
        return False
    body = r.json()
    assert body["success"] is True and "rejected" not in body, body
    return True




def drain(sluice: Sluice, key: str) -> None:
    """Send one more event and wait until it is loaded: everything the log held before it is loaded too."""
    mid = f"drain-{uuid.uuid4()}"
    r = httpx.post(f"{sluice.url}/v1/track", json={"userId": "d", "event": "Drain", "messageId": mid}, auth=(key, ""))
    assert r.status_code == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if try_query(sluice, f"select id from web.tracks where id = '{mid}'"):
            return
        time.sleep(0.1)
    raise AssertionError("the loader did not catch up within 60 s")


def loaded_ids(sluice: Sluice) -> tuple[list[str], list[str]]:
    """Ids of the crash events in web.tracks and in the event table (with repeats, if any)."""
    tracks = try_query(sluice, "select id from web.tracks where event = 'crash_test'")
    events = try_query(sluice, f"select id from web.{EVENT_TABLE}")
    assert tracks is not None and events is not None
    return [r["id"] for r in tracks], [r["id"] for r in events]


def assert_exactly_once(sluice: Sluice, acked: set[str], sent: set[str]) -> None:
    tracks, events = loaded_ids(sluice)
    for name, ids in (("tracks", tracks), (EVENT_TABLE, events)):
        assert len(ids) == len(set(ids)), f"{name}: {len(ids) - len(set(ids))} events loaded twice"
        missing = acked - set(ids)
        assert not missing, f"{name}: {len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
        assert set(ids) <= sent, f"{name}: events that were never sent"
    assert set(tracks) == set(events)
    counts = try_query(sluice, f"select count(*) as n, count(distinct id) as d from web.{EVENT_TABLE}")
    assert counts == [{"n": len(set(events)), "d": len(set(events))}]


def ids_for(prefix: str, request: int, per: int) -> list[str]:
    return [f"{prefix}-{request}-{i}" for i in range(per)]


def send_concurrently(sluice: Sluice, key: str, prefix: str, requests: int, per: int) -> set[str]:
    """`requests` batch requests of `per` events from 8 threads; the ids of those answered 200."""
    acked: set[str] = set()
    lock = threading.Lock()
    local = threading.local()

    def one(n: int) -> None:
        http = getattr(local, "http", None) or httpx.Client(timeout=60)
        local.http = http
        ids = ids_for(prefix, n, per)
        if post_batch(http, sluice.url, key, ids):
            with lock:
                acked.update(ids)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(requests)))
    return acked


def test_sigkill_right_after_the_last_200(sluice: Sluice, web: dict[str, Any]) -> None:
    key = web["write_key"]
    # Keep the loader busy: a backlog it is still loading while the measured requests arrive.
    backlog = send_concurrently(sluice, key, "backlog", 30, 100)
    assert len(backlog) == 3000
    acked = send_concurrently(sluice, key, "crash", 20, 100)
    sluice.stop(signal.SIGKILL)  # at once, whatever the loader is doing
    assert len(acked) == 2000, "every request was answered 200 before the kill"
    sluice.start()
    drain(sluice, key)
    sent = acked | backlog
    assert_exactly_once(sluice, sent, sent)
    assert len(loaded_ids(sluice)[0]) == 5000


class Load:
    """8 threads sending 50-event batches until stopped (at most 1,000 each): what was sent, what was
    acknowledged. A request that fails is not retried: its events are sent, not acknowledged."""

    def __init__(self, sluice: Sluice, key: str, prefix: str) -> None:
        self.acked: set[str] = set()
        self.sent: set[str] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._send, args=(sluice, key, f"{prefix}{w}")) for w in range(8)]
        for t in self.threads:
            t.start()

    def _send(self, sluice: Sluice, key: str, prefix: str) -> None:
        with httpx.Client(timeout=30) as http:
            for n in range(1000):
                if self.stopped.is_set():
                    return
                ids = ids_for(prefix, n, 50)
                with self.lock:
                    self.sent.update(ids)
                if post_batch(http, sluice.url, key, ids):
                    with self.lock:
                        self.acked.update(ids)
                elif not self.stopped.is_set():
                    time.sleep(0.01)

    def wait_acked(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(self.acked) >= count, f"only {len(self.acked)} events acknowledged within {timeout} s"

    def stop(self) -> tuple[set[str], set[str]]:
        self.stopped.set()
        for t in self.threads:
            t.join()
        with self.lock:
            return set(self.acked), set(self.sent)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Sluice]:
    """A server with two ingest processes, as on a two-core machine."""
    # Loads of more than the default 10,000 rows a query answers are counted here.
    server = Sluice(tmp_path / "data", workers=2, env={"SLUICE_QUERY_MAX_ROWS": "1000000"})
    server.start()
    yield server
    server.stop()


def test_sigkill_the_whole_tree_while_requests_are_in_flight(tree: Sluice) -> None:
    key = tree.create_source("http", "web")["write_key"]
    load = Load(tree, key, "flight")
    load.wait_acked(3000)
    tree.stop(signal.SIGKILL)  # every process at once; senders are mid-request
    acked_at_kill, sent = load.stop()
    assert len(sent) > len(acked_at_kill), "some requests were in flight at the kill"

    tree.start()
    drain(tree, key)
    assert_exactly_once(tree, acked_at_kill, sent)


@pytest.mark.parametrize("role", ["ingest", "deliver", "log"])
def test_sigkill_one_process_under_load(tree: Sluice, role: str) -> None:
    """One child killed while batches keep coming (and the loader has a backlog): the supervisor replaces
    it, sending goes on, and every acknowledged event is loaded exactly once."""
    key = tree.create_source("http", "web")["write_key"]
    load = Load(tree, key, f"kill-{role}")
    load.wait_acked(2000)
    before = tree.processes(role)
    os.kill(before[0], signal.SIGKILL)
    tree.wait_for_restart(role, before[0], len(before))
    load.wait_acked(len(load.acked) + 2000)  # accepted again, through the new process too
    acked, sent = load.stop()
    drain(tree, key)
    assert_exactly_once(tree, acked, sent)


def test_sigkill_while_loading_then_client_retries_everything(sluice: Sluice, web: dict[str, Any]) -> None:
    key = web["write_key"]
    acked = send_concurrently(sluice, key, "retry", 40, 100)
    assert len(acked) == 4000
    sluice.stop(signal.SIGKILL)  # the loader has a large backlog and is mid-way through it
    sluice.start()
    # A client that never saw its answers sends the very same batches again: all acknowledged, none stored twice.
    again = send_concurrently(sluice, key, "retry", 40, 100)
    assert again == acked
    sluice.stop(signal.SIGKILL)
    sluice.start()
    drain(sluice, key)
    assert_exactly_once(sluice, acked, acked)
    tracks, _ = loaded_ids(sluice)
    assert len(tracks) == 4000


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_loses_nothing(sluice: Sluice, web: dict[str, Any], sig: int) -> None:
    key = web["write_key"]
    acked = send_concurrently(sluice, key, "graceful", 10, 100)
    assert len(acked) == 1000
    sluice.stop(sig)
    sluice.start()
    drain(sluice, key)
    assert_exactly_once(sluice, acked, acked)
