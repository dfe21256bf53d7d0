"""Connecting a Drip source to a Drip account through Drip's webhooks API (the fake Drip API, which keeps to
Drip's documented contract), the public URL every printed URL starts with, and the CLI over both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from fake_drip import FakeDrip

from sluice.catalog.store import Catalog
from sluice.cli import main
from sluice.settings import Settings
from sluice.sources.drip import DOCUMENTED_PROPERTIES
from sluice.sources.drip_connect import DripConnectError, connect_drip, disconnect_drip
from sluice.sources.drip_store import DripStore
from sluice.sources.public_url import public_base

PUBLIC = "https://sluice.example.com"


@pytest.fixture
def fake() -> Iterator[FakeDrip]:
    with FakeDrip() as drip:
        yield drip


def setup(tmp_path: Path, fake: FakeDrip, public_url: str = PUBLIC) -> tuple[Settings, Catalog, str]:
    settings = Settings(data_dir=tmp_path, drip_api_url=fake.url, public_url=public_url)
    catalog = Catalog(tmp_path)
    source = catalog.create_source("drip", "Drip", "drip")
    return settings, catalog, f"/webhooks/drip/{source.webhook_token}"


def test_connect_registers_every_event_and_is_idempotent(tmp_path: Path, fake: FakeDrip) -> None:
    settings, catalog, path = setup(tmp_path, fake)
    result = connect_drip(settings, catalog, "drip", fake.account_id, fake.api_token)
    [hook] = fake.webhooks.values()
    assert hook["post_url"] == PUBLIC + path and hook["include_received_email"] is True
    assert set(hook["events"]) == set(DOCUMENTED_PROPERTIES)  # every email and subscriber event Drip documents
    assert result["webhook_id"] == hook["id"] and result["post_url"] == PUBLIC + path
    assert result["warning"] is None and fake.api_token not in orjson.dumps(result).decode()
    assert fake.paths("GET").count(f"/webhooks/{hook['id']}") == 1  # checked after registering
    again = connect_drip(settings, catalog, "drip", fake.account_id, fake.api_token)
    assert again["webhook_id"] == hook["id"] and len(fake.webhooks) == 1  # found, not registered twice
    stored = DripStore(tmp_path).get(catalog.get_source("drip").id)
    assert stored is not None and stored.api_token == fake.api_token and stored.webhook_id == hook["id"]


def test_connect_replaces_a_hand_made_webhook_missing_events(tmp_path: Path, fake: FakeDrip) -> None:
    settings, catalog, path = setup(tmp_path, fake)
    fake.webhooks["1"] = {"id": "1", "post_url": PUBLIC + path, "include_received_email": False,
                          "events": ["subscriber.opened_email"]}
    result = connect_drip(settings, catalog, "drip", fake.account_id, fake.api_token)
    assert list(fake.webhooks) == [result["webhook_id"]] and result["webhook_id"] != "1"


def test_connect_errors_say_what_to_fix(tmp_path: Path, fake: FakeDrip) -> None:
    settings, catalog, _ = setup(tmp_path, fake)
    with pytest.raises(DripConnectError, match="check the API token"):
        connect_drip(settings, catalog, "drip", fake.account_id, "wrong-token")
    with pytest.raises(DripConnectError, match="check the account id"):
        connect_drip(settings, catalog, "drip", "1234", fake.api_token)
    with pytest.raises(DripConnectError, match="is a number"):
        connect_drip(settings, catalog, "drip", "acme", fake.api_token)
    catalog.create_source("http", "Web", "web")
    with pytest.raises(DripConnectError, match="is a http source"):
        connect_drip(settings, catalog, "web", fake.account_id, fake.api_token)
    with pytest.raises(DripConnectError, match="not connected"):
        disconnect_drip(settings, catalog, "drip")
    assert fake.webhooks == {}


def test_connect_waits_out_a_short_rate_limit(tmp_path: Path, fake: FakeDrip) -> None:
    settings, catalog, _ = setup(tmp_path, fake)
    fake.fail_next(1, status=429, retry_after=1)  # Drip's 429 with Retry-After: 1
    result = connect_drip(settings, catalog, "drip", fake.account_id, fake.api_token)
    assert result["webhook_id"] in fake.webhooks
    assert [s for _, _, s in fake.requests][:2] == [429, 200]


def test_disconnect_removes_the_webhook(tmp_path: Path, fake: FakeDrip) -> None:
    settings, catalog, _ = setup(tmp_path, fake)
    hook_id = connect_drip(settings, catalog, "drip", fake.account_id, fake.api_token)["webhook_id"]
    assert disconnect_drip(settings, catalog, "drip") == {"source": "drip", "account_id": fake.account_id,
                                                          "webhook_id": hook_id, "removed": True}
    assert fake.webhooks == {} and DripStore(tmp_path).all() == []
    connect_drip(settings, catalog, "drip", fake.account_id, fake.api_token)
    fake.webhooks.clear()  # removed in Drip's UI meanwhile: disconnecting still forgets it
    assert disconnect_drip(settings, catalog, "drip")["removed"] is True


def test_public_url_order_and_warning() -> None:
    settings = Settings(data_dir=Path("."), port=9000)
    assert public_base(settings, None).url == "http://127.0.0.1:9000"
    assert "Drip (a hosted service) cannot reach it" in (public_base(settings, None).warning or "")
    running = {"url": "http://0.0.0.0:51234", "public_url": ""}
    assert public_base(settings, running).url == "http://0.0.0.0:51234"  # the server's real address
    assert public_base(settings, running).warning is not None
    assert public_base(settings, {**running, "public_url": PUBLIC}) == public_base(
        Settings(data_dir=Path("."), public_url=PUBLIC), None)
    assert public_base(settings, {"url": "http://93.184.216.34:8088"}).warning is None  # a global address
    assert public_base(settings, {"url": "http://203.0.113.7:8088"}).warning is not None  # TEST-NET: not global
    assert public_base(Settings(data_dir=Path("."), public_url=PUBLIC + "/"), None).url == PUBLIC


def test_cli_connect_show_disconnect(tmp_path: Path, fake: FakeDrip) -> None:
    env = {"SLUICE_DRIP_API_URL": fake.url, "SLUICE_PUBLIC_URL": PUBLIC}
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, ["--data-dir", str(tmp_path), *args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    run("sources", "create", "drip", "--name", "Drip", "--schema", "drip")
    out = run("sources", "connect-drip", "drip", "--account-id", fake.account_id, "--api-token", fake.api_token)
    [hook_id] = fake.webhooks
    assert f"webhook {hook_id} posts to {PUBLIC}/webhooks/drip/" in out and fake.api_token not in out
    shown = run("sources", "show", "drip")
    assert f"Drip account: {fake.account_id} (webhook {hook_id}" in shown and fake.api_token not in shown
    as_json = orjson.loads(run("sources", "show", "drip", "--json"))
    assert as_json["drip_connection"]["webhook_id"] == hook_id and as_json["webhook_url"].startswith(PUBLIC)
    assert fake.api_token not in orjson.dumps(as_json).decode()
    assert f"removed webhook {hook_id}" in run("sources", "disconnect-drip", "drip")
    bad = runner.invoke(main, ["--data-dir", str(tmp_path), "sources", "connect-drip", "drip", "--account-id",
                               fake.account_id, "--api-token", "nope"], env=env)
    assert bad.exit_code == 1 and "check the API token" in bad.output
