"""The analytics stage on a small fixed dataset written here, every expected number worked out by hand in
the comments (never by the report's own SQL): email report, identity map, attribution.

Messages go through the real Drip webhook mapping and ingest's canonicalisation into a real DuckDB
warehouse; the reports read it through the same reader the server uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import throwaway_pg_database
from test_mapping import entries

from sluice.analytics.email_report import complaint_alert
from sluice.analytics.identity import identity_map_sql
from sluice.analytics.reader import DuckDBReader, PostgresReader, Reader
from sluice.analytics.service import ReportContext, ReportError, run_report
from sluice.sources.drip import map_webhook
from sluice.warehouse.duckdb_engine import DuckDBWarehouse
from sluice.warehouse.loader import Caps, Warehouse
from sluice.warehouse.postgres_engine import PostgresWarehouse
from sluice.warehouse.readonly import QueryLimits

NOW = datetime(2024, 5, 31, tzinfo=UTC)  # --since 30d starts at 2024-05-01


def hook(event: str, email: str, at: str, user_id: str | None = None, **props: Any) -> list[dict[str, Any]]:
    """What Drip's webhook becomes in sluice (the real mapping)."""
    payload = {"event": event, "occurred_at": at,
               "data": {"account_id": "9999999", "subscriber": {"email": email, "user_id": user_id},
                        "properties": props}}
    return map_webhook(payload, scope="1").messages


def seg(event: str, at: str, email: str | None = None, user_id: str | None = None, **props: Any) -> dict[str, Any]:
    """A track as Drip's Segment integration (or a product) sends it: userId, else the email as anonymousId."""
    who = {"userId": user_id} if user_id else {"anonymousId": email}
    context = {"traits": {"email": email}} if email else {}
    return {"type": "track", "event": event, "timestamp": at, "properties": props, "context": context, **who}


def identify(user_id: str, email: str, at: str) -> dict[str, Any]:
    return {"type": "identify", "userId": user_id, "traits": {"email": email}, "timestamp": at}


E1 = {"email_id": "101", "email_subject": "Welcome aboard"}  # webhooks only: no campaign -> labelled by subject
E2 = {"email_id": "202", "email_subject": "May news", "campaign_id": "77", "campaign_name": "Newsletter"}
E3 = {"email_id": "303", "email_subject": "Last call"}  # opened, never delivered
E4 = {"email_id": "404", "email_subject": "Old"}  # before the period
HUMAN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel scanner)"

DRIP: list[dict[str, Any]] = [
    # E1, Monday 2024-05-13. Delivered to Ann (u1) twice (a Drip retry: counted once), Bob (by his
    # email, in another case), Cy; Dee's bounced.
    *hook("subscriber.received_email", "ann@x.com", "2024-05-13T10:00:00Z", "u1", delivery_id="1", **E1),
    *hook("subscriber.received_email", "ann@x.com", "2024-05-13T10:05:00Z", "u1", delivery_id="1", **E1),
    *hook("subscriber.received_email", "Bob@X.com", "2024-05-13T10:00:00Z", delivery_id="2", **E1),
    *hook("subscriber.received_email", "cy@x.com", "2024-05-13T10:00:00Z", delivery_id="3", **E1),
    *hook("subscriber.bounced", "dee@x.com", "2024-05-13T10:01:00Z", delivery_id="4", **E1),
    # Opens: Ann twice (1 pair); Bob under his userId now (the same person as Bob@X.com: 1 pair).
    *hook("subscriber.opened_email", "ann@x.com", "2024-05-13T11:00:00Z", "u1", delivery_id="1", **E1),
    *hook("subscriber.opened_email", "ann@x.com", "2024-05-13T12:00:00Z", "u1", delivery_id="1", **E1),
    *hook("subscriber.opened_email", "bob@x.com", "2024-05-13T11:00:00Z", "u2", delivery_id="2", **E1),
    # Clicks: Ann and Bob by hand; Cy's two are bots (1 s after delivery; a scanner's user agent).
    *hook("subscriber.clicked_email", "ann@x.com", "2024-05-13T11:01:00Z", "u1", delivery_id="1", url="https://a",
          user_agent=HUMAN, ip_address="203.0.113.1", **E1),
    *hook("subscriber.clicked_email", "bob@x.com", "2024-05-13T11:05:00Z", delivery_id="2", url="https://a",
          user_agent=HUMAN, ip_address="203.0.113.2", **E1),
    *hook("subscriber.clicked_email", "cy@x.com", "2024-05-13T10:00:01Z", delivery_id="3", url="https://a",
          user_agent=HUMAN, ip_address="203.0.113.3", **E1),
    *hook("subscriber.clicked_email", "cy@x.com", "2024-05-13T10:30:00Z", delivery_id="3", url="https://b",
          user_agent=SCANNER, ip_address="203.0.113.3", **E1),
    # Cy unsubscribes from everything (no email id): placed on the last email delivered to Cy, E1.
    *hook("subscriber.unsubscribed_all", "cy@x.com", "2024-05-13T13:00:00Z"),
    *hook("subscriber.complained", "bob@x.com", "2024-05-13T14:00:00Z", delivery_id="2", **E1),
    # Ann's subscriber identify (a tag applied): ann@x.com <-> u1.
    *hook("subscriber.applied_tag", "ann@x.com", "2024-05-13T09:00:00Z", "u1", tag="vip"),
    # E3: Ann opens it on Monday 2024-05-20; no delivery of it is known.
    *hook("subscriber.opened_email", "ann@x.com", "2024-05-20T10:00:00Z", "u1", delivery_id="9", **E3),
    # E4 was delivered before the period.
    *hook("subscriber.received_email", "ann@x.com", "2024-04-01T10:00:00Z", "u1", delivery_id="8", **E4),
    # E2, Wednesday 2024-05-15, through Drip's Segment integration (campaign_name carried).
    seg("Email Delivered", "2024-05-15T09:00:00Z", "ann@x.com", "u1", **E2),
    seg("Email Delivered", "2024-05-15T09:00:00Z", "bob@x.com", **E2),
    seg("Email Delivered", "2024-05-15T09:00:00Z", "eve@x.com", **E2),
    seg("Email Delivered", "2024-05-15T09:00:00Z", "fay@x.com", **E2),
    seg("Email Opened", "2024-05-15T12:00:00Z", "bob@x.com", **E2),
    seg("Email Opened", "2024-05-15T12:00:00Z", "eve@x.com", **E2),
]

