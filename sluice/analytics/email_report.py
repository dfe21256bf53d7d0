"""`sluice report email`: Drip's email metrics per campaign, email, day or week (docs/reports.md).

A delivery is a (person, email) pair with an `Email Delivered`; unique opens, clicks, unsubscribes, hard
bounces and complaints are distinct (person, email) pairs too, so every rate is over the group's
deliveries (Drip's rule: reference/email-metrics.md) and 0 when it has none. A pair belongs to the
period and the day of its delivery (of its first event when it was never delivered).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sluice.analytics.engagement import engagement_ctes
from sluice.analytics.periods import sql_time
from sluice.analytics.reader import Reader

GROUPS: dict[str, str] = {
    "campaign": "COALESCE(l.campaign, '(no email id)')",
    "email": "COALESCE(p.email_id, '(no email id)')",
    "day": "CAST(p.anchor AS DATE)",
    "week": "CAST(date_trunc('week', p.anchor) AS DATE)",
}
COMPLAINT_WARNING = 0.001  # Gmail's bulk-sender guidance: stay below 0.10 % ...
COMPLAINT_CRITICAL = 0.003  # ... and never reach 0.30 % (support.google.com/a/answer/81126)
RATE_PLACES = 4  # Drip's metrics endpoint rounds its rates to 4 places

KEYS = ("key", "deliveries", "unique_opens", "open_rate", "unique_clicks", "click_rate", "click_to_open_rate",
        "bot_clicks", "unsubscribes", "unsubscribe_rate", "hard_bounces", "hard_bounce_rate", "complaints",
        "complaint_rate", "complaint_alert")


def email_report_sql(reader: Reader, schemas: Sequence[str], by: str, since: datetime, until: datetime) -> str:
    ctes = engagement_ctes(reader.columns(), schemas)
    order = "key" if by in ("day", "week") else "deliveries DESC, key"
    return f"""{ctes},
pairs AS (SELECT person, email_id,
  COALESCE(min(CASE WHEN kind = 'delivered' THEN ts END), min(ts)) AS anchor,
  max(CASE WHEN kind = 'delivered' THEN 1 ELSE 0 END) AS delivered,
  max(CASE WHEN kind = 'opened' THEN 1 ELSE 0 END) AS opened,
  max(CASE WHEN kind = 'clicked' AND bot = 0 THEN 1 ELSE 0 END) AS clicked,
  sum(CASE WHEN kind = 'clicked' AND bot = 1 THEN 1 ELSE 0 END) AS bot_clicks,
  max(CASE WHEN kind = 'unsubscribed' THEN 1 ELSE 0 END) AS unsubscribed,
  max(CASE WHEN kind = 'bounced' THEN 1 ELSE 0 END) AS bounced,
  max(CASE WHEN kind = 'complained' THEN 1 ELSE 0 END) AS complained
  FROM flagged GROUP BY person, email_id)
SELECT {GROUPS[by]} AS key, sum(p.delivered) AS deliveries, sum(p.opened) AS unique_opens,
  sum(p.clicked) AS unique_clicks, sum(p.bot_clicks) AS bot_clicks, sum(p.unsubscribed) AS unsubscribes,
  sum(p.bounced) AS hard_bounces, sum(p.complained) AS complaints
FROM pairs AS p LEFT JOIN labels AS l ON l.email_id = p.email_id
WHERE p.anchor >= {sql_time(since)} AND p.anchor < {sql_time(until)}
GROUP BY 1 ORDER BY {order}"""


def rate(part: int, whole: int) -> float:
    return round(part / whole, RATE_PLACES) if whole else 0.0


def complaint_alert(complaints: int, deliveries: int) -> str | None:
    """Compared unrounded: 1 complaint in 1,001 deliveries is under 0.1 %, though it rounds to 0.001."""
    if not deliveries:
        return None
    share = complaints / deliveries
    return "critical" if share >= COMPLAINT_CRITICAL else "warning" if share >= COMPLAINT_WARNING else None


def email_row(raw: dict[str, Any]) -> dict[str, Any]:
    key = raw["key"]
    n = {k: int(raw[k] or 0) for k in ("deliveries", "unique_opens", "unique_clicks", "bot_clicks", "unsubscribes",
                                       "hard_bounces", "complaints")}
    d = n["deliveries"]
    row = {
        "key": key.isoformat() if isinstance(key, date) else str(key),
        "deliveries": d,
        "unique_opens": n["unique_opens"],
        "open_rate": rate(n["unique_opens"], d),
        "unique_clicks": n["unique_clicks"],
        "click_rate": rate(n["unique_clicks"], d),
        "click_to_open_rate": rate(n["unique_clicks"], n["unique_opens"]),
        "bot_clicks": n["bot_clicks"],
        "unsubscribes": n["unsubscribes"],
        "unsubscribe_rate": rate(n["unsubscribes"], d),
        "hard_bounces": n["hard_bounces"],
        "hard_bounce_rate": rate(n["hard_bounces"], d),
        "complaints": n["complaints"],
        "complaint_rate": rate(n["complaints"], d),
        "complaint_alert": complaint_alert(n["complaints"], d),
    }
    assert tuple(row) == KEYS
    return row


def email_report(reader: Reader, schemas: Sequence[str], by: str, since: datetime,
                 until: datetime) -> list[dict[str, Any]]:
    if not schemas:
        return []
    return [email_row(r) for r in reader.rows(email_report_sql(reader, schemas, by, since, until))]
