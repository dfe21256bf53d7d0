"""Which email clicks count as a machine's (security scanners, link previews), counted apart.

Drip's click webhooks carry `user_agent` and `ip_address` (reference/email-metrics.md), so a click is a
bot click when any of these holds (the heuristics scanners are known by: mautic#9798, Klaviyo's "exclude
bot interactions"):
1. its user agent names a crawler, scanner or headless browser (`BOT_AGENT_WORDS`);
2. it came within `FAST_CLICK_SECONDS` of the delivery of the same email to the same person;
3. its IP clicked the same email for `CROWD_PEOPLE` or more different people.
Drip's opens carry no user agent or IP, so Apple's machine opens (Mail Privacy Protection) cannot be told
apart: opens are reported as they come, and docs/reports.md says so.
"""

from __future__ import annotations

from sluice.warehouse.naming import sql_string

BOT_AGENT_WORDS = (
    "bot", "spider", "crawl", "headless", "scanner", "python-requests", "python-urllib", "curl/", "wget",
    "go-http-client", "okhttp", "java/", "proofpoint", "mimecast", "barracuda", "symantec", "safelinks",
)
FAST_CLICK_SECONDS = 2
CROWD_PEOPLE = 5


def bot_agent_sql(ua: str) -> str:
    """True when the user agent `ua` (an SQL expression) names a machine."""
    return "(" + " OR ".join(f"lower({ua}) LIKE {sql_string('%' + w + '%')}" for w in BOT_AGENT_WORDS) + ")"
