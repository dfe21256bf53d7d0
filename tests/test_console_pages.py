"""The console's pages in-process over real files: the seed's setup flow, schema, SQL, destinations with dead
letters, re-drive and replay, and the refusal ring the live view reads."""

from __future__ import annotations

import html
import re
from pathlib import Path

import orjson
import pytest
from console_env import ConsoleEnv, console_env

from sluice.console.live import as_loaded
from sluice.destinations.base import Failure
from sluice.ingest.refusals import SLOT, SLOTS, RefusalRing, read_refusals
from sluice.log.base import Entry, Record


@pytest.fixture
def env(tmp_path: Path):
    with console_env(tmp_path / "data") as e:
        e.csrf_token = e.sign_in()  # type: ignore[attr-defined]
        yield e


def _value(page: str, id_: str) -> str:
    found = re.search(rf'id="{id_}" value="([^"]*)"', page)
    assert found, f"no #{id_} in the page"
    return html.unescape(found.group(1))


def test_create_a_drip_source_as_the_seed_does(env: ConsoleEnv) -> None:
    csrf = env.csrf_token  # type: ignore[attr-defined]
    r = env.client.post("/sources", data={"type": "drip", "name": "Drip", "schema": "drip", "csrf": csrf})
    assert r.status_code == 200 and "Created Drip" in r.text
    source = env.catalog.get_source("drip")
    assert _value(r.text, "write-key") == source.write_key
    assert _value(r.text, "webhook-url") == f"http://127.0.0.1:8088/webhooks/drip/{source.webhook_token}"
    assert "Settings &gt; Webhooks" in r.text and 'data-copy="webhook-url"' in r.text
    # A bad schema name or a taken one: the form again with the reason, nothing created.
    r = env.client.post("/sources", data={"type": "drip", "name": "Drip 2", "schema": "Bad Name!", "csrf": csrf})
    assert r.status_code == 400 and 'class="error"' in r.text
    r = env.client.post("/sources", data={"type": "drip", "name": "Again", "schema": "drip", "csrf": csrf})
    assert r.status_code == 400
    assert [s.schema for s in env.catalog.list_sources()] == ["drip"]
    listing = env.client.get("/sources").text
    assert ">Drip</a>" in listing and "<code>drip</code>" in listing


def test_rotate_and_delete_with_confirmation(env: ConsoleEnv) -> None:
    csrf = env.csrf_token  # type: ignore[attr-defined]
    source = env.catalog.create_source("http", "Web", "web")
    r = env.client.post(f"/sources/{source.id}/rotate-key", data={"csrf": csrf})
    new_key = env.catalog.get_source("web").write_key
    assert new_key != source.write_key and _value(r.text, "write-key") == new_key
    r = env.client.post(f"/sources/{source.id}/delete", data={"csrf": csrf, "confirm": "nope"})
    assert r.status_code == 400 and "nothing was deleted" in r.text
    assert env.catalog.list_sources()
    r = env.client.post(f"/sources/{source.id}/delete", data={"csrf": csrf, "confirm": "web"})
    assert r.status_code == 200 and "Deleted Web" in r.text
    assert env.catalog.list_sources() == []


