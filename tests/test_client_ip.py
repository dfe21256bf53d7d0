"""context.ip: filled from the connection's peer on the Tracking API paths when a message has none; from
X-Forwarded-For only when the peer is a configured trusted proxy; never from a webhook's peer; and never stored
at all for a source that keeps no IPs. The stored shape digest always describes the stored body."""

from __future__ import annotations

from pathlib import Path

import pytest
from drip_payloads import webhook
from inprocess import Ingest, ingest

from sluice.ingest.shape import shape_of
from sluice.settings import Settings


def post(app: Ingest, path: str, body: object, **headers: str) -> None:
    r = app.client.post(path, json=body, auth=(app.web.write_key, ""), headers=headers)
    assert r.status_code == 200, r.text


def ips(app: Ingest) -> list[str | None]:
    return [m.get("context", {}).get("ip") for m in app.stored(app.web)]


def assert_shapes_match_bodies(app: Ingest) -> None:
    import orjson

    for source in (app.web, app.drip):
        for entry in app.entries(source):
            assert entry.shape == shape_of(orjson.loads(entry.body))


def test_peer_address_fills_context_ip_when_the_message_has_none(tmp_path: Path) -> None:
    with ingest(tmp_path, client=("203.0.113.7", 4000)) as app:
        post(app, "/v1/track", {"userId": "u1", "event": "A"})
        post(app, "/v1/t", {"userId": "u1", "event": "B", "context": {"library": {"name": "x"}}})
        post(app, "/v1/track", {"userId": "u1", "event": "C", "context": {"ip": "198.51.100.1"}})  # kept as sent
        post(app, "/v1/track", {"userId": "u1", "event": "D", "context": {"ip": None}})
        post(app, "/v1/batch", {"context": {"page": {"path": "/"}}, "batch": [
            {"type": "page", "userId": "u1"},
            {"type": "identify", "userId": "u1", "context": {"ip": "198.51.100.2"}},
        ]})
        assert ips(app) == ["203.0.113.7", "203.0.113.7", "198.51.100.1", "203.0.113.7", "203.0.113.7",
                            "198.51.100.2"]
        batch_page = app.stored(app.web)[4]
        assert batch_page["context"] == {"page": {"path": "/"}, "ip": "203.0.113.7"}
        assert_shapes_match_bodies(app)


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(tmp_path: Path) -> None:
    with ingest(tmp_path, client=("203.0.113.7", 4000)) as app:  # no trusted proxies: the header is the client's
        post(app, "/v1/track", {"userId": "u1", "event": "A"}, **{"X-Forwarded-For": "192.0.2.99"})
        assert ips(app) == ["203.0.113.7"]


@pytest.mark.parametrize(("forwarded", "expected"), [
    ("192.0.2.99", "192.0.2.99"),
    # A client may send its own header: the proxy appends the address it saw, and that one counts.
    ("1.1.1.1, 192.0.2.99", "192.0.2.99"),
    # Proxies in a chain, all trusted, are skipped from the right.
    ("192.0.2.99, 10.0.0.2", "192.0.2.99"),
])
def test_forwarded_for_from_trusted_proxies(tmp_path: Path, forwarded: str, expected: str) -> None:
    settings = Settings(data_dir=tmp_path, trusted_proxies="10.0.0.1, 10.0.0.0/30")
    with ingest(tmp_path, settings, client=("10.0.0.1", 4000)) as app:
        post(app, "/v1/t", {"userId": "u1", "event": "A"}, **{"X-Forwarded-For": forwarded})
        post(app, "/v1/t", {"userId": "u1", "event": "B"})  # no header: the proxy itself
        assert ips(app) == [expected, "10.0.0.1"]


def test_an_untrusted_peer_next_to_trusted_proxies(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, trusted_proxies="10.0.0.1")
    with ingest(tmp_path, settings, client=("203.0.113.7", 4000)) as app:
        post(app, "/v1/t", {"userId": "u1", "event": "A"}, **{"X-Forwarded-For": "192.0.2.99"})
        assert ips(app) == ["203.0.113.7"]


def test_a_webhook_peer_is_never_a_context_ip(tmp_path: Path) -> None:
    with ingest(tmp_path, client=("203.0.113.7", 4000)) as app:
        r = app.client.post(f"/webhooks/drip/{app.drip.webhook_token}", json=webhook("subscriber.opened_email"))
        assert r.status_code == 200, r.text
        assert all("ip" not in m.get("context", {}) for m in app.stored(app.drip))
        clicked = app.client.post(f"/webhooks/drip/{app.drip.webhook_token}",
                                  json=webhook("subscriber.clicked_email"))
        assert clicked.status_code == 200
        # Drip's own record of the clicker's address is kept: the subscriber's, not the peer's.
        assert [m["context"]["ip"] for m in app.stored(app.drip) if m.get("event") == "Email Link Clicked"] == [
            "203.0.113.42"]


def test_a_source_that_keeps_no_ips(tmp_path: Path) -> None:
    with ingest(tmp_path, client=("203.0.113.7", 4000)) as app:
        app.catalog.update_source("web", store_ips=False)
        app.catalog.update_source("drip", store_ips=False)
        post(app, "/v1/track", {"userId": "u1", "event": "A"})
        post(app, "/v1/track", {"userId": "u1", "event": "B", "context": {"ip": "198.51.100.1", "locale": "en"}})
        post(app, "/v1/batch", {"context": {"ip": "198.51.100.3"}, "batch": [{"type": "page", "userId": "u1"}]})
        assert ips(app) == [None, None, None]
        assert app.stored(app.web)[1]["context"] == {"locale": "en"}
        r = app.client.post(f"/webhooks/drip/{app.drip.webhook_token}", json=webhook("subscriber.clicked_email"))
        assert r.status_code == 200
        created = app.client.post(f"/webhooks/drip/{app.drip.webhook_token}", json=webhook("subscriber.created"))
        assert created.status_code == 200
        assert all("ip" not in m.get("context", {}) for m in app.stored(app.drip))
        identifies = [m for m in app.stored(app.drip) if m["type"] == "identify"]
        assert identifies and all("ip_address" not in m["traits"] for m in identifies)  # Drip's profile field too
        assert_shapes_match_bodies(app)
