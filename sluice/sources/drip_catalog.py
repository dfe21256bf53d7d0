"""What a Drip account says about its emails, fetched from Drip's REST API: broadcasts (single-email
campaigns), campaigns (email series) and workflows, each listed in full through the pages, and the one
documented link from an email to where it came from: the email metrics endpoint pairs an `email_id` with
its `broadcast_id` and `title` (only for broadcasts; reference/email-metrics.md).

That endpoint answers at most the 10 most recent emails of a range and 20 calls an hour, so the link is
fetched one week at a time for `METRICS_WEEKS` weeks: 4 of those 20 calls per sync."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sluice.sources.drip_api import DripAPI

METRICS_WEEKS = 4
LISTINGS = ("broadcasts", "campaigns", "workflows")


@dataclass
class DripCatalog:
    broadcasts: list[dict[str, Any]] = field(default_factory=list)
    campaigns: list[dict[str, Any]] = field(default_factory=list)
    workflows: list[dict[str, Any]] = field(default_factory=list)
    # (email_id, broadcast_id, title), from the email metrics endpoint.
    email_broadcasts: list[tuple[str, str, str | None]] = field(default_factory=list)


def fetch_catalog(api: DripAPI, today: date) -> DripCatalog:
    catalog = DripCatalog()
    for name in LISTINGS:
        # Every broadcast, deleted ones included: an email of a since-deleted broadcast is still placed.
        params = {"status": "all"} if name == "broadcasts" else {}
        setattr(catalog, name, list(api.pages(f"/{name}", name, params)))
    seen: set[str] = set()
    for week in range(METRICS_WEEKS):
        end = today - timedelta(days=7 * week)
        start = end - timedelta(days=6)
        data = api.request("GET", "/metrics/email", params={"start_date": start.isoformat(),
                                                            "end_date": end.isoformat()}) or {}
        for email in data.get("emails") or []:
            email_id, broadcast_id = email.get("email_id"), email.get("broadcast_id")
            if email_id is None or broadcast_id in (None, "") or str(email_id) in seen:
                continue
            seen.add(str(email_id))
            catalog.email_broadcasts.append((str(email_id), str(broadcast_id), email.get("title")))
    return catalog
