"""Backpressure on what the machine can hold: with the data dir's disk below its free-space setting, or the
log above its size setting, `/v1/*` answers 503 and Drip's webhook 429, both with Retry-After, nothing is
stored; when space comes back (a file removed, the log pruned) ingest accepts again by itself."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Sluice, poll
from drip_payloads import webhook
from inprocess import ingest

from sluice.ingest.pressure import DiskPressure
from sluice.log.sqlite import SqliteLog
from sluice.settings import Settings

MB = 1024 * 1024


def track(mid: str, **extra: Any) -> dict[str, Any]:
    return {"userId": "u", "event": "Pressure", "messageId": mid, **extra}


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_the_answers_while_the_disk_is_short(tmp_path: Path) -> None:
    # A threshold above the free space there is: every ingest path refuses, and says why.
    settings = Settings(data_dir=tmp_path, min_free_disk_bytes=free_bytes(tmp_path) + 1024 * 1024 * MB,
                        retry_after_seconds=7)
    with ingest(tmp_path, settings) as app:
        app.client.app.state.services.pressure = DiskPressure(tmp_path, app.log, settings).check
        key = app.web.write_key
        for path, body in (("/v1/track", track("t1")), ("/v1/batch", {"batch": [{"type": "track", **track("b1")}]})):
            r = app.client.post(path, json=body, auth=(key, ""))
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "7"
            assert "SLUICE_MIN_FREE_DISK_BYTES" in r.json()["error"] and r.json()["success"] is False
        r = app.client.post(f"/webhooks/drip/{app.drip.webhook_token}", json=webhook("subscriber.opened_email"))
        assert r.status_code == 429 and r.headers["retry-after"] == "7"  # Drip retries rate limits for days
        assert app.client.get("/health").status_code == 200
        assert app.stored_ids(app.web) == [] and app.stored_ids(app.drip) == []


def test_limits_are_checked_every_so_often_and_zero_turns_them_off(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.db", 3600)
    try:
        off = DiskPressure(tmp_path, log, Settings(data_dir=tmp_path, min_free_disk_bytes=0, max_log_bytes=0))
        assert off.check() is None
        small = Settings(data_dir=tmp_path, min_free_disk_bytes=0, max_log_bytes=1, pressure_check_seconds=3600)
        full = DiskPressure(tmp_path, log, small)
        reason = full.check()
        assert reason is not None and "SLUICE_MAX_LOG_BYTES" in reason
        full.max_log = 10**12  # not looked at again until pressure_check_seconds have passed
        assert full.check() == reason
        full._next_ns = 0
        assert full.check() is None
    finally:
        log.close()


@contextlib.contextmanager
def small_disk(path: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of its own (root only), so that a full disk is real and nothing else's space is used."""
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def wait_status(url: str, key: str, want: int, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        n += 1
        r = httpx.post(f"{url}/v1/track", json=track(f"wait-{want}-{n}-{time.monotonic_ns()}"), auth=(key, ""),
                       timeout=30)
        if r.status_code == want or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_a_full_disk_refuses_then_recovers_by_itself(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 96) as disk:
        s = Sluice(disk / "data", env={"SLUICE_MIN_FREE_DISK_BYTES": str(32 * MB),
                                       "SLUICE_PRESSURE_CHECK_SECONDS": "0.1", "SLUICE_RETRY_AFTER_SECONDS": "5"})
        s.start()
        try:
            key = s.create_source("http", "web")["write_key"]
            assert httpx.post(f"{s.url}/v1/track", json=track("before"), auth=(key, "")).status_code == 200
            filler = disk / "filler"
            with open(filler, "wb") as f:  # leave 16 MB: below the 32 MB sluice keeps free
                f.write(b"\0" * (free_bytes(disk) - 16 * MB))
            r = wait_status(s.url, key, 503)
            assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
            assert "SLUICE_MIN_FREE_DISK_BYTES" in r.json()["error"]
            filler.unlink()
            assert wait_status(s.url, key, 200).status_code == 200  # no restart, no operator
            assert httpx.post(f"{s.url}/v1/track", json=track("after"), auth=(key, "")).status_code == 200
            ids = {row["id"] for row in poll(s, "select id from web.tracks where id in ('before', 'after')", 2)}
            assert ids == {"before", "after"}
        finally:
            s.stop()


def test_a_log_over_its_limit_refuses_until_it_is_pruned(tmp_path: Path) -> None:
    # Events of ~4 KB: a few hundred KB of log is over the limit; once loaded and pruned it is under again.
    s = Sluice(tmp_path / "data", env={
        "SLUICE_MAX_LOG_BYTES": str(400 * 1024), "SLUICE_PRESSURE_CHECK_SECONDS": "0.1",
        "SLUICE_LOG_RETENTION_SECONDS": "0", "SLUICE_PRUNE_INTERVAL_SECONDS": "3",
        "SLUICE_LOAD_LINGER_SECONDS": "0.05",
    })
    s.start()
    try:
        key = s.create_source("http", "web")["write_key"]
        big = {"blob": "x" * 4000}
        refused = None
        acked = 0
        for n in range(20):  # batches of ~450 KB, faster than the log is pruned (every 3 s)
            batch = [{"type": "track", **track(f"big-{n}-{i}", properties=big)} for i in range(110)]
            r = httpx.post(f"{s.url}/v1/batch", json={"batch": batch}, auth=(key, ""))
            if r.status_code != 200:
                refused = r
                break
            acked += len(batch)
            time.sleep(0.2)  # > SLUICE_PRESSURE_CHECK_SECONDS: the next request sees the log's new size
        assert refused is not None and refused.status_code == 503, "the log never reached its limit"
        assert "SLUICE_MAX_LOG_BYTES" in refused.json()["error"] and refused.headers["retry-after"] == "30"
        # The loader loads what was acknowledged, the log is pruned, and ingest accepts again.
        assert wait_status(s.url, key, 200, timeout=60).status_code == 200
        deadline = time.monotonic() + 30
        while poll(s, "select count(*) as n from web.tracks where id like 'big-%'", 1)[0]["n"] < acked:
            assert time.monotonic() < deadline, "acknowledged events were not loaded"
            time.sleep(0.1)
    finally:
        s.stop()
