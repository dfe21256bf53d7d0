"""Links from an email to its campaign that the Drip catalog sync stored (none until a sync has run)."""

from __future__ import annotations

from collections.abc import Sequence

from sluice.analytics.reader import Columns

EMPTY = "SELECT CAST(NULL AS VARCHAR) AS email_id, CAST(NULL AS VARCHAR) AS campaign WHERE 1 = 0"


def campaign_links_sql(columns: Columns, schemas: Sequence[str]) -> str:
    """SELECT email_id, campaign: what the synced Drip catalog says about each email."""
    return EMPTY
