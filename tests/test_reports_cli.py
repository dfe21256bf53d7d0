"""`sluice report` and `GET /api/reports/...` on a real server, and the same CLI on the warehouse file once
the server is stopped: the same answers both ways, numbers worked out by hand."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from conftest import Sluice, poll

AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
E1 = {"email_id": "101", "email_subject": "Welcome aboard"}


def at(minutes: int) -> str:
    return (AT + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def hook(event: str, email: str, minutes: int, **props: Any) -> dict[str, Any]:
    return {"event": event, "occurred_at": at(minutes),
            "data": {"account_id": "9999999", "subscriber": {"email": email}, "properties": props}}


# E1 delivered to Ann, Bob and Cy (3); Ann opens (1: 0.3333); Bob clicks (1: 0.3333; click-to-open 1/1 = 1.0);
# Dee bounces (1: 0.3333). Bob (by email here) is u2 in the product, who orders $25 an hour after his click.
HOOKS = [
    hook("subscriber.received_email", "ann@x.com", 0, **E1),
    hook("subscriber.received_email", "bob@x.com", 0, **E1),
    hook("subscriber.received_email", "cy@x.com", 0, **E1),
    hook("subscriber.opened_email", "ann@x.com", 30, **E1),
    hook("subscriber.clicked_email", "bob@x.com", 40, url="https://x", user_agent="Mozilla/5.0 (X11) Firefox/125",
         ip_address="203.0.113.9", **E1),
    hook("subscriber.bounced", "dee@x.com", 1, **E1),
]
EMAIL_ROW = {"key": "Welcome aboard (email 101)", "deliveries": 3, "unique_opens": 1, "open_rate": 0.3333,
             "unique_clicks": 1, "click_rate": 0.3333, "click_to_open_rate": 1.0, "bot_clicks": 0, "unsubscribes": 0,
             "unsubscribe_rate": 0.0, "hard_bounces": 1, "hard_bounce_rate": 0.3333, "complaints": 0,
             "complaint_rate": 0.0, "complaint_alert": None}
ATTRIBUTION_ROW = {"key": "Welcome aboard (email 101)", "conversions": 1.0, "revenue": 25.0, "touches": 1}


def test_reports_with_and_without_server(sluice: Sluice) -> None:
    drip = sluice.create_source("drip", "drip")
    web = sluice.create_source("http", "web")
    # The printed URL is the running server's real address (not the default port), and says it is private.
    assert drip["webhook_url"].startswith(f"{sluice.url}/webhooks/drip/")
    assert "Drip (a hosted service) cannot reach it" in sluice.cli("sources", "show", "drip").stderr
    hook_url = drip["webhook_url"]
    for body in HOOKS:
        assert httpx.post(hook_url, json=body).status_code == 200
    batch = {"batch": [
        {"type": "identify", "userId": "u2", "traits": {"email": "Bob@X.com"}, "timestamp": at(-60)},
        {"type": "track", "userId": "u2", "event": "Order Completed", "properties": {"revenue": 25},
         "timestamp": at(100)},
    ]}
    assert httpx.post(f"{sluice.url}/v1/batch", json=batch, auth=(web["write_key"], "")).status_code == 200
    poll(sluice, "select * from drip.tracks", len(HOOKS))
    poll(sluice, "select * from web.order_completed", 1)

    served = orjson.loads(sluice.cli("report", "email", "--format", "json").stdout)
    assert served == [EMAIL_ROW]
    attribution = ["report", "attribution", "--conversion", "Order Completed", "--value", "revenue", "--format", "json"]
    assert orjson.loads(sluice.cli(*attribution).stdout) == [ATTRIBUTION_ROW]

    # The API: the admin token, parameters named as the options, a clear 400.
    api = f"{sluice.admin_url}/api/reports/email"
    assert httpx.get(api).status_code == 401
    token = {"Authorization": f"Bearer {(sluice.data_dir / 'admin-token').read_text().strip()}"}
    r = httpx.get(api, params={"by": "email", "source": "drip"}, headers=token)
    assert r.status_code == 200 and r.json() == [{**EMAIL_ROW, "key": "101"}]
    r = httpx.get(api, params={"by": "month"}, headers=token)
    assert r.status_code == 400 and "--by must be one of campaign, email, day, week" in r.json()["error"]
    bad = sluice.cli("report", "attribution", "--conversion", "Refund", check=False)
    assert bad.returncode == 1 and "no 'Refund' events in the warehouse" in bad.stderr

    # The identity map as a view anyone's SQL can use (re-created as tables appear).
    assert poll(sluice, "select email, user_id, user_ids from _sluice.identity_map", 1) == [
        {"email": "bob@x.com", "user_id": "u2", "user_ids": 1}]

    sluice.stop()
    assert orjson.loads(sluice.cli("report", "email", "--format", "json").stdout) == served
    assert orjson.loads(sluice.cli(*attribution).stdout) == [ATTRIBUTION_ROW]
    rows = list(csv.DictReader(io.StringIO(sluice.cli("report", "email", "--by", "day", "--format", "csv").stdout)))
    assert rows[0]["key"] == AT.date().isoformat() and rows[0]["deliveries"] == "3" and rows[0]["open_rate"] == "0.3333"
    table = sluice.cli("report", "email")
    assert "33.33%" in table.stdout and "Apple Mail Privacy Protection" in table.stderr
