"""`sluice demo` end to end: its own sources, every campaign in the report, revenue attributed, a second run
sending nothing, and `--reset` removing its sources and tables."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from conftest import Sluice, poll
from test_mapping import entries

from sluice.analytics.reader import PostgresReader
from sluice.analytics.readers import reader_factory
from sluice.api.schemas import drop_source_schema
from sluice.catalog.store import Catalog
from sluice.demo_traffic import generate
from sluice.warehouse.duckdb_engine import DuckDBWarehouse
from sluice.warehouse.readonly import QueryLimits


def test_demo_reports_idempotence_and_reset(sluice: Sluice) -> None:
    traffic = generate(seed=3, campaigns=2, subscribers=30)
    first = sluice.cli("demo", "--subscribers", "30", "--campaigns", "2", "--seed", "3").stdout
    assert "demo_drip" in first and "demo_product" in first
    orders = sum(1 for m in traffic.product if m.get("event") == "Order Completed")
    poll(sluice, "select id from demo_product.order_completed", orders)
    delivered = traffic.summary()["Email Delivered"]  # both paths; Drip's retries are stored once
    poll(sluice, "select id from demo_drip.email_delivered", delivered)

    rows = orjson.loads(sluice.cli("report", "email", "--by", "campaign", "--format", "json").stdout)
    keys = {r["key"] for r in rows}
    # The Segment integration's campaigns are named; the webhooks' emails are their own rows (subject + id).
    assert {"Weekly digest", "Feature announcements"} <= keys
    assert any(k.endswith(")") and "(email " in k for k in keys)
    assert all(r["deliveries"] > 0 and 0 <= r["open_rate"] <= 1 for r in rows)
    revenue = orjson.loads(sluice.cli("report", "attribution", "--conversion", "Order Completed", "--value",
                                      "revenue", "--format", "json").stdout)
    assert revenue and sum(r["revenue"] for r in revenue) > 0

    again = sluice.cli("demo", "--subscribers", "30", "--campaigns", "2", "--seed", "3").stdout
    assert "nothing sent again" in again
    assert orjson.loads(sluice.cli("report", "email", "--by", "campaign", "--format", "json").stdout) == rows

    out = sluice.cli("demo", "--reset").stdout
    assert "dropped schema demo_drip" in out and "dropped schema demo_product" in out
    assert sluice.query("select schema_name from information_schema.schemata where schema_name like 'demo_%'") == []
    assert "demo_drip" not in sluice.cli("sources", "list").stdout


def test_drop_schema_refuses_a_schema_in_use(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    source = catalog.create_source("drip", "Drip", "drip")
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    wh.load("warehouse-1", "drip", entries({"type": "track", "userId": "u", "event": "Email Opened"}))
    with pytest.raises(ValueError, match="still uses schema 'drip': delete it first"):
        drop_source_schema(catalog, wh, "drip")
    catalog.delete_source(str(source.id))
    assert drop_source_schema(catalog, wh, "drip") == {"schema": "drip", "dropped": True}
    assert wh.query("select count(*) from information_schema.tables where table_schema = 'drip'",
                    QueryLimits(10, 10))["rows"] == [[0]]
    with pytest.raises(ValueError, match="not a source's schema"):
        wh.drop_schema("_sluice")
    wh.close()


def test_report_reads_a_postgres_destination_by_name(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    catalog.create_source("http", "Web", "web")
    catalog.add_destination("web", "postgres", "pg", {"url": "postgresql://postgres@127.0.0.1:5432/x"})
    catalog.add_destination("web", "webhook", "hook", {"url": "https://example.com/hook"})
    make = reader_factory(catalog, lambda: pytest.fail("not the embedded one"), QueryLimits(10, 10))
    assert isinstance(make("pg"), PostgresReader)
    with pytest.raises(ValueError, match="is a webhook destination, not a warehouse"):
        make("hook")
    with pytest.raises(ValueError, match="no destination 'nope'"):
        make("nope")