def test_event_counts_schema_and_sql(env: ConsoleEnv) -> None:
    source = env.catalog.create_source("http", "Web", "web")
    con = env.warehouse._db.cursor()
    con.execute("CREATE SCHEMA web")
    con.execute("CREATE TABLE web.tracks (id VARCHAR, received_at TIMESTAMPTZ, loaded_at TIMESTAMPTZ)")
    con.execute("INSERT INTO web.tracks VALUES ('a', '2026-11-01 10:00:00+00', now()),"
                " ('b', '2026-11-02 11:30:00+00', now())")
    con.execute("CREATE TABLE web.identifies (id VARCHAR, received_at TIMESTAMPTZ, loaded_at TIMESTAMPTZ)")
    con.execute("INSERT INTO web.identifies VALUES ('c', '2026-11-01 09:00:00+00', now())")
    con.execute("CREATE TABLE web.discards (table_name VARCHAR, reason VARCHAR, loaded_at TIMESTAMPTZ)")
    con.execute("INSERT INTO web.discards VALUES ('tracks', 'too long', now())")
    listing = env.client.get("/sources").text
    row = re.search(r">Web</a>.*?</tr>", listing, re.S)
    assert row and '<td class="num">3</td>' in row.group(0) and "2026-11-02 11:30:00+00:00" in row.group(0)
    page = env.client.get(f"/schema?source={source.id}").text
    assert "<code>tracks</code>" in page and "2 rows" in page and "1 discarded values" in page
    assert "<code>received_at</code></td><td>TIMESTAMP WITH TIME ZONE" in page
    csrf = env.csrf_token  # type: ignore[attr-defined]
    r = env.client.post("/sql", data={"csrf": csrf, "sql": "select id from web.tracks order by id"})
    assert r.status_code == 200 and "<td>a</td>" in r.text and "<td>b</td>" in r.text and "2 rows" in r.text
    r = env.client.post("/sql", data={"csrf": csrf, "sql": "delete from web.tracks"})
    assert r.status_code == 400 and 'class="error"' in r.text
    assert env.warehouse.query("select count(*) from web.tracks", _limits())["rows"] == [[2]]


def _limits():
    from sluice.warehouse.readonly import QueryLimits
    return QueryLimits(10, 100)


def test_destinations_dead_letters_redrive_and_replay(env: ConsoleEnv) -> None:
    csrf = env.csrf_token  # type: ignore[attr-defined]
    source = env.catalog.create_source("http", "Web", "web")
    r = env.client.post("/destinations", data={"csrf": csrf, "source": str(source.id), "type": "webhook",
                                                "name": "hook", "url": "not a url", "secret": "s3cret-value"})
    assert r.status_code == 400 and 'class="error"' in r.text and "s3cret-value" not in r.text
    r = env.client.post("/destinations", data={"csrf": csrf, "source": str(source.id), "type": "webhook",
                                                "name": "hook", "url": "http://127.0.0.1:9/in",
                                                "headers": "X-Team=growth", "secret": "s3cret-value"})
    assert r.status_code == 200 and "Added hook" in r.text and "s3cret-value" not in r.text
    dest = env.catalog.get_destination("hook")
    assert dest.config["headers"] == {"X-Team": "growth"}
    # An event the destination refused for good.
    body = orjson.dumps({"type": "track", "event": "Email Opened", "messageId": "m-1"})
    failure = Failure(Entry(1, None, 1_764_000_000_000, body), "HTTP 422: bad")
    env.state.advance(dest.consumer, source.id, None, [failure])
    page = env.client.get(f"/destinations/{dest.consumer}").text
    assert "HTTP 422: bad" in page and "m-1" in page
    letter_id = env.state.dead_letters(dest.consumer)[0]["id"]
    r = env.client.post(f"/destinations/{dest.consumer}/retry", data={"csrf": csrf, "id": str(letter_id)})
    assert "1 dead letter will be sent again" in r.text
    assert env.state.dead_letters(dest.consumer)[0]["retry_requested"]
    # Replay by time: nothing in the log yet, then two events.
    r = env.client.post(f"/destinations/{dest.consumer}/replay", data={"csrf": csrf, "since": "2h"})
    assert "No events of web in that range" in r.text
    _append(env, source.id, ["r-1", "r-2"])
    r = env.client.post(f"/destinations/{dest.consumer}/replay", data={"csrf": csrf, "since": "2h"})
    assert "Replaying 2 events of web to hook" in r.text
    r = env.client.post(f"/destinations/{dest.consumer}/replay", data={"csrf": csrf, "since": "yesterday-ish"})
    assert "neither ISO-8601 nor a duration" in html.unescape(r.text)
    # Disable, then remove (with confirmation).
    env.client.post(f"/destinations/{dest.consumer}/disable", data={"csrf": csrf})
    assert not env.catalog.get_destination("hook").enabled
    r = env.client.post(f"/destinations/{dest.consumer}/remove", data={"csrf": csrf})
    assert "nothing was removed" in r.text
    env.client.post(f"/destinations/{dest.consumer}/remove", data={"csrf": csrf, "confirm": "yes"})
    assert env.catalog.list_destinations() == []


