"""What a source's warehouse schema holds: tables, columns with types, row counts, last load, discards.
All through the read-only query path, so it reads the same whichever process asks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sluice.services.sources import Query
from sluice.warehouse.naming import quote_ident, sql_string


@dataclass
class Table:
    name: str
    columns: list[tuple[str, str]] = field(default_factory=list)  # (name, type) in table order
    rows: int = 0
    last_load: Any = None
    discards: int = 0  # values of this table's rows kept in <schema>.discards instead


def describe(query: Query, schema: str) -> list[Table]:
    cols = query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        f" WHERE table_schema = {sql_string(schema)} ORDER BY table_name, ordinal_position"
    )["rows"]
    tables: dict[str, Table] = {}
    for table, column, type_ in cols:
        tables.setdefault(table, Table(table)).columns.append((column, type_))
    if not tables:
        return []
    parts = [
        f"SELECT {sql_string(t.name)} AS t, count(*) AS n, "
        + ("max(loaded_at)" if any(c == "loaded_at" for c, _ in t.columns) else "NULL")
        + f" AS last FROM {quote_ident(schema)}.{quote_ident(t.name)}"
        for t in tables.values()
    ]
    for name, n, last in query(" UNION ALL ".join(parts))["rows"]:
        tables[name].rows, tables[name].last_load = int(n), last
    if "discards" in tables:
        for name, n in query(f"SELECT table_name, count(*) FROM {quote_ident(schema)}.discards GROUP BY 1")["rows"]:
            if name in tables:
                tables[name].discards = int(n)
    return list(tables.values())