WEB: list[dict[str, Any]] = [
    identify("u9", "BOB@x.com", "2024-05-01T00:00:00Z"),  # an older claim on Bob's email: the conflict
    identify("u2", "bob@x.com", "2024-05-10T00:00:00Z"),
    identify("u5", "Eve@X.com", "2024-05-16T00:00:00Z"),  # Eve, known by email until now
    seg("Order Completed", "2024-05-21T09:00:00Z", user_id="u1", revenue=50),  # c1 Ann
    seg("Order Completed", "2024-05-13T10:30:00Z", user_id="u2", revenue=20),  # c2 Bob, before his touches
    seg("Order Completed", "2024-05-17T09:00:00Z", user_id="u5", revenue=30),  # c3 Eve
    seg("Order Completed", "2024-05-16T08:00:00Z", user_id="u2", revenue=40),  # c5 Bob
    seg("Signed Up", "2024-05-02T08:00:00Z", user_id="u2"),
]


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def context(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportContext]:
    """The same data in either warehouse engine: every report test runs on both."""
    with contextlib.ExitStack() as stack:
        limits = QueryLimits(60, 100_000)
        wh: Warehouse
        reader: Reader
        if request.param == "duckdb":
            duck = DuckDBWarehouse(Path(tmp_path_factory.mktemp("reports")) / "w.duckdb")
            wh, reader = duck, DuckDBReader(duck.connection, limits)
        else:
            url = stack.enter_context(throwaway_pg_database())
            wh, reader = PostgresWarehouse(url, Caps()), PostgresReader(url, limits)
        stack.callback(wh.close)
        wh.load("warehouse-1", "drip", entries(*DRIP))
        wh.load("warehouse-2", "web", entries(*WEB))
        yield ReportContext(Sources(), lambda name: reader)


class Sources:
    def get_source(self, ref: str) -> Any:
        if ref not in ("drip", "web"):
            raise ValueError(f"no source {ref!r}")
        return type("S", (), {"schema": ref})


def report(context: ReportContext, kind: str, **params: str) -> list[dict[str, Any]]:
    return run_report(kind, params, context, now=NOW)


def by_key(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in rows}


# E1: deliveries Ann, Bob, Cy = 3 (Ann's retry once, Dee bounced without one); opens Ann, Bob = 2;
# clicks Ann, Bob = 2 (Cy's 2 are bots); Cy's unsubscribe = 1; Dee's bounce = 1; Bob's complaint = 1.
WELCOME = {"deliveries": 3, "unique_opens": 2, "open_rate": 0.6667, "unique_clicks": 2, "click_rate": 0.6667,
           "click_to_open_rate": 1.0, "bot_clicks": 2, "unsubscribes": 1, "unsubscribe_rate": 0.3333,
           "hard_bounces": 1, "hard_bounce_rate": 0.3333, "complaints": 1, "complaint_rate": 0.3333,
           "complaint_alert": "critical"}
