"""The Drip destination (sluice.destinations.drip) against FakeDrip over real HTTP."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from fake_drip import FakeDrip

from sluice.catalog.models import Destination, Source
from sluice.destinations.base import TransientError
from sluice.destinations.drip import DripTarget, validate_config
from sluice.log.base import Entry

TOKEN = "drip-test-token"
ACCOUNT = "9999999"
TS = "2024-05-01T12:00:00.000Z"
SOURCE = Source(1, "http", "Web", "web", "wk", None, "2024-01-01T00:00:00Z")


@pytest.fixture
def drip() -> Iterator[FakeDrip]:
    with FakeDrip(api_token=TOKEN, account_id=ACCOUNT) as fake:
        yield fake


def target(drip: FakeDrip, **config: Any) -> DripTarget:
    conf = {"account_id": ACCOUNT, "api_token": TOKEN, "base_url": drip.url, **config}
    return DripTarget(Destination(7, 1, "drip", "Drip", conf), timeout=5.0)


def identify(email: str | None, user_id: str = "u1", **traits: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "identify", "messageId": f"m-{email}", "userId": user_id, "timestamp": TS}
    msg["traits"] = {**({"email": email} if email else {}), **traits}
    return msg


def track(event: str, email: str | None = None, context_email: str | None = None, **props: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "track", "messageId": f"m-{event}", "event": event, "timestamp": TS}
    msg["properties"] = {**({"email": email} if email else {}), **props}
    if context_email:
        msg["context"] = {"traits": {"email": context_email}}
    return msg


def entries(*messages: dict[str, Any], first_seq: int = 1) -> list[Entry]:
    return [Entry(first_seq + i, 0, 1_700_000_000_000, orjson.dumps(m)) for i, m in enumerate(messages)]


def test_identify_and_track_land_mapped(drip: FakeDrip) -> None:
    batch = entries(
        identify(
            "Ann@Example.com",
            user_id="user-42",
            firstName="Ann",
            lastName="Lee",
            timezone="Europe/Paris",
            tags=["vip", "beta"],
            plan="pro",
            seats=3,
            trial=True,
            address={"city": "Paris"},
            nickname=None,
        ),
        track("Order Completed", context_email="ann@example.com", revenue=19.99, order_id="o-1"),
        {"type": "page", "messageId": "p1", "name": "Home", "timestamp": TS},
        track("Viewed Plan", email="bob@example.com", plan="pro"),
    )
    assert target(drip).deliver(SOURCE, batch) == []

    ann = drip.subscribers["ann@example.com"]
    assert ann["email"] == "Ann@Example.com"
    assert (ann["user_id"], ann["first_name"], ann["last_name"], ann["time_zone"]) == (
        "user-42",
        "Ann",
        "Lee",
        "Europe/Paris",
    )
    assert ann["tags"] == ["vip", "beta"]
    # Named traits are not repeated as custom fields; values become what Drip stores.
    assert ann["custom_fields"] == {"plan": "pro", "seats": 3, "trial": "true", "address": '{"city":"Paris"}'}

    order, viewed = drip.events
    assert order == {
        "email": "ann@example.com",
        "action": "Order Completed",
        "properties": {"order_id": "o-1", "value": 1999},
        "occurred_at": TS,
    }
    assert viewed["email"] == "bob@example.com"
    assert viewed["properties"] == {"plan": "pro"}
    # Few items wait, so the single endpoints are used; the page is skipped without a request.
    assert drip.paths() == ["/subscribers", "/events", "/events"]
    assert all(ua and ua.startswith("sluice/") for ua in drip.user_agents)


def test_no_email_fails_without_a_request_and_the_rest_lands(drip: FakeDrip) -> None:
    batch = entries(
        track("Signed Up", plan="free"),
        identify(None, plan="free"),
        track("Signed Up", email="c@example.com"),
    )
    failures = target(drip).deliver(SOURCE, batch)

    assert [f.entry.seq for f in failures] == [1, 2]
    assert "no email" in failures[0].reason and "properties.email" in failures[0].reason
    assert "traits.email" in failures[1].reason
    assert [e["email"] for e in drip.events] == ["c@example.com"]
    assert drip.paths() == ["/events"]


def test_batch_endpoints_when_many_wait(drip: FakeDrip) -> None:
    people = [identify(f"p{i}@example.com", user_id=f"u{i}") for i in range(12)]
    events = [track(f"Step {i}", email=f"p{i % 12}@example.com", step=i) for i in range(25)]
    assert target(drip).deliver(SOURCE, entries(*people, *events)) == []

    assert drip.paths() == ["/subscribers/batches", "/events/batches"]
    assert len(drip.subscribers) == 12
    assert drip.subscribers["p3@example.com"]["user_id"] == "u3"
    assert [e["properties"]["step"] for e in drip.events] == list(range(25))


def test_a_bad_item_in_a_batch_falls_back_to_singles(drip: FakeDrip) -> None:
    events = [track(f"Step {i}", email="e@example.com", step=i) for i in range(12)]
    events[4]["properties"]["value"] = "lots"  # Drip wants integer cents
    failures = target(drip).deliver(SOURCE, entries(*events))

    assert [f.entry.seq for f in failures] == [5]
    assert failures[0].reason == "Drip refused the event: Value must be an integer (cents) (validation_error on value)"
    assert [e["properties"]["step"] for e in drip.events] == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    assert drip.paths() == ["/events/batches"] + ["/events"] * 12
    assert [status for _, _, status in drip.requests][:1] == [422]


def test_a_refused_subscriber_names_drips_reason(drip: FakeDrip) -> None:
    failures = target(drip).deliver(SOURCE, entries(identify("not-an-email"), identify("ok@example.com")))
    assert [f.entry.seq for f in failures] == [1]
    assert failures[0].reason == "Drip refused the subscriber: Email is invalid (email_error on email)"
    assert list(drip.subscribers) == ["ok@example.com"]


def test_an_identify_never_overtakes_an_earlier_track_of_the_same_user(drip: FakeDrip) -> None:
    batch = entries(
        identify("f@example.com", plan="free"),
        track("Upgraded", email="f@example.com"),
        identify("f@example.com", plan="pro"),
        track("Used Pro Feature", email="f@example.com"),
    )
    assert target(drip).deliver(SOURCE, batch) == []
    assert drip.paths() == ["/subscribers", "/events", "/subscribers", "/events"]
    assert drip.subscribers["f@example.com"]["custom_fields"]["plan"] == "pro"


def test_batch_quota_used_up_falls_back_to_single_calls(drip: FakeDrip) -> None:
    drip.set_limits(window_seconds=60.0)
    batch = entries(
        identify("a@example.com", user_id="a"),
        track("No Email"),  # refused before any request
        *[track(f"A{i}", email="a@example.com") for i in range(12)],
    )
    drip.exhaust("batch")  # another client used this hour's 50 batch calls

    failures = target(drip).deliver(SOURCE, batch)

    assert [f.entry.seq for f in failures] == [2]
    assert [e["action"] for e in drip.events] == [f"A{i}" for i in range(12)]  # in order, once each
    assert drip.paths().count("/events") == 12
    assert sorted(drip.subscribers) == ["a@example.com"]


def test_remaining_zero_stops_before_drip_says_429(drip: FakeDrip) -> None:
    drip.set_limits(single=2, window_seconds=1.0)
    batch = entries(*[track(f"T{i}", email="g@example.com") for i in range(4)])
    dest = target(drip)

    with pytest.raises(TransientError) as caught:
        dest.deliver(SOURCE, batch)
    err = caught.value
    assert err.done_through == 2
    assert err.retry_after is None  # no reset time is published: the worker backs off, then a 429 says
    assert "X-RateLimit-Remaining" in str(err)
    assert [status for _, _, status in drip.requests] == [204, 204]

    time.sleep(1.0)
    assert dest.deliver(SOURCE, [e for e in batch if e.seq > err.done_through]) == []
    assert [e["action"] for e in drip.events] == ["T0", "T1", "T2", "T3"]


def test_server_errors_are_transient(drip: FakeDrip) -> None:
    dest = target(drip)
    batch = entries(track("One", email="h@example.com"), track("Two", email="h@example.com"))

    drip.fail_next(1, 500)
    with pytest.raises(TransientError) as caught:
        dest.deliver(SOURCE, batch)
    assert caught.value.done_through is None
    assert "500" in str(caught.value)

    drip.fail_next(1, 503, retry_after=7)
    with pytest.raises(TransientError) as caught:
        dest.deliver(SOURCE, batch)
    assert caught.value.retry_after == 7

    assert dest.deliver(SOURCE, batch) == []
    assert [e["action"] for e in drip.events] == ["One", "Two"]


def test_bad_credentials_are_transient_and_say_what_to_check(drip: FakeDrip) -> None:
    batch = entries(track("One", email="i@example.com"))
    with pytest.raises(TransientError) as caught:
        target(drip, api_token="wrong").deliver(SOURCE, batch)
    assert "401" in str(caught.value) and "api_token" in str(caught.value)
    assert caught.value.failed == []

    with pytest.raises(TransientError) as caught:
        target(drip, account_id="1234").deliver(SOURCE, batch)
    assert "403" in str(caught.value) and "account_id" in str(caught.value)
    assert drip.events == []


def test_unreachable_drip_is_transient() -> None:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = {"account_id": ACCOUNT, "api_token": TOKEN, "base_url": f"http://127.0.0.1:{port}"}
    dest = DripTarget(Destination(7, 1, "drip", "Drip", conf), timeout=2.0)
    with pytest.raises(TransientError, match="cannot reach Drip"):
        dest.deliver(SOURCE, entries(track("One", email="j@example.com")))


def test_validate_config() -> None:
    assert validate_config({"account_id": 9999999, "api_token": "t"}) == {
        "account_id": "9999999",
        "api_token": "t",
        "base_url": "https://api.getdrip.com",
        "batch_threshold": 10,
    }
    with pytest.raises(ValueError, match="account_id"):
        validate_config({"api_token": "t"})
    with pytest.raises(ValueError, match="api_token"):
        validate_config({"account_id": "9999999", "api_token": ""})
    with pytest.raises(ValueError, match="base_url"):
        validate_config({"account_id": "9999999", "api_token": "t", "base_url": "api.getdrip.com"})


def test_fake_drip_enforces_the_contract(drip: FakeDrip) -> None:
    """The fake refuses what Drip refuses, so the tests above mean something."""
    url = f"{drip.url}/v2/{ACCOUNT}"
    auth = (TOKEN, "")
    one = {"events": [{"email": "k@example.com", "action": "A"}]}

    assert httpx.post(f"{url}/events", json=one, auth=("wrong", "")).status_code == 401
    r = httpx.post(f"{url}/events", json=one, auth=auth, headers={"User-Agent": ""})
    assert r.status_code == 400
    r = httpx.post(f"{url}/events", content=b"{}", auth=auth, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = httpx.post(f"{url}/nope", json=one, auth=auth)
    assert (r.status_code, r.json()["errors"][0]["code"]) == (404, "not_found_error")
    r = httpx.post(f"{url}/subscribers", json={"subscribers": [{"first_name": "K"}]}, auth=auth)
    assert r.json() == {"errors": [{"code": "presence_error", "message": "Email is required", "attribute": "email"}]}
    too_many = {"batches": [{"events": [{"email": "k@example.com", "action": "A"}] * 1001}]}
    assert httpx.post(f"{url}/events/batches", json=too_many, auth=auth).status_code == 422
    r = httpx.post(f"{url}/events", json=one, auth=auth)
    assert r.status_code == 204
    assert r.headers["X-RateLimit-Limit"] == "3600"
    assert int(r.headers["X-RateLimit-Remaining"]) < 3600
    assert len(drip.events) == 1
