"""`sluice report reconcile`: sluice's email counts beside Drip's own (`GET /v2/:account_id/metrics/email`),
for the same days, to check that no webhook was missed (docs/reports.md).

Drip answers a `summary` over every send of the range and per-email metrics for at most the 10 most recent
emails; sluice's side is the email report's (person, email) pairs over the same UTC days, summed for the
total and per email for the emails Drip lists. Each metric is one row with both numbers and the
difference (sluice minus Drip)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sluice.analytics.email_report import email_report
from sluice.analytics.reader import Reader

# Drip's metric -> the email report's count of the same thing.
METRICS: dict[str, str] = {
    "deliveries": "deliveries",
    "opens": "unique_opens",
    "clicks": "unique_clicks",
    "bot_clicks": "bot_clicks",
    "unsubscribes": "unsubscribes",
    "hard_bounces": "hard_bounces",
    "complaints": "complaints",
}


def _rows(key: str, title: str | None, ours: dict[str, int], theirs: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for drip_name, our_name in METRICS.items():
        drip = theirs.get(drip_name)
        sluice = ours.get(our_name, 0)
        out.append({"key": key, "title": title, "metric": drip_name, "sluice": sluice,
                    "drip": None if drip is None else int(drip),
                    "difference": None if drip is None else sluice - int(drip)})
    return out


def reconcile(reader: Reader, schemas: Sequence[str], drip: dict[str, Any], since: datetime,
              until: datetime) -> list[dict[str, Any]]:
    """`drip`: the metrics endpoint's answer for the days since..until."""
    per_email = {r["key"]: r for r in email_report(reader, schemas, "email", since, until)}
    total = {name: sum(int(r[name]) for r in per_email.values()) for name in METRICS.values()}
    rows = _rows("total", None, total, drip.get("summary") or {})
    for email in drip.get("emails") or []:
        email_id = str(email.get("email_id"))
        rows += _rows(email_id, email.get("title"), per_email.get(email_id, {}), email.get("email_metric") or {})
    return rows
