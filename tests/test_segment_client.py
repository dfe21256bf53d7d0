"""Segment's own client libraries pointed at sluice, as a user would: the official Python client, and the
Node client's wire format (HTTP Basic auth) sent with httpx."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import segment.analytics as analytics
from conftest import Sluice, poll, try_query
from segment.analytics.request import APIError
from segment.analytics.version import VERSION


def types(sluice: Sluice, table: str) -> dict[str, str]:
    """column -> type, from `describe`."""
    rows = try_query(sluice, f"describe web.{table}")
    assert rows is not None
    return {r["column_name"]: r["column_type"] for r in rows}


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
def client(sluice: Sluice, web: dict[str, Any]) -> Iterator[analytics.Client]:
    c = analytics.Client(web["write_key"], host=sluice.url, sync_mode=True, max_retries=1, timeout=10)
    yield c


def test_done_when_email_opened_lands_in_web_schema(sluice: Sluice) -> None:
    """The issue's "done when": a source created with the CLI, one track from the Python client."""
    out = sluice.cli("sources", "create", "http", "--name", "Web", "--schema", "web", "--json")
    source = orjson.loads(out.stdout)
    assert {"id", "type", "name", "schema", "write_key", "webhook_url"} <= set(source)
    assert (source["type"], source["name"], source["schema"]) == ("http", "Web", "web")
    client = analytics.Client(source["write_key"], host=sluice.url, sync_mode=True, max_retries=1)
    ok, _msg = client.track("u1", "Email Opened", {"email_id": "e1"})
    assert ok
    sql = "select user_id, event, event_text, email_id from web.email_opened"
    rows = poll(sluice, sql, 1, timeout=2.0)
    assert [tuple(r.values()) for r in rows] == [("u1", "email_opened", "Email Opened", "e1")]
    # The same through the CLI a user would run.
    assert sluice.query(sql) == [{"user_id": "u1", "event": "email_opened", "event_text": "Email Opened",
                                  "email_id": "e1"}]
    tracks = sluice.query("select user_id, event, event_text from web.tracks")
    assert tracks == [{"user_id": "u1", "event": "email_opened", "event_text": "Email Opened"}]


def test_every_call_type_column_by_column(sluice: Sluice, client: analytics.Client) -> None:
    t0 = datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)
    since = datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    before = datetime.now(UTC)
    client.identify("u1", {"email": "jane@x.example", "plan": "pro", "logins": 3, "score": 1.5, "vip": True,
                           "since": since}, message_id="m-identify")
    client.track("u1", "Email Opened", {"email_id": "e1", "opens": 2, "ratio": 0.5, "first": True, "at": since,
                                        "address": {"city": "Paris"}, "tags": ["a", "b"]},
                 timestamp=t0, message_id="m-track")
    client.page("u1", "Docs", "Install", {"path": "/docs/install", "load_ms": 120}, message_id="m-page")
    client.screen(None, "Onboarding", "Welcome", {"step": 1}, anonymous_id="anon-1", message_id="m-screen")
    client.group("u1", "g1", {"name": "Acme", "employees": 50}, message_id="m-group")
    client.alias("anon-1", "u1", message_id="m-alias")
    after = datetime.now(UTC)

    for table in ("tracks", "email_opened", "identifies", "users", "pages", "screens", "groups", "aliases"):
        poll(sluice, f"select * from web.{table}", 1)

    def one(table: str) -> dict[str, Any]:
        rows = try_query(sluice, f"select * from web.{table}")
        assert rows is not None and len(rows) == 1, (table, rows)
        return rows[0]

    standard = ["id", "anonymous_id", "user_id", "received_at", "sent_at", "timestamp", "original_timestamp"]
    for table, mid in [("tracks", "m-track"), ("email_opened", "m-track"), ("identifies", "m-identify"),
                       ("pages", "m-page"), ("screens", "m-screen"), ("groups", "m-group"), ("aliases", "m-alias")]:
        row = one(table)
        assert row["id"] == mid, table
        for col in standard:
            assert col in row, (table, col)
        received = ts(row["received_at"])
        assert before - timedelta(milliseconds=2) <= received <= after + timedelta(milliseconds=2), table
        # The client stamps sentAt and timestamp with its own clock, which is this machine's.
        assert row["sent_at"] is not None and row["original_timestamp"] is not None, table
        assert row["loaded_at"] is not None and ts(row["loaded_at"]) >= received, table
        assert row["context_library_name"] == "analytics-python", table
        assert row["context_library_version"] == VERSION, table
        assert "integrations" not in row and "type" not in row and "write_key" not in row, table
        coltypes = types(sluice, table)
        for col in ("received_at", "sent_at", "timestamp", "original_timestamp", "loaded_at"):
            assert coltypes[col] == "TIMESTAMP WITH TIME ZONE", (table, col)
        for col in ("id", "user_id", "anonymous_id"):
            assert coltypes[col] == "VARCHAR", (table, col)

    track = one("email_opened")
    assert (track["user_id"], track["anonymous_id"]) == ("u1", None)
    assert (track["event"], track["event_text"]) == ("email_opened", "Email Opened")
    assert ts(track["original_timestamp"]) == t0
    assert abs(ts(track["timestamp"]) - t0) < timedelta(seconds=2)  # skew correction with a correct clock
    assert (track["email_id"], track["opens"], track["ratio"], track["first"]) == ("e1", 2, 0.5, True)
    assert ts(track["_at"]) == since  # "at" is a DuckDB keyword: prefixed
    assert track["address_city"] == "Paris"
    assert orjson.loads(track["tags"]) == ["a", "b"]
    expected_types = {
        "email_id": "VARCHAR", "opens": "BIGINT", "ratio": "DOUBLE", "first": "BOOLEAN",
        "_at": "TIMESTAMP WITH TIME ZONE", "address_city": "VARCHAR", "tags": "VARCHAR",
    }
    coltypes = types(sluice, "email_opened")
    assert {k: coltypes[k] for k in expected_types} == expected_types
    tracks = one("tracks")
    assert (tracks["event"], tracks["event_text"]) == ("email_opened", "Email Opened")
    assert "email_id" not in tracks

    identify = one("identifies")
    expected_traits = {"email": "jane@x.example", "plan": "pro", "logins": 3, "score": 1.5, "vip": True}
    assert {k: identify[k] for k in expected_traits} == expected_traits
    assert ts(identify["since"]) == since
    assert {k: types(sluice, "identifies")[k] for k in ("logins", "score", "vip", "since")} == {
        "logins": "BIGINT", "score": "DOUBLE", "vip": "BOOLEAN", "since": "TIMESTAMP WITH TIME ZONE"}
    users = one("users")
    assert users["id"] == "u1"
    assert {k: users[k] for k in expected_traits} == expected_traits
    assert "anonymous_id" not in users

    page = one("pages")
    assert (page["user_id"], page["name"], page["category"]) == ("u1", "Install", "Docs")
    assert (page["path"], page["load_ms"]) == ("/docs/install", 120)
    screen = one("screens")
    assert (screen["user_id"], screen["anonymous_id"], screen["name"], screen["category"]) == (
        None, "anon-1", "Welcome", "Onboarding")
    assert screen["step"] == 1 and types(sluice, "screens")["step"] == "BIGINT"
    group = one("groups")
    assert (group["user_id"], group["group_id"], group["name"], group["employees"]) == ("u1", "g1", "Acme", 50)
    alias = one("aliases")
    assert (alias["user_id"], alias["previous_id"]) == ("u1", "anon-1")


