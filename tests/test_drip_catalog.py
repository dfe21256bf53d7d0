"""The Drip catalog sync against the fake Drip API (paging, 429 and Retry-After, errors kept), and the
email report placing webhook emails in their broadcast with what the sync learned."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fake_drip import FakeDrip
from test_mapping import entries

from sluice.analytics.reader import DuckDBReader
from sluice.analytics.service import ReportContext, run_report
from sluice.catalog.store import Catalog
from sluice.settings import Settings
from sluice.sources.drip import map_webhook
from sluice.sources.drip_store import DripStore
from sluice.warehouse.drip_catalog import DripCatalogSync, sync_source
from sluice.warehouse.duckdb_engine import DuckDBWarehouse
from sluice.warehouse.readonly import QueryLimits

TODAY = date(2024, 5, 31)


@pytest.fixture
def fake() -> Iterator[FakeDrip]:
    with FakeDrip() as drip:
        # 250 broadcasts: three pages of at most 100.
        drip.broadcasts = [{"id": str(1000 + i), "status": "sent", "name": f"Broadcast {i}", "subject": f"S{i}",
                            "send_at": "2024-05-20T10:00:00Z", "created_at": "2024-05-01T10:00:00Z",
                            "links": {"account": drip.account_id}} for i in range(250)]
        drip.campaigns = [{"id": "55", "status": "active", "name": "Onboarding series",
                           "created_at": "2024-01-01T00:00:00Z"}]
        drip.workflows = [{"id": "77", "status": "active", "name": "Welcome workflow",
                           "created_at": "2024-01-01T00:00:00Z"}]
        drip.email_metrics = {"summary": {"deliveries": 2}, "emails": [
            {"email_id": 501, "broadcast_id": "1007", "title": "May sale", "email_metric": {"deliveries": 2},
             "sent_at": "2024-05-20"},
            {"email_id": 502, "broadcast_id": "gone-1", "title": "An old broadcast", "email_metric": {},
             "sent_at": "2024-05-13"},
        ]}
        yield drip


def test_sync_pages_and_places_emails(tmp_path: Path, fake: FakeDrip) -> None:
    settings = Settings(data_dir=tmp_path, drip_api_url=fake.url)
    catalog = Catalog(tmp_path)
    source = catalog.create_source("drip", "Drip", "drip")
    DripStore(tmp_path).save(source.id, fake.account_id, fake.api_token, "1", "https://x/webhooks/drip/t")
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    hooks = []
    for email_id, who in (("501", "a@x.com"), ("501", "b@x.com"), ("502", "a@x.com"), ("503", "a@x.com")):
        hooks += map_webhook({"event": "subscriber.received_email", "occurred_at": "2024-05-20T10:00:00Z",
                              "data": {"account_id": fake.account_id, "subscriber": {"email": who},
                                       "properties": {"email_id": email_id, "email_subject": f"Subject {email_id}",
                                                      "delivery_id": "1"}}}).messages
    wh.load("warehouse-1", "drip", entries(*hooks))

    fake.fail_next(1, status=429, retry_after=1)  # Drip's rate limit, once: waited out
    counts = sync_source(settings, DripStore(tmp_path), source, wh.connection, today=TODAY)
    assert counts == {"_drip_broadcasts": 250, "_drip_campaigns": 1, "_drip_workflows": 1,
                      "_drip_email_broadcasts": 2}
    # The 429 (Retry-After: 1) waited out, then three pages of at most 100.
    assert [s for m, p, s in fake.requests if p.endswith("/broadcasts")] == [429, 200, 200, 200]
    assert sum(p == "/metrics/email" for p in fake.paths("GET")) == 4  # one week per call, 4 weeks
    stored = DripStore(tmp_path).get(source.id)
    assert stored is not None and stored.synced_at is not None and stored.sync_error is None

    reader = DuckDBReader(wh.connection, QueryLimits(60, 10_000))
    rows = run_report("email", {"by": "campaign"}, ReportContext(catalog, lambda name: reader),
                      now=datetime(2024, 5, 31, tzinfo=UTC))
    # 501 is broadcast 1007 ("Broadcast 7"); 502's broadcast is not listed, so the metrics' title names it;
    # 503 is unknown to Drip's catalog: its own row, by its subject.
    assert [(r["key"], r["deliveries"]) for r in rows] == [
        ("Broadcast 7", 2), ("An old broadcast", 1), ("Subject 503 (email 503)", 1)]
    # A second sync replaces the tables, it does not add to them.
    sync_source(settings, DripStore(tmp_path), source, wh.connection, today=TODAY)
    assert reader.rows("select count(*) as n from drip._drip_broadcasts") == [{"n": 250}]
    wh.close()


def test_sync_failure_is_kept_and_paused(tmp_path: Path, fake: FakeDrip) -> None:
    settings = Settings(data_dir=tmp_path, drip_api_url=fake.url)
    catalog = Catalog(tmp_path)
    source = catalog.create_source("drip", "Drip", "drip")
    DripStore(tmp_path).save(source.id, fake.account_id, "revoked-token", "1", "https://x/webhooks/drip/t")
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    sync = DripCatalogSync(settings, catalog, wh.connection)
    sync.run_once()
    stored = DripStore(tmp_path).get(source.id)
    assert stored is not None and stored.synced_at is None and "check the API token" in (stored.sync_error or "")
    calls = len(fake.requests)
    sync.run_once()  # paused after a failure: Drip is not asked again at once
    assert len(fake.requests) == calls
    wh.close()
