"""Inputs that got a text/plain 500 (issue 9) get a JSON 400 or 401 with the reason; in a batch only the
bad item is refused. In-process: no server needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from inprocess import Ingest, ingest

from sluice.settings import Settings


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Ingest]:
    with ingest(tmp_path) as i:
        yield i


def with_deep(payload: Any, **deep: int) -> bytes:
    """JSON text with `"@name"` placeholders replaced by arrays nested that deep (no encoder writes them)."""
    text = orjson.dumps(payload).decode()
    for name, levels in deep.items():
        text = text.replace(f'"@{name}"', "[" * levels + '"bottom"' + "]" * levels)
    return text.encode()


JSON = {"Content-Type": "application/json"}


def refused(r: Any, status: int = 400) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["success"] is False
    return str(body["error"])


@pytest.mark.parametrize("levels", [260, 600, 1000])
def test_a_deeply_nested_property_is_a_400(app: Ingest, levels: int) -> None:
    payload = {"userId": "u", "event": "E", "properties": {"deep": "@d"}}
    r = app.client.post("/v1/track", content=with_deep(payload, d=levels), auth=(app.web.write_key, ""), headers=JSON)
    assert "nested more than 254 levels" in refused(r)
    assert app.stored_ids(app.web) == []


def test_in_a_batch_only_the_deep_item_is_refused(app: Ingest) -> None:
    batch = [
        {"type": "track", "userId": "u", "event": "E", "messageId": "ok-1"},
        {"type": "track", "userId": "u", "event": "E", "messageId": "deep", "properties": {"d": "@a"}},
        {"type": "identify", "userId": "u", "messageId": "ok-2", "traits": {"deep": "@b"}},
        {"type": "track", "userId": "u", "event": "E", "messageId": "ok-3", "context": {"x": "@c"}},
    ]
    r = app.client.post("/v1/batch", content=with_deep({"batch": batch}, a=400, b=300, c=100),
                        auth=(app.web.write_key, ""), headers=JSON)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stored"] == 2
    assert [x["index"] for x in body["rejected"]] == [1, 2]
    assert all("nested more than 254 levels" in x["reason"] for x in body["rejected"])
    assert app.stored_ids(app.web) == ["ok-1", "ok-3"]


def test_a_deeply_nested_batch_context_is_a_400(app: Ingest) -> None:
    payload = {"batch": [{"type": "track", "userId": "u", "event": "E"}], "context": {"deep": "@d"}}
    r = app.client.post("/v1/batch", content=with_deep(payload, d=300), auth=(app.web.write_key, ""), headers=JSON)
    assert "batch's context is nested more than 254 levels" in refused(r)


@pytest.mark.parametrize("where", ["properties", "subscriber"])
def test_a_deeply_nested_drip_webhook_is_a_400(app: Ingest, where: str) -> None:
    data: dict[str, Any] = {"subscriber": {"email": "a@example.com"}, "properties": {}}
    target = data["properties"] if where == "properties" else data["subscriber"]
    target["deep"] = "@d"
    r = app.client.post(f"/webhooks/drip/{app.drip.webhook_token}",
                        content=with_deep({"event": "subscriber.opened_email", "data": data}, d=600), headers=JSON)
    assert "nested more than 254 levels" in refused(r)
    assert app.stored_ids(app.drip) == []


@pytest.mark.parametrize("credentials", [b"Basic \xff\xfe", b"Basic d3Jp\xe9dGU6", "Basic ümlaut".encode("latin-1"),
                                         b"Basic !!!notbase64"])
def test_bad_bytes_in_basic_auth_are_a_401_with_the_reason(app: Ingest, credentials: bytes) -> None:
    r = app.client.post("/v1/track", content=b'{"userId":"u","event":"E"}',
                        headers={"Authorization": credentials, "Content-Type": "application/json"})
    assert "Basic credentials are not base64" in refused(r, 401)
    # A writeKey in the body still works, as it did before.
    ok = app.client.post("/v1/track", json={"userId": "u", "event": "E", "writeKey": app.web.write_key},
                         headers={"Authorization": credentials})
    assert ok.status_code == 200, ok.text


def test_a_bug_still_answers_json(tmp_path: Path) -> None:
    with ingest(tmp_path, Settings(data_dir=tmp_path)) as app:
        app.client.app.state.services.problems = lambda: 1 / 0  # type: ignore[attr-defined]
        r = app.client.get("/health")
        assert r.status_code == 500 and r.headers["content-type"] == "application/json"
        assert r.json() == {"success": False, "error": "internal error (ZeroDivisionError); retry later"}
