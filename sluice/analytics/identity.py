"""The identity map: one person per email address across every source of a warehouse.

Drip sends `userId` when it knows one and the email as `anonymousId` otherwise (reference/drip.md), so
the same person arrives under two ids. The map pairs each email (lower-cased, trimmed) with the userId
that last claimed it, from:
- identifies (`traits.email`, or `context.traits.email`), Drip's subscriber identifies among them;
- any track that carries both a userId and `context.traits.email`.
An email claimed by two userIds follows the most recent claim; `user_ids` > 1 counts the conflict.

`identity_map_sql` is the map as one SELECT (email, user_id, last_seen_at, user_ids), for reports and
for anyone's SQL (docs/reports.md); `person_sql` is the one rule that turns an event row into a person.
"""

from __future__ import annotations

from sluice.analytics.reader import Columns
from sluice.warehouse.naming import quote_ident

EMPTY_MAP = (
    "SELECT CAST(NULL AS VARCHAR) AS email, CAST(NULL AS VARCHAR) AS user_id,"
    " CAST(NULL AS TIMESTAMPTZ) AS last_seen_at, 0 AS user_ids WHERE 1 = 0"
)


def email_expr(columns: frozenset[str], alias: str, trait_column: str | None = None) -> str:
    """The event's email address, lower-cased: its trait, else an anonymousId that is an address."""
    parts = []
    for name in (trait_column, "context_traits_email"):
        if name and name in columns:
            parts.append(f"{alias}.{quote_ident(name)}")
    if "anonymous_id" in columns:
        parts.append(f"CASE WHEN {alias}.anonymous_id LIKE '%_@_%' THEN {alias}.anonymous_id END")
    if not parts:
        return "CAST(NULL AS VARCHAR)"
    inner = parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})"
    return f"NULLIF(lower(trim(CAST({inner} AS VARCHAR))), '')"


def _links(columns: Columns) -> list[str]:
    selects = []
    for (schema, table), cols in sorted(columns.items()):
        if table not in ("identifies", "tracks") or "user_id" not in cols or "timestamp" not in cols:
            continue
        email = email_expr(cols - {"anonymous_id"}, "t", "email" if table == "identifies" else None)
        if email == "CAST(NULL AS VARCHAR)":
            continue
        selects.append(
            f"SELECT {email} AS email, CAST(t.user_id AS VARCHAR) AS user_id, t.\"timestamp\" AS seen_at"
            f" FROM {quote_ident(schema)}.{quote_ident(table)} AS t WHERE t.user_id IS NOT NULL"
        )
    return selects


def identity_map_sql(columns: Columns) -> str:
    """SELECT email, user_id, last_seen_at, user_ids: one row per email known with a userId."""
    links = _links(columns)
    if not links:
        return EMPTY_MAP
    union = " UNION ALL ".join(links)
    return (
        f"SELECT r.email, r.user_id, r.seen_at AS last_seen_at, c.user_ids FROM"
        f" (SELECT email, user_id, seen_at, row_number() OVER (PARTITION BY email ORDER BY seen_at DESC, user_id DESC)"
        f" AS rn FROM ({union}) AS l WHERE email IS NOT NULL) AS r"
        f" JOIN (SELECT email, count(DISTINCT user_id) AS user_ids FROM ({union}) AS l WHERE email IS NOT NULL"
        f" GROUP BY email) AS c ON c.email = r.email WHERE r.rn = 1"
    )


def person_sql(columns: frozenset[str], alias: str, map_alias: str) -> str:
    """The person an event row belongs to: its userId; else the userId its email maps to; else its email;
    else its anonymousId. Needs `LEFT JOIN identity_map AS <map_alias> ON <map_alias>.email = <email_expr>`."""
    parts = []
    if "user_id" in columns:
        parts.append(f"CAST({alias}.user_id AS VARCHAR)")
    parts.append(f"{map_alias}.user_id")
    parts.append(f"'email:' || {email_expr(columns, alias)}")
    if "anonymous_id" in columns:
        parts.append(f"'anon:' || CAST({alias}.anonymous_id AS VARCHAR)")
    return f"COALESCE({', '.join(parts)})"
