"""Segment's Webhooks destinations as a way in (sluice/sources/segment_webhooks.py): what the classic Webhooks
destination and Webhooks (Actions) POST, signed as Segment signs them, stored as the source's own events with
Segment's times and context.ip; bad or missing signatures store nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from inprocess import Ingest, ingest

from sluice.ingest.shape import shape_of
from sluice.settings import Settings


def segment_event(message_id: str, **overrides: Any) -> dict[str, Any]:
    """A track as Segment's pipeline holds it and forwards it: filled by Segment (context.ip, receivedAt, the
    corrected timestamp), with the keys analytics.js sent."""
    event = {
        "anonymousId": "anon-1",
        "context": {
            "ip": "198.51.100.23",
            "library": {"name": "analytics.js", "version": "next-1.84.3"},
            "page": {"path": "/pricing", "title": "Pricing", "url": "https://shop.example.com/pricing"},
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
        },
        "event": "Email Opened",
        "integrations": {},
        "messageId": message_id,
        "originalTimestamp": "2026-01-05T10:00:00.000Z",
        "properties": {"email_id": "e1", "email_subject": "Hello"},
        "receivedAt": "2026-01-05T10:00:07.000Z",
        "sentAt": "2026-01-05T10:00:05.000Z",
        # receivedAt - (sentAt - originalTimestamp): the client's clock was 5 s behind Segment's.
        "timestamp": "2026-01-05T10:00:02.000Z",
        "type": "track",
        "userId": "u1",
        "version": 2,
        "writeKey": "the-segment-source-write-key",
    }
    event.update(overrides)
    return event


def js_json(value: Any) -> bytes:
    """JSON.stringify's bytes: what Segment's Node.js services send and sign."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha1).hexdigest()


def deliver(app: Ingest, body: bytes, signature: str | None, token: str | None = None):
    headers = {"Content-Type": "application/json", "User-Agent": "Segment.io/1.0"}
    if signature is not None:
        headers["X-Signature"] = signature
    return app.client.post(f"/webhooks/segment/{token or app.drip.segment_token}", content=body, headers=headers)


@pytest.fixture
def app(tmp_path: Path):
    with ingest(tmp_path, client=("203.0.113.250", 443)) as i:  # the peer is Segment's server
        yield i


def test_classic_webhook_one_signed_event_is_stored_as_segment_had_it(app: Ingest) -> None:
    body = js_json(segment_event("m-1"))
    r = deliver(app, body, sign(app.drip.segment_secret or "", body))
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "stored": 1, "duplicates": 0}
    [stored] = app.stored(app.drip)
    assert stored["messageId"] == "m-1" and stored["event"] == "Email Opened" and stored["userId"] == "u1"
    # Segment's times, as its own warehouse would show them.
    assert stored["receivedAt"] == "2026-01-05T10:00:07.000Z"
    assert stored["originalTimestamp"] == "2026-01-05T10:00:00.000Z"
    assert stored["sentAt"] == "2026-01-05T10:00:05.000Z"
    assert stored["timestamp"] == "2026-01-05T10:00:02.000Z"
    # The browser's address as Segment recorded it, never the peer's (Segment's server).
    assert stored["context"]["ip"] == "198.51.100.23"
    assert "writeKey" not in stored
    [entry] = app.entries(app.drip)
    assert entry.shape == shape_of(stored)
    assert app.stored(app.web) == []


def test_a_signed_event_again_is_a_duplicate(app: Ingest) -> None:
    body = js_json(segment_event("m-1"))
    signature = sign(app.drip.segment_secret or "", body)
    assert deliver(app, body, signature).json()["stored"] == 1
    assert deliver(app, body, signature).json() == {"success": True, "stored": 0, "duplicates": 1}
    assert app.stored_ids(app.drip) == ["m-1"]


