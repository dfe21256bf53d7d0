"""Every email event of the chosen schemas as one relation, each row with its person (identity.py).

The six Email spec tracks Segment's Drip Source names (reference/drip.md), each from its own table when
the source has one: kind, schema, ts, person, email_id, subject, campaign, user agent, IP.
"""

from __future__ import annotations

from collections.abc import Sequence

from sluice.analytics.identity import email_expr, person_sql
from sluice.analytics.reader import Columns
from sluice.warehouse.naming import quote_ident, sql_string

# kind -> the table Segment's Drip Source event loads into.
EMAIL_TABLES: dict[str, str] = {
    "delivered": "email_delivered",
    "opened": "email_opened",
    "clicked": "email_link_clicked",
    "unsubscribed": "email_unsubscribed",
    "bounced": "email_bounced",
    "complained": "email_marked_as_spam",
}

EMPTY = (
    "SELECT CAST(NULL AS VARCHAR) AS kind, CAST(NULL AS VARCHAR) AS src, CAST(NULL AS TIMESTAMPTZ) AS ts,"
    " CAST(NULL AS VARCHAR) AS person, CAST(NULL AS VARCHAR) AS email_id, CAST(NULL AS VARCHAR) AS subject,"
    " CAST(NULL AS VARCHAR) AS campaign, CAST(NULL AS VARCHAR) AS ua, CAST(NULL AS VARCHAR) AS ip WHERE 1 = 0"
)


def email_schemas(columns: Columns) -> list[str]:
    """The schemas that hold email events."""
    tables = set(EMAIL_TABLES.values())
    return sorted({schema for schema, table in columns if table in tables})


def _text(cols: frozenset[str], name: str) -> str:
    return f"CAST(e.{quote_ident(name)} AS VARCHAR)" if name in cols else "CAST(NULL AS VARCHAR)"


def email_events_sql(columns: Columns, schemas: Sequence[str], identity_map: str) -> str:
    """SELECT kind, src, ts, person, email_id, subject, campaign, ua, ip over every email event of `schemas`;
    `identity_map` names the relation identity_map_sql is bound to."""
    selects = []
    for schema in schemas:
        for kind, table in EMAIL_TABLES.items():
            cols = columns.get((schema, table))
            if cols is None or "timestamp" not in cols:
                continue
            selects.append(
                f"SELECT {sql_string(kind)} AS kind, {sql_string(schema)} AS src, e.\"timestamp\" AS ts,"
                f" {person_sql(cols, 'e', 'm')} AS person, {_text(cols, 'email_id')} AS email_id,"
                f" {_text(cols, 'email_subject')} AS subject, {_text(cols, 'campaign_name')} AS campaign,"
                f" {_text(cols, 'context_user_agent')} AS ua, {_text(cols, 'context_ip')} AS ip"
                f" FROM {quote_ident(schema)}.{quote_ident(table)} AS e"
                f" LEFT JOIN {identity_map} AS m ON m.email = {email_expr(cols, 'e')}"
            )
    return " UNION ALL ".join(selects) if selects else EMPTY