# E2: deliveries Ann, Bob, Eve, Fay = 4; opens Bob, Eve = 2 -> 0.5; nothing else.
NEWSLETTER = {"deliveries": 4, "unique_opens": 2, "open_rate": 0.5, "unique_clicks": 0, "click_rate": 0.0,
              "click_to_open_rate": 0.0, "bot_clicks": 0, "unsubscribes": 0, "unsubscribe_rate": 0.0,
              "hard_bounces": 0, "hard_bounce_rate": 0.0, "complaints": 0, "complaint_rate": 0.0,
              "complaint_alert": None}
# E3: one open, zero deliveries: every rate 0.
LAST_CALL = {"deliveries": 0, "unique_opens": 1, "open_rate": 0.0, "unique_clicks": 0, "click_rate": 0.0,
             "click_to_open_rate": 0.0, "bot_clicks": 0, "unsubscribes": 0, "unsubscribe_rate": 0.0,
             "hard_bounces": 0, "hard_bounce_rate": 0.0, "complaints": 0, "complaint_rate": 0.0,
             "complaint_alert": None}


def test_email_report_by_campaign(context: ReportContext) -> None:
    rows = report(context, "email", by="campaign")
    # E2 is placed by its campaign name; E1 and E3 cannot be placed and are rows labelled by their subjects;
    # E4 is before --since 30d. Ordered by deliveries.
    assert [r["key"] for r in rows] == ["Newsletter", "Welcome aboard (email 101)", "Last call (email 303)"]
    assert rows[0] == {"key": "Newsletter", **NEWSLETTER}
    assert rows[1] == {"key": "Welcome aboard (email 101)", **WELCOME}
    assert rows[2] == {"key": "Last call (email 303)", **LAST_CALL}


def test_email_report_by_email_and_day(context: ReportContext) -> None:
    assert report(context, "email", by="email") == [
        {"key": "202", **NEWSLETTER}, {"key": "101", **WELCOME}, {"key": "303", **LAST_CALL}]
    # Days are the delivery's UTC date (E3's first event's, having none).
    assert report(context, "email", by="day") == [
        {"key": "2024-05-13", **WELCOME}, {"key": "2024-05-15", **NEWSLETTER}, {"key": "2024-05-20", **LAST_CALL}]


def test_email_report_by_week(context: ReportContext) -> None:
    # Week of Monday 2024-05-13 = E1 + E2: deliveries 3 + 4 = 7; opens 2 + 2 = 4 (4/7 = 0.5714); clicks 2
    # (2/7 = 0.2857, 2/4 = 0.5); 1 unsubscribe, bounce and complaint each (1/7 = 0.1429, >= 0.3 %: critical).
    week = {"deliveries": 7, "unique_opens": 4, "open_rate": 0.5714, "unique_clicks": 2, "click_rate": 0.2857,
            "click_to_open_rate": 0.5, "bot_clicks": 2, "unsubscribes": 1, "unsubscribe_rate": 0.1429,
            "hard_bounces": 1, "hard_bounce_rate": 0.1429, "complaints": 1, "complaint_rate": 0.1429,
            "complaint_alert": "critical"}
    assert report(context, "email", by="week") == [{"key": "2024-05-13", **week}, {"key": "2024-05-20", **LAST_CALL}]


def test_email_report_period_and_source(context: ReportContext) -> None:
    # Only E4 (2024-04-01) lies in April: 1 delivery to Ann.
    rows = report(context, "email", by="email", since="2024-04-01", until="2024-05-01")
    assert [(r["key"], r["deliveries"], r["unique_opens"]) for r in rows] == [("404", 1, 0)]
    assert report(context, "email", source="web") == []  # the web source holds no email events
    assert by_key(report(context, "email", source="drip"))["Welcome aboard (email 101)"]["deliveries"] == 3


def test_complaint_alert_thresholds() -> None:
    assert complaint_alert(1, 1000) == "warning"  # exactly 0.1 %
    assert complaint_alert(1, 1001) is None  # just under 0.1 %
    assert complaint_alert(2, 1000) == "warning"
    assert complaint_alert(3, 1000) == "critical"  # exactly 0.3 %
    assert complaint_alert(0, 0) is None