def test_queued_client_with_gzip_flush(sluice: Sluice, web: dict[str, Any]) -> None:
    errors: list[Any] = []
    client = analytics.Client(
        web["write_key"], host=sluice.url, gzip=True, upload_size=40, max_retries=1,
        on_error=lambda e, batch: errors.append(e),
    )
    for i in range(150):
        client.track(f"user-{i % 7}", "Email Delivered", {"n": i}, message_id=f"q-{i}")
    client.flush()
    client.join()
    assert errors == []
    rows = poll(sluice, "select n from web.email_delivered order by n", 150)
    assert [r["n"] for r in rows] == list(range(150))
    assert poll(sluice, "select count(*) as c from web.tracks", 1) == [{"c": 150}]


def test_client_with_wrong_write_key_gets_401(sluice: Sluice, web: dict[str, Any]) -> None:
    client = analytics.Client("not-a-key", host=sluice.url, sync_mode=True, max_retries=1)
    with pytest.raises(APIError) as e:
        client.track("u1", "Nope", {})
    assert e.value.status == 401
    # Nothing was stored; a good key still works.
    good = analytics.Client(web["write_key"], host=sluice.url, sync_mode=True, max_retries=1)
    good.track("u1", "Yes", {})
    poll(sluice, "select * from web.yes", 1)
    assert try_query(sluice, "select * from web.nope") is None


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_node_style_basic_auth_track_and_batch(sluice: Sluice, web: dict[str, Any]) -> None:
    """@segment/analytics-node: Basic auth (key + ':'), no writeKey in the body."""
    library = {"name": "@segment/analytics-node", "version": "2.1.0"}
    now = datetime.now(UTC)
    single = {
        "type": "track",
        "userId": "u-node",
        "event": "Email Link Clicked",
        "properties": {"url": "https://x.example", "position": 3},
        "context": {"library": library},
        "messageId": "node-1",
        "timestamp": now.isoformat(),
        "sentAt": now.isoformat(),
        "_metadata": {"nodeVersion": "20.11.0", "jsRuntime": "node"},
    }
    r = httpx.post(f"{sluice.url}/v1/track", content=orjson.dumps(single), headers={
        **basic(web["write_key"]), "Content-Type": "application/json", "User-Agent": "analytics-node-next/latest"})
    assert r.status_code == 200 and r.json() == {"success": True}
    batch = {"batch": [{**single, "messageId": "node-2"}, {**single, "type": "identify", "messageId": "node-3",
                                                            "traits": {"email": "n@x.example"}}],
             "sentAt": now.isoformat()}
    r = httpx.post(f"{sluice.url}/v1/batch", content=orjson.dumps(batch), headers=basic(web["write_key"]))
    assert r.status_code == 200 and r.json()["success"] is True
    rows = poll(sluice, "select id, user_id, event_text, url, position, context_library_name"
                        " from web.email_link_clicked order by id", 2)
    assert rows == [
        {"id": m, "user_id": "u-node", "event_text": "Email Link Clicked", "url": "https://x.example", "position": 3,
         "context_library_name": "@segment/analytics-node"}
        for m in ("node-1", "node-2")
    ]
    assert poll(sluice, "select id, email from web.identifies", 1) == [{"id": "node-3", "email": "n@x.example"}]
    # Without the key: 401.
    r = httpx.post(f"{sluice.url}/v1/track", content=orjson.dumps({**single, "messageId": "node-4"}))
    assert r.status_code == 401