@pytest.mark.parametrize("signature", [
    None,
    "",
    "0" * 40,
    "sha1=deadbeef",
])
def test_missing_or_wrong_signature_stores_nothing(app: Ingest, signature: str | None) -> None:
    r = deliver(app, js_json(segment_event("m-1")), signature)
    assert r.status_code == 401
    assert "X-Signature" in r.json()["error"]
    assert app.stored(app.drip) == []


def test_signature_with_another_secret_or_of_another_body_stores_nothing(app: Ingest) -> None:
    body = js_json(segment_event("m-1"))
    assert deliver(app, body, sign("another-secret-of-32-characters!", body)).status_code == 401
    tampered = js_json(segment_event("m-1", userId="someone-else"))
    assert deliver(app, tampered, sign(app.drip.segment_secret or "", body)).status_code == 401
    # One source's secret does not open another's URL.
    assert deliver(app, body, sign(app.web.segment_secret or "", body)).status_code == 401
    assert app.stored(app.drip) == []


def test_actions_batch_signed_as_segment_signs_it(app: Ingest) -> None:
    """Webhooks (Actions) with batching: a JSON array, whose X-Signature is the HMAC of its first item's JSON."""
    events = [segment_event(f"b-{i}", event="Email Link Clicked") for i in range(3)]
    events.append(segment_event("b-identify", type="identify", traits={"email": "u1@example.com"}))
    events.append({"type": "track", "messageId": "b-bad"})  # no identity: refused, the rest stored
    body = js_json(events)
    r = deliver(app, body, sign(app.drip.segment_secret or "", js_json(events[0])))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["stored"], answer["duplicates"]) == (4, 0)
    assert answer["rejected"] == [{"index": 4, "reason": "every message needs a userId or an anonymousId"}]
    assert app.stored_ids(app.drip) == ["b-0", "b-1", "b-2", "b-identify"]
    # A batch signed like a single event (the HMAC of the whole body) is fine too.
    again = deliver(app, body, sign(app.drip.segment_secret or "", body))
    assert again.status_code == 200 and again.json()["duplicates"] == 4


def test_actions_batch_with_a_wrong_signature_stores_nothing(app: Ingest) -> None:
    events = [segment_event("b-0"), segment_event("b-1")]
    body = js_json(events)
    assert deliver(app, body, sign(app.drip.segment_secret or "", js_json(events[1]))).status_code == 401
    assert app.stored(app.drip) == []


def test_unknown_token_is_any_unknown_path(app: Ingest) -> None:
    body = js_json(segment_event("m-1"))
    r = deliver(app, body, sign(app.drip.segment_secret or "", body), token="no-such-token")
    assert r.status_code == 404 and r.json()["error"] == "not found"


def test_signed_but_not_an_event(app: Ingest) -> None:
    secret = app.drip.segment_secret or ""
    for body, status in ((b'"text"', 400), (js_json({"type": "track", "userId": "u1"}), 400)):
        r = deliver(app, body, sign(secret, body))
        assert r.status_code == status, r.text
    assert app.stored(app.drip) == []


def test_a_source_that_keeps_no_ips_drops_segments_ip_too(app: Ingest) -> None:
    app.catalog.update_source("drip", store_ips=False)
    body = js_json(segment_event("m-1"))
    assert deliver(app, body, sign(app.drip.segment_secret or "", body)).status_code == 200
    [stored] = app.stored(app.drip)
    assert "ip" not in stored["context"]


def test_a_secret_chosen_by_the_user(app: Ingest) -> None:
    app.catalog.update_source("drip", segment_secret="the secret typed into Segment")
    body = js_json(segment_event("m-1"))
    assert deliver(app, body, sign("the secret typed into Segment", body)).status_code == 200


def test_batch_size_limit(tmp_path: Path) -> None:
    with ingest(tmp_path, Settings(data_dir=tmp_path, max_segment_webhook_events=2)) as app:
        events = [segment_event(f"b-{i}") for i in range(3)]
        body = js_json(events)
        r = deliver(app, body, sign(app.drip.segment_secret or "", js_json(events[0])))
        assert r.status_code == 400 and "limit is 2" in r.json()["error"]
        assert app.stored(app.drip) == []