def test_identity_map(context: ReportContext) -> None:
    reader = context.reader(None)
    rows = reader.rows(f"SELECT * FROM ({identity_map_sql(reader.columns())}) AS m ORDER BY email")
    got = {r["email"]: (r["user_id"], r["user_ids"]) for r in rows}
    # bob@x.com: u9 (05-01), u2 (05-10 identify, 05-13 open): the latest, u2, wins; 2 userIds claimed it.
    assert got == {"ann@x.com": ("u1", 1), "bob@x.com": ("u2", 2), "eve@x.com": ("u5", 1)}


# Attribution, "Order Completed" with revenue, window 5d (touches: opens and human clicks):
# c1 Ann 05-21 09:00 $50: E3 open 05-20 (E1's 05-13 touches are 8 days before: outside the window).
# c2 Bob 05-13 10:30 $20: his touches come at 11:00 and later: nothing credited.
# c3 Eve (u5) 05-17 09:00 $30: E2 open 05-15 as eve@x.com, before she was u5 (the identity map links them).
# c5 Bob 05-16 08:00 $40: E1 (05-13 11:00, 11:05) and E2 (05-15 12:00): two emails in the window.
def test_attribution_last(context: ReportContext) -> None:
    rows = report(context, "attribution", conversion="Order Completed", value="revenue")
    # last: c5 -> E2. Newsletter: c3 + c5 = 2, $70, 2 touches; Last call: c1; Welcome aboard: touched only.
    assert rows == [
        {"key": "Newsletter", "conversions": 2.0, "revenue": 70.0, "touches": 2},
        {"key": "Last call (email 303)", "conversions": 1.0, "revenue": 50.0, "touches": 1},
        {"key": "Welcome aboard (email 101)", "conversions": 0.0, "revenue": 0.0, "touches": 1},
    ]


def test_attribution_first_and_linear(context: ReportContext) -> None:
    first = report(context, "attribution", conversion="Order Completed", value="revenue", model="first")
    # first: c5 -> E1. Each group 1 conversion (ties ordered by key).
    assert first == [
        {"key": "Last call (email 303)", "conversions": 1.0, "revenue": 50.0, "touches": 1},
        {"key": "Newsletter", "conversions": 1.0, "revenue": 30.0, "touches": 2},
        {"key": "Welcome aboard (email 101)", "conversions": 1.0, "revenue": 40.0, "touches": 1},
    ]
    linear = report(context, "attribution", conversion="Order Completed", value="revenue", model="linear",
                    by="email")
    # linear: c5 halves: E2 gets c3 + 0.5 = 1.5 and $30 + $20; E1 0.5 and $20.
    assert linear == [
        {"key": "202", "conversions": 1.5, "revenue": 50.0, "touches": 2},
        {"key": "303", "conversions": 1.0, "revenue": 50.0, "touches": 1},
        {"key": "101", "conversions": 0.5, "revenue": 20.0, "touches": 1},
    ]


def test_attribution_window(context: ReportContext) -> None:
    rows = report(context, "attribution", conversion="Order Completed", value="revenue", window="1d")
    # 1 day: c1 keeps E3 (23 h before); c5 keeps only E2 (20 h); c3's E2 open is 45 h before: out.
    assert rows == [
        {"key": "Last call (email 303)", "conversions": 1.0, "revenue": 50.0, "touches": 1},
        {"key": "Newsletter", "conversions": 1.0, "revenue": 40.0, "touches": 1},
    ]
    # Without --value, revenue is 0.
    assert report(context, "attribution", conversion="Order Completed", window="1d")[0]["revenue"] == 0.0


@pytest.mark.parametrize(("kind", "params", "message"), [
    ("email", {"by": "month"}, "--by must be one of campaign, email, day, week"),
    ("email", {"since": "yesterday"}, "--since must be a duration before now"),
    ("email", {"since": "1d", "until": "2d"}, "must be before --until"),
    ("email", {"source": "nope"}, "no source 'nope'"),
    ("email", {"model": "last"}, "the email report takes no model"),
    ("attribution", {}, "--conversion is required"),
    ("attribution", {"conversion": "Refund Issued"}, "no 'Refund Issued' events in the warehouse"),
    ("attribution", {"conversion": "Order Completed", "value": "price"}, "no 'Order Completed' event has a 'price'"),
    ("attribution", {"conversion": "Order Completed", "window": "0d"}, "--window must be longer than 0"),
    ("attribution", {"conversion": "Order Completed", "model": "u"}, "--model must be one of last, first, linear"),
    ("attribution", {"conversion": "Order Completed", "by": "day"}, "--by must be one of campaign, email"),
    ("funnel", {}, "no report 'funnel'"),
])
def test_bad_options(context: ReportContext, kind: str, params: dict[str, str], message: str) -> None:
    with pytest.raises(ReportError, match=message.replace("(", r"\(")):
        report(context, kind, **params)
