"""The Reports page over the analytics contract (AdminServices.reports): tables, charts, filters handed on as the
CLI's options, CSV, errors said plainly, and a clear word when no analytics stage is there."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from console_env import console_env

EMAIL_ROW = {"key": "Fall <sale>", "deliveries": 4, "unique_opens": 2, "open_rate": 0.5, "unique_clicks": 1,
             "click_rate": 0.25, "click_to_open_rate": 0.5, "bot_clicks": 1, "unsubscribes": 0,
             "unsubscribe_rate": 0.0, "hard_bounces": 1, "hard_bounce_rate": 0.25, "complaints": 0,
             "complaint_rate": 0.0, "complaint_alert": None}


class FakeReports:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []

    def __call__(self, kind: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        self.calls.append((kind, dict(params)))
        if params.get("since") == "bogus":
            raise ValueError("--since: 'bogus' is neither ISO-8601 nor a duration like 2h or 7d")
        if kind == "attribution":
            return [{"key": "Fall <sale>", "conversions": 1.5, "revenue": 120.0, "touches": 3}]
        if params.get("by") == "day":
            return [{**EMAIL_ROW, "key": "2026-11-01"}, {**EMAIL_ROW, "key": "2026-11-02", "open_rate": 0.75}]
        return [EMAIL_ROW]


def test_reports_tables_charts_and_csv(tmp_path: Path) -> None:
    reports = FakeReports()
    with console_env(tmp_path / "data", reports=reports) as env:
        env.catalog.create_source("drip", "Drip", "drip")
        env.sign_in()
        page = env.client.get("/reports?source=drip&since=7d&by=campaign").text
        assert ("email", {"source": "drip", "since": "7d", "by": "campaign"}) in reports.calls
        assert ("email", {"source": "drip", "since": "7d", "by": "day"}) in reports.calls  # rates over time
        attribution = next(p for k, p in reports.calls if k == "attribution")
        assert attribution == {"source": "drip", "since": "7d", "conversion": "Order Completed", "value": "revenue",
                               "window": "5d", "model": "last", "by": "campaign"}
        # 0.5 is 50.0 %, 0.25 is 25.0 %; labels escaped in the table and in the charts.
        assert '<td data-col="open_rate" class="num">50.0%</td>' in page
        assert '<td data-col="click_rate" class="num">25.0%</td>' in page
        assert '<td data-col="key">Fall &lt;sale&gt;</td>' in page
        assert page.count('<svg role="img"') == 3 and "Rates over time" in page and "<script" not in page.split(
            "</head>")[1]
        assert '<td data-col="conversions" class="num">1.50</td>' in page
        r = env.client.get("/reports/email.csv?source=drip&since=7d&by=campaign")
        assert r.headers["content-type"].startswith("text/csv") and "attachment" in r.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert rows[0]["key"] == "Fall <sale>" and rows[0]["open_rate"] == "0.5" and rows[0]["complaint_alert"] == ""
        assert env.client.get("/reports/definitions").status_code == 200
        page = env.client.get("/reports?since=bogus").text
        assert "neither ISO-8601 nor a duration" in page


def test_reports_unavailable_without_analytics(tmp_path: Path) -> None:
    with console_env(tmp_path / "data") as env:
        env.sign_in()
        assert "Reports are unavailable" in env.client.get("/reports").text
        assert env.client.get("/reports/email.csv").status_code == 404
