"""`sluice serve`'s processes: a supervisor, N ingest processes on one port, one log writer, one delivery
process. Each role does its part, a child that dies is replaced, SIGTERM stops every one of them, and
/metrics adds up what every process counted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Sluice, poll, wait_group_gone
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture
def two(tmp_path: Path) -> Any:
    server = Sluice(tmp_path / "data", workers=2, env={"SLUICE_LOAD_LINGER_SECONDS": "0.05"})
    server.start()
    yield server
    server.stop()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def track(key: str, url: str, mid: str) -> int:
    # A connection of its own each time: the kernel hands new connections to either ingest process.
    return httpx.post(f"{url}/v1/track", json={"userId": "u", "event": "Ping", "messageId": mid}, auth=(key, ""),
                      timeout=30).status_code


def test_the_processes_and_what_each_loads(two: Sluice) -> None:
    roles = {role: two.processes(role) for role in ("log", "deliver", "ingest")}
    assert len(roles["log"]) == 1 and len(roles["deliver"]) == 1 and len(roles["ingest"]) == 2
    assert two.proc is not None
    for pid in two.processes():
        assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == two.proc.pid
    # Only the delivery process holds DuckDB and Arrow; ingest, the log writer and the supervisor never load them.
    for pid in [two.proc.pid, *roles["ingest"], *roles["log"]]:
        text = maps(pid)
        assert "duckdb" not in text and "arrow" not in text, pid
    assert "duckdb" in maps(roles["deliver"][0])


def test_every_ingest_process_answers_and_metrics_add_up(two: Sluice) -> None:
    key = two.create_source("http", "web")["write_key"]
    n = 40
    assert [track(key, two.url, f"m{i}") for i in range(n)] == [200] * n
    poll(two, "select id from web.tracks", n)
    # Both processes took requests (each one's own request counter is in the shared directory).
    shared = two.data_dir / "run" / "metrics"
    pids = {p.stem.rsplit("_", 1)[1] for p in shared.glob("counter_*.db")}
    assert {str(p) for p in two.processes("ingest")} <= pids
    text = httpx.get(f"{two.url}/metrics").text
    accepted = delivered = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sluice_events_accepted_total" and sample.labels.get("source") == "web":
                accepted += sample.value
            if sample.name == "sluice_events_delivered_total" and sample.labels.get("source") == "web":
                delivered += sample.value
    assert accepted == n  # counted in two processes, added up in one answer
    assert delivered >= n  # counted by the delivery process


@pytest.mark.parametrize("role", ["ingest", "deliver", "log"])
def test_a_child_that_dies_is_replaced(two: Sluice, role: str) -> None:
    key = two.create_source("http", "web")["write_key"]
    assert track(key, two.url, "before") == 200
    poll(two, "select id from web.tracks", 1)
    before = two.processes(role)
    victim = before[0]
    others = [p for p in two.processes() if p != victim]
    os.kill(victim, signal.SIGKILL)
    two.wait_for_restart(role, victim, len(before))
    assert all(alive(p) for p in others), "only the dead child was replaced"
    # Everything works again: ingest, the log, loading, admin SQL.
    deadline = time.monotonic() + 30
    status = 0
    while time.monotonic() < deadline and status != 200:
        try:
            status = track(key, two.url, "after")
        except httpx.HTTPError:
            status = 0
        time.sleep(0.1)
    assert status == 200
    assert {r["id"] for r in poll(two, "select id from web.tracks", 2)} == {"before", "after"}
    assert httpx.get(f"{two.url}/health").json()["status"] == "ok"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_process_cleanly(two: Sluice, sig: int) -> None:
    assert two.proc is not None
    supervisor = two.proc
    children = two.processes()
    supervisor.send_signal(sig)
    assert supervisor.wait(timeout=60) == 0
    wait_group_gone(supervisor.pid)
    assert not any(alive(p) for p in children)
    two.proc = None
    two._log.close()
    out = two.log_path.read_text()
    assert "Traceback" not in out and "exited with status" not in out, out
    assert not (two.data_dir / "server.json").exists()


def test_the_supervisor_killed_takes_its_children(tmp_path: Path) -> None:
    server = Sluice(tmp_path / "data")
    server.start()
    try:
        assert server.proc is not None
        children = server.processes()
        server.proc.kill()  # the supervisor alone, by SIGKILL
        server.proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in children):
            time.sleep(0.05)
        assert not any(alive(p) for p in children), "a child outlived its supervisor (holding the ports)"
        server.proc = None
        server._log.close()
        server.start()  # the ports and the data dir are free again at once
    finally:
        server.stop()


def test_workers_flag_is_checked(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sluice.cli", "--data-dir", str(tmp_path / "d"), "serve", "--workers", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 1 and "--workers must be at least 1" in out.stderr
