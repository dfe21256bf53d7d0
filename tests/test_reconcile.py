"""`sluice report reconcile` against the fake Drip API's email metrics endpoint: sluice's counts beside
Drip's for the same days, worked out by hand, through the CLI on the warehouse file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from fake_drip import FakeDrip
from test_mapping import entries

from sluice.catalog.store import Catalog
from sluice.cli import main
from sluice.datadir import WAREHOUSE_FILE
from sluice.sources.drip import map_webhook
from sluice.sources.drip_store import DripStore
from sluice.warehouse.duckdb_engine import DuckDBWarehouse


def hook(event: str, email: str, email_id: str, at: str) -> list[dict[str, object]]:
    return map_webhook({"event": event, "occurred_at": at, "data": {
        "account_id": "9999999", "subscriber": {"email": email},
        "properties": {"email_id": email_id, "email_subject": "S", "delivery_id": "1"}}}).messages


@pytest.fixture
def fake() -> Iterator[FakeDrip]:
    with FakeDrip() as drip:
        yield drip


def test_reconcile_lists_where_counts_differ(tmp_path: Path, fake: FakeDrip) -> None:
    catalog = Catalog(tmp_path)
    source = catalog.create_source("drip", "Drip", "drip")
    DripStore(tmp_path).save(source.id, fake.account_id, fake.api_token, "1", "https://x/webhooks/drip/t")
    wh = DuckDBWarehouse(tmp_path / WAREHOUSE_FILE)
    wh.load("warehouse-1", "drip", entries(
        *hook("subscriber.received_email", "a@x.com", "501", "2024-05-15T10:00:00Z"),
        *hook("subscriber.received_email", "b@x.com", "501", "2024-05-15T10:00:00Z"),
        *hook("subscriber.received_email", "a@x.com", "502", "2024-05-16T10:00:00Z"),
        *hook("subscriber.opened_email", "a@x.com", "501", "2024-05-15T11:00:00Z"),
        *hook("subscriber.received_email", "a@x.com", "499", "2024-05-10T10:00:00Z"),  # before the range
    ))
    wh.close()
    # Drip saw b@x.com open 501 too: a webhook sluice never got. Its summary covers 501 and 502.
    zero = {"clicks": 0, "bot_clicks": 0, "unsubscribes": 0, "hard_bounces": 0, "complaints": 0}
    fake.email_metrics = {"summary": {"sends": 3, "deliveries": 3, "opens": 2, **zero}, "emails": [
        {"email_id": 501, "title": "May news", "email_metric": {"deliveries": 2, "opens": 2, **zero},
         "sent_at": "2024-05-15"}]}

    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "report", "reconcile", "--source", "drip",
                                       "--since", "2024-05-14", "--until", "2024-05-20", "--format", "json"],
                                env={"SLUICE_DRIP_API_URL": fake.url}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = orjson.loads(result.output)
    assert fake.paths("GET") == ["/metrics/email"]
    got = {(r["key"], r["metric"]): (r["sluice"], r["drip"], r["difference"]) for r in rows}
    # Total: deliveries a/501, b/501, a/502 = 3 (499 is before the 14th); opens a/501 = 1 against Drip's 2.
    assert got[("total", "deliveries")] == (3, 3, 0)
    assert got[("total", "opens")] == (1, 2, -1)
    assert got[("501", "deliveries")] == (2, 2, 0)
    assert got[("501", "opens")] == (1, 2, -1)
    assert [k for k, v in got.items() if v[2]] == [("total", "opens"), ("501", "opens")]
    assert len(rows) == 2 * 7 and {r["title"] for r in rows if r["key"] == "501"} == {"May news"}

    table = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "report", "reconcile", "--source", "drip",
                                      "--since", "2024-05-14", "--until", "2024-05-20"],
                               env={"SLUICE_DRIP_API_URL": fake.url})
    assert "2 of 14 counts differ from Drip's" in table.output

    fake.exhaust("metrics")  # 20 calls an hour: the 21st gets 429 with an hour's Retry-After
    limited = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "report", "reconcile", "--source", "drip"],
                                 env={"SLUICE_DRIP_API_URL": fake.url})
    assert limited.exit_code == 1 and "Drip's rate limit is reached (Drip says: retry in" in limited.output
    catalog.create_source("drip", "Other", "other")
    unconnected = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "report", "reconcile", "--source", "other"],
                                     env={"SLUICE_DRIP_API_URL": fake.url})
    assert unconnected.exit_code == 1 and "not connected to a Drip account" in unconnected.output
