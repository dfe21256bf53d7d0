"""`sluice demo` end to end: its own sources, every campaign in the report, revenue attributed, a second run
sending nothing, and `--reset` removing its sources and tables."""

from __future__ import annotations

import orjson
from conftest import Sluice, poll

from sluice.demo_traffic import generate


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
