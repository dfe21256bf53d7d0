"""Delivery to real destinations: a webhook endpoint, PostgreSQL, and the fake Drip API."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from conftest import Sluice, free_port
from fake_drip import FakeDrip
from receiver import Receiver

from sluice.destinations.webhook import SIGNATURE_HEADER, sign

FAST = {
    "SLUICE_RETRY_INITIAL_SECONDS": "0.1",
    "SLUICE_RETRY_MAX_SECONDS": "0.5",
    "SLUICE_LOAD_LINGER_SECONDS": "0.05",
}


@pytest.fixture
def fast(tmp_path: Path) -> Iterator[Sluice]:
    server = Sluice(tmp_path / "data", env=dict(FAST))
    server.start()
    yield server
    server.stop()




def send(server: Sluice, key: str, messages: list[dict[str, Any]]) -> None:
    for i in range(0, len(messages), 100):
        r = httpx.post(f"{server.url}/v1/batch", json={"batch": messages[i : i + 100]}, auth=(key, ""))
        assert r.status_code == 200, r.text
        assert "rejected" not in r.json()


def tracks(n: int, users: int = 3, **props: Any) -> list[dict[str, Any]]:
    return [
        {"type": "track", "event": "Email Opened", "userId": f"u{i % users}", "messageId": f"m-{i}",
         "properties": {"n": i, **props}}
        for i in range(n)
    ]


def wait(predicate: Any, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def status(server: Sluice, destination: str) -> dict[str, Any]:
    rows = orjson.loads(server.cli("deliveries", "status", "--json").stdout)
    return next(r for r in rows if r["destination"] == destination)


def test_webhook_down_then_back_gets_everything_in_order_while_warehouse_keeps_loading(fast: Sluice) -> None:
    key = fast.create_source("http", "web")["write_key"]
    receiver = Receiver(free_port())  # not started: the endpoint is down
    fast.cli("destinations", "add", "web", "webhook", "--name", "hook", "--url", receiver.url,
             "--batch-size", "7", "--secret", "s3cret")
    send(fast, key, tracks(60))
    # The warehouse is not held up by the failing webhook.
    fast.wait_for_rows("select id from web.email_opened", 60)
    wait(lambda: status(fast, "hook")["last_error"] is not None, what="the webhook failure to show")
    down = status(fast, "hook")
    assert down["lag"] == 60 and "ConnectError" in down["last_error"]

    receiver.start()
    try:
        wait(lambda: len(receiver.received) >= 60, what="the webhook to catch up")
        time.sleep(0.5)  # nothing more should arrive
        ids = [m["messageId"] for m in receiver.received]
        assert sorted(ids) == sorted(f"m-{i}" for i in range(60))  # every event, once
        for user in ("u0", "u1", "u2"):  # in order per user
            ns = [m["properties"]["n"] for m in receiver.received if m["userId"] == user]
            assert ns == sorted(ns)
        _, headers, body = receiver.requests[-1]
        assert headers[SIGNATURE_HEADER] == sign("s3cret", body)
        assert len(orjson.loads(body)["batch"]) <= 7
        wait(lambda: status(fast, "hook")["lag"] == 0, what="lag to reach 0")
    finally:
        receiver.stop()


def test_permanent_failure_is_dead_lettered_alone_and_can_be_redriven(fast: Sluice) -> None:
    key = fast.create_source("http", "web")["write_key"]
    receiver = Receiver(free_port())
    receiver.respond = lambda m: 422 if m["properties"].get("poison") else 200
    receiver.start()
    try:
        fast.cli("destinations", "add", "web", "webhook", "--name", "hook", "--url", receiver.url,
                 "--batch-size", "10")
        messages = tracks(30)
        messages[13]["properties"]["poison"] = True
        send(fast, key, messages)
        wait(lambda: len(receiver.received) >= 29, what="the good events")
        wait(lambda: status(fast, "hook")["dead_letters"] == 1, what="the dead letter")
        assert "m-13" not in {m["messageId"] for m in receiver.received}
        letters = orjson.loads(fast.cli("deliveries", "dead-letters", "hook", "--json").stdout)
        assert [d["message_id"] for d in letters] == ["m-13"]
        assert "422" in letters[0]["reason"]

        receiver.respond = lambda m: 200  # the receiver was fixed
        fast.cli("deliveries", "retry", "hook", "--all")
        wait(lambda: "m-13" in {m["messageId"] for m in receiver.received}, what="the re-drive")
        wait(lambda: status(fast, "hook")["dead_letters"] == 0, what="dead letters to clear")
        assert len(receiver.received) == 30
        receiver.respond = lambda m: 422
        send(fast, key, [{"type": "track", "event": "Late", "userId": "u9", "messageId": "late"}])
        wait(lambda: status(fast, "hook")["dead_letters"] == 1, what="a new dead letter")
        fast.cli("destinations", "remove", "hook")
        with sqlite3.connect(fast.data_dir / "log.db") as db:
            assert db.execute("select count(*) from dead_letters").fetchone()[0] == 0
    finally:
        receiver.stop()


def test_retry_window_ends_in_dead_letters(tmp_path: Path) -> None:
    server = Sluice(tmp_path / "data", env={**FAST, "SLUICE_RETRY_WINDOW_SECONDS": "1"})
    server.start()
    try:
        key = server.create_source("http", "web")["write_key"]
        receiver = Receiver(free_port())
        receiver.respond = lambda m: 503
        receiver.start()
        server.cli("destinations", "add", "web", "webhook", "--name", "hook", "--url", receiver.url)
        send(server, key, tracks(5))
        wait(lambda: status(server, "hook")["dead_letters"] == 5, what="the retry window to end")
        letters = orjson.loads(server.cli("deliveries", "dead-letters", "hook", "--json").stdout)
        assert all("gave up after retrying" in d["reason"] and "503" in d["reason"] for d in letters)
        receiver.stop()
    finally:
        server.stop()


def test_integrations_object_picks_destinations(fast: Sluice) -> None:
    key = fast.create_source("http", "web")["write_key"]
    a, b = Receiver(free_port()), Receiver(free_port())
    a.start()
    b.start()
    try:
        fast.cli("destinations", "add", "web", "webhook", "--name", "a", "--url", a.url)
        fast.cli("destinations", "add", "web", "webhook", "--name", "b", "--url", b.url)
        messages = tracks(3)
        messages[0]["integrations"] = {"All": False, "a": True}
        messages[1]["integrations"] = {"b": False}
        send(fast, key, messages)
        wait(lambda: len(a.received) == 3 and len(b.received) == 1, what="routing")
        assert [m["messageId"] for m in b.received] == ["m-2"]
        fast.wait_for_rows("select id from web.email_opened", 3)  # the warehouse gets all of them
    finally:
        a.stop()
        b.stop()


def test_postgres_warehouse_loads_segment_schema_and_replay_adds_no_duplicates(fast: Sluice, pg_database: str) -> None:
    key = fast.create_source("http", "web")["write_key"]
    fast.cli("destinations", "add", "web", "postgres", "--name", "pg", "--url", pg_database)
    send(fast, key, tracks(50, email_id="e1"))
    send(fast, key, [{"type": "identify", "userId": "u1", "traits": {"email": "u1@example.com", "plan": "pro"}}])

    def pg(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(pg_database) as conn:
            return conn.execute(sql).fetchall()

    def loaded() -> bool:
        try:
            opened, users = pg("select (select count(*) from web.email_opened), (select count(*) from web.users)")[0]
            return (opened, users) == (50, 1)
        except psycopg.errors.UndefinedTable:
            return False

    wait(loaded, what="rows in PostgreSQL")
    row = pg("select user_id, event, event_text, email_id, n from web.email_opened where id = 'm-7'")
    assert row == [("u1", "email_opened", "Email Opened", "e1", 7)]
    assert pg("select count(*) from web.tracks")[0][0] == 50
    types = dict(pg("select column_name, data_type from information_schema.columns where table_schema = 'web'"
                    " and table_name = 'email_opened'"))
    assert types["n"] == "bigint" and types["received_at"] == "timestamp with time zone"

    out = fast.cli("replay", "pg", "--since", "1h").stdout
    assert "replaying 51 events" in out
    wait(lambda: status(fast, "pg")["lag"] == 0 and _replays_done(fast), what="the replay")
    assert pg("select count(*), count(distinct id) from web.email_opened") == [(50, 50)]
    assert pg("select count(*), count(distinct id) from web.tracks") == [(50, 50)]
    assert pg("select plan from web.users where id = 'u1'") == [("pro",)]


def _replays_done(server: Sluice) -> bool:
    with sqlite3.connect(server.data_dir / "log.db") as db:
        return db.execute("select count(*) from replays").fetchone()[0] == 0


def test_drip_destination_survives_429s_and_lands_every_valid_event(fast: Sluice) -> None:
    key = fast.create_source("http", "web")["write_key"]
    with FakeDrip() as drip:
        drip.set_limits(single=8, batch=1, window_seconds=1.5)
        fast.cli("destinations", "add", "web", "drip", "--name", "drip", "--account-id", drip.account_id,
                 "--api-token", drip.api_token, "--base-url", drip.url)
        messages: list[dict[str, Any]] = []
        for i in range(12):
            email = f"s{i}@example.com"
            messages.append({"type": "identify", "userId": f"u{i}", "traits": {"email": email, "plan": "pro"}})
            messages.append({"type": "track", "userId": f"u{i}", "event": "Email Opened",
                             "properties": {"email_id": "e1"}, "context": {"traits": {"email": email}}})
        messages.append({"type": "track", "userId": "nobody", "event": "Email Opened", "properties": {}})
        send(fast, key, messages)
        wait(lambda: len(drip.subscribers) == 12 and len(drip.events) == 12, timeout=60, what="Drip to get everything")
        assert any(status == 429 for _, _, status in drip.requests)
        assert sorted(e["email"] for e in drip.events) == sorted(f"s{i}@example.com" for i in range(12))
        assert drip.subscribers["s3@example.com"]["user_id"] == "u3"
        wait(lambda: status(fast, "drip")["dead_letters"] == 1, what="the no-email event to be dead-lettered")
        letters = orjson.loads(fast.cli("deliveries", "dead-letters", "drip", "--json").stdout)
        assert "email" in letters[0]["reason"].lower()


def test_destination_commands_validate_and_toggle(sluice: Sluice) -> None:
    sluice.create_source("http", "web")
    bad = sluice.cli("destinations", "add", "web", "webhook", "--name", "x", "--url", "ftp://nope", check=False)
    assert bad.returncode != 0 and "http(s)" in bad.stderr
    missing = sluice.cli("destinations", "add", "web", "drip", "--name", "d", check=False)
    assert missing.returncode != 0 and "account_id" in missing.stderr
    sluice.cli("destinations", "add", "web", "drip", "--name", "d", "--account-id", "123", "--api-token", "tok")
    shown = orjson.loads(sluice.cli("destinations", "show", "d").stdout)
    assert shown["config"]["api_token"] == "***" and shown["enabled"] is True
    sluice.cli("destinations", "disable", "d")
    listed = orjson.loads(sluice.cli("destinations", "list", "--json").stdout)
    assert [(d["name"], d["enabled"]) for d in listed] == [("d", False)]
    sluice.cli("destinations", "remove", "d")
    assert orjson.loads(sluice.cli("destinations", "list", "--json").stdout) == []
