"""What analytics.js needs of the ingest listener, in-process: its short paths, text/plain bodies, CORS on every
/v1 answer, its settings and metrics paths, and a source's origin allow-list (tests/test_analytics_js.py drives
the real library in Chromium)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from inprocess import Ingest, ingest

from sluice.ingest.app import SHORT_PATHS
from sluice.settings import Settings

PAGE = "http://shop.test:8000"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def browser_headers(app: Ingest, origin: str = PAGE) -> dict[str, str]:
    """What analytics.js sends: JSON as text/plain, Basic auth, from a page's origin."""
    return {**basic(app.web.write_key), "Content-Type": "text/plain", "Origin": origin}


@pytest.fixture
def app(tmp_path: Path):
    with ingest(tmp_path) as i:
        yield i


BODIES = {
    "track": b'{"anonymousId":"a1","event":"Clicked","properties":{"n":1}}',
    "page": b'{"anonymousId":"a1","name":"Home","properties":{"url":"http://shop.test:8000/"}}',
    "identify": b'{"userId":"u1","traits":{"email":"u1@example.com"}}',
    "group": b'{"userId":"u1","groupId":"g1","traits":{"name":"Acme"}}',
    "alias": b'{"userId":"u1","previousId":"a1"}',
    "screen": b'{"userId":"u1","name":"Home"}',
}


@pytest.mark.parametrize("short", sorted(SHORT_PATHS))
def test_short_paths_store_their_type_from_a_text_plain_body(app: Ingest, short: str) -> None:
    mtype = SHORT_PATHS[short]
    r = app.client.post(f"/v1/{short}", content=BODIES[mtype], headers=browser_headers(app))
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == PAGE
    [stored] = app.stored(app.web)
    assert stored["type"] == mtype


def test_batch_short_path(app: Ingest) -> None:
    body = b'{"batch":[{"type":"track","anonymousId":"a1","event":"E"},{"type":"page","anonymousId":"a1"}]}'
    r = app.client.post("/v1/b", content=body, headers=browser_headers(app))
    assert r.status_code == 200 and r.json()["stored"] == 2
    assert [m["type"] for m in app.stored(app.web)] == ["track", "page"]


@pytest.mark.parametrize("path", ["/v1/p", "/v1/track", "/v1/batch", "/v1/b", "/v1/nowhere"])
def test_preflight_allows_post_with_the_requested_headers(app: Ingest, path: str) -> None:
    r = app.client.options(path, headers={
        "Origin": PAGE, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    })
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == PAGE
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-allow-headers"] == "authorization,content-type"
    assert r.headers["access-control-max-age"] == str(Settings().cors_max_age_seconds)
    assert "Origin" in r.headers["vary"]
    assert app.stored(app.web) == []


def test_preflight_from_a_public_page_to_a_private_address(app: Ingest) -> None:
    r = app.client.options("/v1/t", headers={
        "Origin": "https://public.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Private-Network": "true",
    })
    assert r.status_code == 204
    assert r.headers["access-control-allow-private-network"] == "true"
    assert "authorization" in r.headers["access-control-allow-headers"]  # none requested: what clients send


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("POST", "/v1/t", b'{"anonymousId":"a1"}', 400),  # no event name
    ("POST", "/v1/t", b"{not json", 400),
    ("POST", "/v1/nowhere", b"{}", 404),
    ("GET", "/v1/track", None, 405),
    ("GET", "/v1/projects/no-such-key/settings", None, 404),
])
def test_every_v1_answer_names_the_origin_errors_too(app: Ingest, method: str, path: str, body: bytes | None,
                                                     status: int) -> None:
    headers = browser_headers(app)
    r = app.client.request(method, path, content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["access-control-allow-origin"] == PAGE
    assert r.json()["success"] is False


def test_unknown_write_key_answer_names_the_origin(app: Ingest) -> None:
    r = app.client.post("/v1/t", content=BODIES["track"], headers={**basic("nope"), "Origin": PAGE})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == PAGE


def test_without_origin_any_origin_is_named(app: Ingest) -> None:
    r = app.client.post("/v1/track", json={"userId": "u1", "event": "E"}, headers=basic(app.web.write_key))
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"


def test_other_paths_carry_no_cors(app: Ingest) -> None:
    assert "access-control-allow-origin" not in app.client.get("/health", headers={"Origin": PAGE}).headers
    assert app.client.options("/health", headers={"Origin": PAGE}).status_code == 405


def test_metrics_path_answers_200_and_stores_nothing(app: Ingest) -> None:
    body = b'{"series":[{"type":"Counter","metric":"analytics_js.invoke","value":1,"tags":{}}]}'
    r = app.client.post("/v1/m", content=body, headers={"Content-Type": "text/plain", "Origin": PAGE})
    assert r.status_code == 200 and r.json() == {"success": True}
    assert r.headers["access-control-allow-origin"] == PAGE
    assert app.stored(app.web) == [] and app.stored(app.drip) == []


def test_settings_name_sluice_as_the_api_host(app: Ingest) -> None:
    r = app.client.get(f"/v1/projects/{app.web.write_key}/settings", headers={"Origin": PAGE,
                                                                                "Host": "sluice.test:8088"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == PAGE
    segment = r.json()["integrations"]["Segment.io"]
    assert segment["apiKey"] == app.web.write_key
    assert (segment["protocol"], segment["apiHost"]) == ("http", "sluice.test:8088/v1")
    assert r.json()["metrics"]["sampleRate"] == 0  # analytics.js's own metrics: not sent anywhere
    assert list(r.json()["integrations"]) == ["Segment.io"]  # no destination code for analytics.js to fetch


def test_settings_follow_the_public_url(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, public_url="https://events.example.com/sluice/")
    with ingest(tmp_path, settings) as app:
        segment = app.client.get(f"/v1/projects/{app.web.write_key}/settings").json()["integrations"]["Segment.io"]
    assert (segment["protocol"], segment["apiHost"]) == ("https", "events.example.com/sluice/v1")


def test_allow_list_refuses_other_origins_with_a_reason_the_page_can_read(app: Ingest) -> None:
    app.catalog.update_source("web", allowed_origins=["https://shop.example.com"])
    refused = app.client.post("/v1/t", content=BODIES["track"], headers=browser_headers(app, PAGE))
    assert refused.status_code == 403
    assert refused.headers["access-control-allow-origin"] == PAGE  # so the page, and its console, see why
    error = refused.json()["error"]
    assert PAGE in error and f"sluice sources update web --allowed-origin {PAGE}" in error
    settings = app.client.get(f"/v1/projects/{app.web.write_key}/settings", headers={"Origin": PAGE})
    assert settings.status_code == 403 and PAGE in settings.json()["error"]
    assert app.stored(app.web) == []

    allowed = app.client.post("/v1/t", content=BODIES["track"],
                              headers=browser_headers(app, "https://shop.example.com"))
    assert allowed.status_code == 200
    # A server-side client sends no Origin: the allow-list keeps pages of other sites out, nothing more.
    server = app.client.post("/v1/track", content=BODIES["track"], headers=basic(app.web.write_key))
    assert server.status_code == 200
    assert len(app.stored(app.web)) == 2

    app.catalog.update_source("web", allowed_origins=[])
    assert app.client.post("/v1/t", content=BODIES["track"], headers=browser_headers(app)).status_code == 200
