"""Links from an email to its campaign that the Drip catalog sync stored (none until a sync has run)."""

from __future__ import annotations

from collections.abc import Sequence

from sluice.analytics.reader import Columns
from sluice.warehouse.naming import quote_ident

EMPTY = "SELECT CAST(NULL AS VARCHAR) AS email_id, CAST(NULL AS VARCHAR) AS campaign WHERE 1 = 0"


def campaign_links_sql(columns: Columns, schemas: Sequence[str]) -> str:
    """SELECT email_id, campaign: what the synced Drip catalog says about each email (sluice/warehouse/
    drip_catalog.py): the name of the broadcast the metrics endpoint pairs it with, else that entry's title."""
    selects = []
    for schema in schemas:
        if (schema, "_drip_email_broadcasts") not in columns:
            continue
        s = quote_ident(schema)
        broadcasts = (
            f" LEFT JOIN {s}._drip_broadcasts AS b ON b.id = l.broadcast_id"
            if (schema, "_drip_broadcasts") in columns else ""
        )
        name = "COALESCE(b.name, l.title)" if broadcasts else "l.title"
        selects.append(f"SELECT l.email_id, {name} AS campaign FROM {s}._drip_email_broadcasts AS l{broadcasts}")
    return " UNION ALL ".join(selects) if selects else EMPTY
