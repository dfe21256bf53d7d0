"""A log that knows its own identity (issue 9, item 3): with log.db deleted, or replaced by an older
copy, 0.1 started with log_head 0 (or behind the warehouse), handed out sequence numbers the
warehouse cursor had passed, and acknowledged events that never loaded. Now the server refuses to
start and says what happened and what to do; `sluice recover` lets it continue, loading nothing twice.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from conftest import Sluice, poll, q


def send(server: Sluice, key: str, ids: list[str]) -> None:
    batch = {"batch": [{"type": "track", "userId": "u", "event": "Seen", "messageId": i} for i in ids]}
    r = httpx.post(f"{server.url}/v1/batch", json=batch, auth=(key, ""))
    assert r.status_code == 200 and r.json()["stored"] == len(ids), r.text


def refused(server: Sluice) -> str:
    with pytest.raises(RuntimeError) as err:
        server.start()
    return str(err.value)


def remove_log(data_dir: Path) -> None:
    for f in data_dir.glob("log.db*"):
        f.unlink()


def test_a_lost_log_is_noticed_and_recover_continues_without_reloading(tmp_path: Path) -> None:
    server = Sluice(tmp_path / "data")
    server.start()
    key = server.create_source("http", "web")["write_key"]
    send(server, key, [f"a{i}" for i in range(10)])
    poll(server, "select id from web.seen", 10)
    server.stop()

    remove_log(server.data_dir)
    out = refused(server)
    assert "log.db does not match the warehouse" in out and "sluice recover" in out, out
    assert "Traceback" not in out

    recovered = server.cli("recover")
    assert "warehouse-1" in recovered.stdout, recovered.stdout
    server.start()
    try:
        send(server, key, [f"b{i}" for i in range(5)])  # seqs 1..5 again, in a new log
        poll(server, "select id from web.seen where id like 'b%'", 5)
        assert q(server, "select count(*) as n, count(distinct id) as d from web.seen") == [{"n": 15, "d": 15}]
    finally:
        server.stop()


def test_an_older_copy_of_the_log_is_noticed(tmp_path: Path) -> None:
    server = Sluice(tmp_path / "data")
    server.start()
    key = server.create_source("http", "web")["write_key"]
    send(server, key, [f"a{i}" for i in range(5)])
    poll(server, "select id from web.seen", 5)
    server.stop()
    backup = tmp_path / "backup"
    backup.mkdir()
    for f in server.data_dir.glob("log.db*"):
        shutil.copy(f, backup / f.name)
    server.start()
    send(server, key, [f"b{i}" for i in range(5)])
    poll(server, "select id from web.seen", 10)
    server.stop()

    remove_log(server.data_dir)
    for f in backup.iterdir():  # the log as it was before the b events: its tail is lost
        shutil.copy(f, server.data_dir / f.name)
    out = refused(server)
    assert "ends at seq 5" in out and "sluice recover" in out, out

    server.cli("recover")
    server.start()
    try:
        send(server, key, [f"c{i}" for i in range(3)])  # seqs 6..8 again: the warehouse had loaded 6..10
        poll(server, "select id from web.seen where id like 'c%'", 3)
        assert q(server, "select count(*) as n, count(distinct id) as d from web.seen") == [{"n": 13, "d": 13}]
    finally:
        server.stop()
