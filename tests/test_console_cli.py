"""`sluice console`: a one-time sign-in link to the running server's console, and refusals kept for live events."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from conftest import Sluice
from inprocess import ingest

from sluice.ingest.refusals import RefusalRing, read_refusals


def test_console_link_signs_in_once(sluice: Sluice) -> None:
    sluice.create_source("drip", "drip", "Drip")
    out = sluice.cli("console").stdout
    url = next(line for line in out.splitlines() if line.startswith("http"))
    assert url.startswith(f"{sluice.admin_url}/sign-in/link/")
    with httpx.Client() as browser:
        assert "Drip" not in browser.get(f"{sluice.admin_url}/sources", follow_redirects=True).text
        r = browser.get(url, follow_redirects=True)
        assert r.status_code == 200 and ">Drip</a>" in r.text  # followed to the Sources page, signed in
    with httpx.Client() as other:
        assert other.get(url).status_code == 401  # a link works once


def test_console_link_needs_a_running_server(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "sluice.cli", "--data-dir", str(tmp_path / "d"), "console"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no sluice server is running" in r.stderr


def test_ingest_keeps_refusals_with_their_source(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    ring = RefusalRing(tmp_path / "run")
    with ingest(tmp_path / "data") as app:
        app.client.app.state.services.refused = ring.record  # type: ignore[attr-defined]
        assert app.client.post("/v1/track", json={"writeKey": "nope", "event": "E", "userId": "u"}).status_code == 401
        r = app.client.post("/v1/batch", json={"writeKey": app.web.write_key, "batch": [
            {"type": "track", "event": "Ok", "userId": "u"}, {"type": "track", "userId": "u"}]})
        assert r.status_code == 200
        r = app.client.post(f"/webhooks/drip/{app.drip.webhook_token}", json={"event": "subscriber.opened_email"})
        assert r.status_code == 400
    kept = [(e["endpoint"], e["status"], e["code"], e["source_id"]) for e in read_refusals(tmp_path / "run")]
    assert kept == [("track", 401, "unknown_write_key", None), ("batch", 200, "missing_event", app.web.id),
                    ("drip_webhook", 400, "bad_drip_webhook", app.drip.id)]


def test_sources_list_counts_loaded_events(sluice: Sluice) -> None:
    """`sources list` shows what the console's Sources page shows: messages loaded (one per message, however
    many tables it feeds) and the newest received_at."""
    import orjson
    from conftest import poll

    key = sluice.create_source("http", "web")["write_key"]
    batch = [{"type": "track", "event": "Signed Up", "userId": f"u{i}"} for i in range(3)]
    batch.append({"type": "identify", "userId": "u0", "traits": {"plan": "pro"}})
    assert httpx.post(f"{sluice.url}/v1/batch", json={"writeKey": key, "batch": batch}).status_code == 200
    poll(sluice, "select * from web.identifies", 1)
    poll(sluice, "select * from web.tracks", 3)
    listed = orjson.loads(sluice.cli("sources", "list", "--json").stdout)
    assert listed[0]["events"] == 4 and listed[0]["last_event"] is not None
    assert " 4 " in sluice.cli("sources", "list").stdout
