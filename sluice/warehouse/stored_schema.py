"""What a warehouse knows of its tables, stored beside its data (as dlt keeps its schema).

Each warehouse keeps `_sluice.columns(schema_name, table_name, column_name, column_type, ordinal)`,
written in the same transaction as the DDL it describes, and read when the warehouse opens. The
loader plans from it and from nothing else: no cache of another batch, source or process decides a
column's type. Tables found in the database but not in the store (a warehouse written by sluice
0.1, or created by hand) are adopted from information_schema when the warehouse opens; stored
tables that no longer exist are forgotten.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from sluice.warehouse.types import ColType, from_sql_type

META = "_sluice"
COLUMNS_TABLE = f"{META}.columns"
# Schemas that are never a source's.
SYSTEM_SCHEMAS = ("information_schema", "pg_catalog", "pg_toast", "main", "public", META)

Row = tuple[str, str, str, str]  # schema, table, column, type as the database names it


class StoredSchema:
    """The in-memory copy: schema -> table -> column -> type. Updated only after a commit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._schemas: dict[str, dict[str, dict[str, ColType]]] = {}

    def tables(self, schema: str) -> dict[str, dict[str, ColType]]:
        """A snapshot of one schema's tables (safe to read while another schema loads)."""
        with self._lock:
            return {t: dict(cols) for t, cols in self._schemas.get(schema, {}).items()}

    def committed(self, schema: str, tables: Mapping[str, Mapping[str, ColType]]) -> None:
        with self._lock:
            known = self._schemas.setdefault(schema, {})
            for table, cols in tables.items():
                known[table] = dict(cols)

    def replace(self, stored: Iterable[tuple[str, str, str, str]]) -> None:
        """Everything, from `_sluice.columns` rows (schema, table, column, ColType value) in ordinal order."""
        schemas: dict[str, dict[str, dict[str, ColType]]] = {}
        for schema, table, column, type_ in stored:
            schemas.setdefault(schema, {}).setdefault(table, {})[column] = ColType(type_)
        with self._lock:
            self._schemas = schemas


def reconcile(stored: list[tuple[str, str, str, str, int]], actual: list[Row]) -> tuple[
    list[tuple[str, str, str, str, int]], list[tuple[str, str]]
]:
    """What to add to and remove from the store so it matches the database's tables.

    `stored`: (schema, table, column, ColType value, ordinal) rows of `_sluice.columns`;
    `actual`: information_schema's (schema, table, column, data type) in ordinal order.
    Returns (rows to insert, (schema, table) pairs to delete)."""
    stored_tables = {(s, t) for s, t, *_ in stored}
    actual_cols: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, type_ in actual:
        if schema in SYSTEM_SCHEMAS:
            continue
        actual_cols.setdefault((schema, table), []).append((column, type_))
    add = []
    for key, cols in actual_cols.items():
        if key in stored_tables:
            continue
        add += [(key[0], key[1], c, from_sql_type(t).value, i) for i, (c, t) in enumerate(cols)]
    drop = sorted(stored_tables - set(actual_cols))
    return add, drop


def without_uuid_ts(adopted: list[tuple[str, str, str, str, int]]) -> list[tuple[str, str, int]]:
    """Adopted tables written by sluice 0.1 (a `loaded_at`, no `uuid_ts`): (schema, table, next ordinal).
    They get `uuid_ts` when adopted, filled from `loaded_at`, so every table has it."""
    cols: dict[tuple[str, str], set[str]] = {}
    for schema, table, column, _, _ in adopted:
        cols.setdefault((schema, table), set()).add(column)
    return [(s, t, len(c)) for (s, t), c in cols.items() if "loaded_at" in c and "uuid_ts" not in c]
