"""`sluice report attribution`: conversions credited to the emails a person opened or clicked (bot clicks
left out) within the window before converting, through the identity map (docs/reports.md).

Candidates are (conversion, email) pairs: an email touched by the converting person at most `window`
before the conversion (never after it). Models:
- last: the whole conversion to the email touched last (ties: the higher email id);
- first: to the email touched first (ties: the lower email id);
- linear: 1/n to each of the n emails touched in the window.
`touches` counts a group's candidate pairs, whichever model credits them; `revenue` sums the conversion's
`value` property (in its own unit) by the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sluice.analytics.engagement import engagement_ctes
from sluice.analytics.identity import email_expr, person_sql
from sluice.analytics.periods import sql_interval, sql_time
from sluice.analytics.reader import Columns, Reader
from sluice.warehouse.naming import column_name, quote_ident, sql_string, table_name

MODELS = ("last", "first", "linear")
GROUPS = {"campaign": "COALESCE(l.campaign, r.email_id)", "email": "r.email_id"}
_WEIGHT = {
    "last": "CASE WHEN r.r_last = 1 THEN 1.0 ELSE 0.0 END",
    "first": "CASE WHEN r.r_first = 1 THEN 1.0 ELSE 0.0 END",
    "linear": "1.0 / r.n_emails",
}
_DOUBLE = {"duckdb": "DOUBLE", "postgres": "DOUBLE PRECISION"}


class NoConversions(ValueError):
    """The conversion event or its value property is nowhere in the warehouse."""


def conversions_sql(reader: Reader, columns: Columns, event: str, value: str | None) -> str:
    """SELECT conv_id, ts, person, value for every `event` in any schema of the warehouse."""
    table = table_name(event, reader.max_identifier_bytes)
    value_col = column_name([value], reader.max_identifier_bytes) if value else None
    selects, with_value = [], 0
    for (schema, t), cols in sorted(columns.items()):
        if t != table or "timestamp" not in cols:
            continue
        if value_col and value_col in cols:
            amount = f"COALESCE(CAST(e.{quote_ident(value_col)} AS {_DOUBLE[reader.engine]}), 0)"
            with_value += 1
        else:
            amount = "0"
        selects.append(
            f"SELECT {sql_string(schema + '.')} || CAST(e.id AS VARCHAR) AS conv_id, e.\"timestamp\" AS ts,"
            f" {person_sql(cols, 'e', 'm')} AS person, {amount} AS value"
            f" FROM {quote_ident(schema)}.{quote_ident(t)} AS e"
            f" LEFT JOIN identity_map AS m ON m.email = {email_expr(cols, 'e')}"
        )
    if not selects:
        raise NoConversions(f"no {event!r} events in the warehouse (looked for tables named {table})")
    if value and not with_value:
        raise NoConversions(f"no {event!r} event has a {value!r} property (looked for a column {value_col})")
    return " UNION ALL ".join(selects)


def attribution_sql(reader: Reader, schemas: Sequence[str], event: str, value: str | None, window: timedelta,
                    model: str, by: str, since: datetime, until: datetime) -> str:
    columns = reader.columns()
    conversions = conversions_sql(reader, columns, event, value)
    return f"""{engagement_ctes(columns, schemas)},
conv AS (SELECT * FROM ({conversions}) AS c WHERE c.ts >= {sql_time(since)} AND c.ts < {sql_time(until)}),
touch AS (SELECT person, email_id, ts FROM flagged
  WHERE kind IN ('opened', 'clicked') AND bot = 0 AND email_id IS NOT NULL),
cand AS (SELECT c.conv_id, c.value, t.email_id, max(t.ts) AS last_ts, min(t.ts) AS first_ts
  FROM conv AS c JOIN touch AS t ON t.person = c.person AND t.ts <= c.ts AND t.ts >= c.ts - {sql_interval(window)}
  GROUP BY c.conv_id, c.value, t.email_id),
ranked AS (SELECT cand.*,
  row_number() OVER (PARTITION BY conv_id ORDER BY last_ts DESC, email_id DESC) AS r_last,
  row_number() OVER (PARTITION BY conv_id ORDER BY first_ts, email_id) AS r_first,
  count(*) OVER (PARTITION BY conv_id) AS n_emails FROM cand)
SELECT {GROUPS[by]} AS key, sum({_WEIGHT[model]}) AS conversions, sum({_WEIGHT[model]} * r.value) AS revenue,
  count(*) AS touches
FROM ranked AS r LEFT JOIN labels AS l ON l.email_id = r.email_id
GROUP BY 1 ORDER BY conversions DESC, key"""


def attribution(reader: Reader, schemas: Sequence[str], event: str, value: str | None, window: timedelta,
                model: str, by: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    sql = attribution_sql(reader, schemas, event, value, window, model, by, since, until)
    return [
        {"key": str(r["key"]), "conversions": round(float(r["conversions"]), 6),
         "revenue": round(float(r["revenue"] or 0), 6), "touches": int(r["touches"])}
        for r in reader.rows(sql)
    ]
