"""The SQL both reports start from: every email event placed on a (person, email) pair, clicks flagged.

- An unsubscribe without an email id (Drip's `unsubscribed_all`, a campaign unsubscribe) is placed on
  the last email delivered to that person before it; one with no earlier delivery keeps no email id.
- `bot` marks the clicks bots.py recognises.
- `labels` names each email's campaign: a campaign name an event of that email carried (Segment's Drip
  integration sends `campaign_name`), else one the Drip catalog sync knows, else `<subject> (email <id>)`,
  so an email that cannot be placed is its own row, never dropped (and two emails with one subject, or a
  subject personalised per recipient, stay one row per email).
"""

from __future__ import annotations

from collections.abc import Sequence

from sluice.analytics.bots import CROWD_PEOPLE, FAST_CLICK_SECONDS, bot_agent_sql
from sluice.analytics.catalog_links import campaign_links_sql
from sluice.analytics.email_events import email_events_sql
from sluice.analytics.identity import identity_map_sql
from sluice.analytics.reader import Columns


def engagement_ctes(columns: Columns, schemas: Sequence[str]) -> str:
    """`WITH identity_map, ev, deliveries, placed, crowd, flagged, labels` (no trailing comma)."""
    links = campaign_links_sql(columns, schemas)
    known = f"(SELECT email_id, max(campaign) AS campaign FROM ({links}) AS k GROUP BY email_id)"
    return f"""WITH identity_map AS ({identity_map_sql(columns)}),
ev AS ({email_events_sql(columns, schemas, 'identity_map')}),
deliveries AS (SELECT person, email_id, min(ts) AS delivered_at FROM ev
  WHERE kind = 'delivered' AND email_id IS NOT NULL GROUP BY person, email_id),
placed AS (SELECT e.kind, e.ts, e.person, e.ua, e.ip,
  CASE WHEN e.kind = 'unsubscribed' AND e.email_id IS NULL THEN
    (SELECT d.email_id FROM deliveries AS d WHERE d.person = e.person AND d.delivered_at <= e.ts
     ORDER BY d.delivered_at DESC, d.email_id DESC LIMIT 1)
  ELSE e.email_id END AS email_id FROM ev AS e),
crowd AS (SELECT email_id, ip FROM placed WHERE kind = 'clicked' AND ip IS NOT NULL AND email_id IS NOT NULL
  GROUP BY email_id, ip HAVING count(DISTINCT person) >= {CROWD_PEOPLE}),
flagged AS (SELECT p.kind, p.ts, p.person, p.email_id,
  CASE WHEN p.kind = 'clicked' AND ({bot_agent_sql('p.ua')}
    OR p.ts <= d.delivered_at + INTERVAL '{FAST_CLICK_SECONDS} seconds' OR c.ip IS NOT NULL)
  THEN 1 ELSE 0 END AS bot
  FROM placed AS p
  LEFT JOIN deliveries AS d ON d.person = p.person AND d.email_id = p.email_id
  LEFT JOIN crowd AS c ON c.email_id = p.email_id AND c.ip = p.ip),
labels AS (SELECT e.email_id, COALESCE(max(e.campaign), max(k.campaign),
    min(e.subject) || ' (email ' || e.email_id || ')', e.email_id) AS campaign
  FROM ev AS e LEFT JOIN {known} AS k ON k.email_id = e.email_id
  WHERE e.email_id IS NOT NULL GROUP BY e.email_id)"""
