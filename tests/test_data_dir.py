"""A data directory that fails loudly (issue 9): a damaged, missing or locked file is one clear line and a
non-zero exit, never a traceback or a silent stall; a destination that cannot make progress shows in
/health and `deliveries status`. Also how `sluice serve` starts and stops: a busy port, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import Sluice, free_port, poll


def serve_fails(server: Sluice) -> str:
    """Run `sluice serve` expecting it to refuse to start; its output."""
    result = subprocess.run(
        [sys.executable, "-m", "sluice.cli", "--data-dir", str(server.data_dir), "serve", "--port", str(server.port)],
        capture_output=True, text=True, env=server._env(), timeout=60,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out and "listening" not in out, out
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


@pytest.fixture
def used(tmp_path: Path) -> Sluice:
    """A data dir that has served: a source, events in the log and loaded in the warehouse."""
    s = Sluice(tmp_path / "data", env={"SLUICE_LOAD_LINGER_SECONDS": "0.05"})
    s.start()
    key = s.create_source("http", "web")["write_key"]
    s.key = key  # type: ignore[attr-defined]
    r = httpx.post(f"{s.url}/v1/track", json={"userId": "u", "event": "E", "messageId": "m1"}, auth=(key, ""))
    assert r.status_code == 200
    poll(s, "select id from web.tracks", 1)
    s.stop()
    return s


@pytest.mark.parametrize("size", [0, 100])
def test_a_damaged_warehouse_is_one_line(used: Sluice, size: int) -> None:
    os.truncate(used.data_dir / "warehouse.duckdb", size)
    err = serve_fails(used)
    assert "warehouse.duckdb cannot be opened" in err and "move it away" in err
    res = used.cli("query", "select 1", check=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr


@pytest.mark.parametrize("name", ["catalog.db", "log.db"])
def test_a_damaged_sqlite_file_is_one_line_for_the_server_and_every_command(used: Sluice, name: str) -> None:
    for suffix in ("-wal", "-shm"):
        (used.data_dir / f"{name}{suffix}").unlink(missing_ok=True)
    (used.data_dir / name).write_bytes(b"this is not a database" * 500)
    err = serve_fails(used)
    assert f"{name} is damaged" in err and "restore it from a backup" in err
    commands = [("deliveries", "status"), ("deliveries", "dead-letters", "warehouse")]
    if name == "catalog.db":
        commands.append(("sources", "list"))
    for args in commands:
        res = used.cli(*args, check=False)
        assert res.returncode == 1 and "Traceback" not in res.stderr, (args, res.stderr)
        assert name in res.stderr and len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)


def test_a_lost_catalog_is_refused_not_replaced(used: Sluice) -> None:
    for suffix in ("", "-wal", "-shm"):
        (used.data_dir / f"catalog.db{suffix}").unlink(missing_ok=True)
    err = serve_fails(used)
    assert "catalog.db is missing" in err and "restore catalog.db" in err
    res = used.cli("sources", "create", "http", "--name", "New", "--schema", "new", check=False)
    assert res.returncode == 1 and "catalog.db is missing" in res.stderr
    assert not (used.data_dir / "catalog.db").exists()  # nothing created behind the user's back


def test_a_query_left_running_does_not_block_serve(used: Sluice) -> None:
    env = {**used._env(), "SLUICE_QUERY_TIME_LIMIT_SECONDS": "3"}
    query = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "--data-dir", str(used.data_dir), "query",
         "select count(*) from range(10000000000000) a, range(10) b"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    time.sleep(1.5)  # the query holds warehouse.duckdb
    used.env["SLUICE_QUERY_TIME_LIMIT_SECONDS"] = "3"
    used.start(timeout=60)  # waits for the query to end, then starts
    try:
        _, err = query.communicate(timeout=60)
        assert query.returncode == 1 and "longer than the limit of 3 s" in err and "Traceback" not in err
        assert used.query("select id from web.tracks") == [{"id": "m1"}]
    finally:
        used.stop()


def test_a_destination_that_cannot_make_progress_shows_in_health_and_status(tmp_path: Path) -> None:
    s = Sluice(tmp_path / "data", env={"SLUICE_STALL_SECONDS": "1", "SLUICE_RETRY_INITIAL_SECONDS": "0.1",
                                       "SLUICE_RETRY_MAX_SECONDS": "0.2", "SLUICE_LOAD_LINGER_SECONDS": "0.05"})
    s.start()
    try:
        key = s.create_source("http", "web")["write_key"]
        dead = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
        s.cli("destinations", "add", "web", "postgres", "--name", "pg", "--url", dead)
        r = httpx.post(f"{s.url}/v1/track", json={"userId": "u", "event": "E"}, auth=(key, ""))
        assert r.status_code == 200  # ingest still acknowledges
        deadline = time.monotonic() + 30
        health: dict[str, object] = {}
        while time.monotonic() < deadline:
            health = httpx.get(f"{s.url}/health").json()
            if health["status"] == "degraded":
                break
            time.sleep(0.2)
        assert health["status"] == "degraded", health
        (problem,) = health["problems"]  # type: ignore[misc]
        assert problem["destination"] == "pg" and problem["error"]
        poll(s, "select id from web.tracks", 1)  # the warehouse keeps loading
        rows = orjson.loads(s.cli("deliveries", "status", "--json").stdout)
        pg = next(r for r in rows if r["destination"] == "pg")
        assert pg["state"] == "stalled" and pg["last_error"]
        table = s.cli("deliveries", "status").stdout
        assert "stalled" in table and pg["last_error"] in table  # the whole error, never cut
        metrics = httpx.get(f"{s.url}/metrics", timeout=10)
        assert metrics.status_code == 200
    finally:
        s.stop()


def test_a_busy_port_is_one_line_and_never_says_listening(sluice: Sluice, tmp_path: Path) -> None:
    other = Sluice(tmp_path / "other", port=sluice.port)
    err = serve_fails(other)
    assert f"cannot listen on 127.0.0.1:{sluice.port}" in err and "--port" in err
    other = Sluice(tmp_path / "third", admin_port=sluice.admin_port)
    err = serve_fails(other)
    assert f"cannot listen on 127.0.0.1:{sluice.admin_port}" in err and "--admin-port" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_end_cleanly_with_exit_0(tmp_path: Path, sig: int) -> None:
    s = Sluice(tmp_path / "data")
    s.start()
    assert s.proc is not None
    proc = s.proc
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0
    s.proc = None
    s._log.close()
    out = s.log_path.read_text()
    assert "Aborted" not in out and "Traceback" not in out, out
    assert not (s.data_dir / "server.json").exists()