def _append(env: ConsoleEnv, source_id: int, ids: list[str]) -> None:
    import asyncio
    import time

    now = int(time.time() * 1000)
    records = [Record(source_id, i, now, b"", orjson.dumps({"type": "track", "event": "Signed Up", "messageId": i}))
               for i in ids]
    asyncio.run(env.log.append(records))


def test_as_loaded_shows_the_rows_the_loader_writes() -> None:
    message = {"type": "track", "event": "Email Opened", "messageId": "m1", "userId": "u1",
               "properties": {"campaign": "Fall sale", "opens": 2}, "context": {"ip": "203.0.113.9"},
               "timestamp": "2026-11-27T00:00:00Z", "receivedAt": "2026-11-27T00:00:01Z"}
    rows = as_loaded(message, 255)
    assert set(rows) == {"tracks", "email_opened"}
    assert rows["tracks"]["id"] == "m1" and rows["tracks"]["event"] == "email_opened"
    assert rows["tracks"]["context_ip"] == "203.0.113.9"
    assert rows["email_opened"]["campaign"] == "Fall sale" and rows["email_opened"]["opens"] == 2


def test_refusal_ring_keeps_the_last_refusals(tmp_path: Path) -> None:
    ring = RefusalRing(tmp_path, "a")
    for i in range(SLOTS + 5):
        ring.record("track", 401, "unknown_write_key", f"unknown write key {i}", None)
    ring.record("drip_webhook", 400, "bad_drip_webhook", "not a Drip webhook: é" * 200, 7)
    seen: dict[str, int] = {}
    kept = read_refusals(tmp_path, seen)
    assert len(kept) == SLOTS  # the oldest six were overwritten
    assert kept[-1]["source_id"] == 7 and kept[-1]["reason"].startswith("not a Drip webhook")
    assert kept[0]["reason"] == "unknown write key 6"
    assert read_refusals(tmp_path, seen) == []  # nothing new
    ring.record("track", 400, "bad_type", "type must be a string", 3)
    assert [r["reason"] for r in read_refusals(tmp_path, seen)] == ["type must be a string"]
    assert (tmp_path / "refusals-a.ring").stat().st_size == SLOTS * SLOT


def test_live_stream_ends_when_the_session_does(env: ConsoleEnv) -> None:
    """The stream sends the source's new events with their log seq as id, and stops once signed out."""
    import threading

    source = env.catalog.create_source("http", "Web", "web")
    session = next(iter(env.console.context.store._sessions.values()))
    threading.Timer(1.0, lambda: _append(env, source.id, ["live-1"])).start()
    threading.Timer(2.5, lambda: env.console.context.store.sign_out(session.id)).start()
    with env.client.stream("GET", f"/live/stream?source={source.id}") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())  # ends by itself when the session does
    assert "id: 1\n" in body and '"message_id":"live-1"' in body and '"tracks"' in body


def test_connect_and_disconnect_drip(tmp_path: Path) -> None:
    from fake_drip import FakeDrip

    with FakeDrip() as fake, console_env(tmp_path / "data", drip_api_url=fake.url,
                                         public_url="https://sluice.example.com") as env:
        csrf = env.sign_in()
        source = env.catalog.create_source("drip", "Drip", "drip")
        page = env.client.get(f"/sources/{source.id}").text
        assert _value(page, "webhook-url") == f"https://sluice.example.com/webhooks/drip/{source.webhook_token}"
        r = env.client.post(f"/sources/{source.id}/drip/connect",
                            data={"csrf": csrf, "account_id": fake.account_id, "api_token": "wrong-token"})
        assert "Drip:" in r.text and not fake.webhooks  # Drip's refusal, said plainly
        r = env.client.post(f"/sources/{source.id}/drip/connect",
                            data={"csrf": csrf, "account_id": fake.account_id, "api_token": fake.api_token})
        [hook] = fake.webhooks.values()
        assert hook["post_url"] == f"https://sluice.example.com/webhooks/drip/{source.webhook_token}"
        assert f"Connected to Drip account <strong>{fake.account_id}</strong>" in r.text
        assert fake.api_token not in r.text
        r = env.client.post(f"/sources/{source.id}/drip/disconnect", data={"csrf": csrf})
        assert "Disconnected" in r.text and not fake.webhooks
