"""What the analytics stage reads the warehouse through: the columns each table has, and rows of a reading
query, run with the admin SQL's restrictions (read-only, time limit, row cap).

Reports are SQL built from the tables that exist (a source that never sent a bounce has no
`email_bounced` table), in the subset of SQL DuckDB and PostgreSQL share; `engine` picks the few
engine-specific spellings (`sql.py`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import duckdb

from sluice.warehouse.readonly import QueryLimits, QueryRefused, run_read_only

Columns = dict[tuple[str, str], frozenset[str]]  # (schema, table) -> its column names

_COLUMNS_SQL = (
    "SELECT table_schema, table_name, column_name FROM information_schema.columns"
    " WHERE table_schema NOT IN ('information_schema', 'pg_catalog', '_sluice')"
)


class Reader(Protocol):
    engine: str  # "duckdb" | "postgres"
    max_identifier_bytes: int

    def columns(self) -> Columns: ...

    def rows(self, sql: str) -> list[dict[str, Any]]: ...


class DuckDBReader:
    """The embedded warehouse, through connections `connect` hands out (each used for one statement)."""

    engine = "duckdb"
    max_identifier_bytes = 255

    def __init__(self, connect: Callable[[], duckdb.DuckDBPyConnection], limits: QueryLimits) -> None:
        self._connect = connect
        self._limits = limits

    def columns(self) -> Columns:
        return _group(self.rows(_COLUMNS_SQL + " AND table_catalog = current_database()"))

    def rows(self, sql: str) -> list[dict[str, Any]]:
        result = run_read_only(self._connect(), sql, self._limits)
        if result["truncated"]:
            raise QueryRefused(f"the report has more than {self._limits.max_rows:,} rows (SLUICE_QUERY_MAX_ROWS)")
        return [dict(zip(result["columns"], r, strict=True)) for r in result["rows"]]


def _group(rows: list[dict[str, Any]]) -> Columns:
    out: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        out.setdefault((r["table_schema"], r["table_name"]), set()).add(r["column_name"])
    return {k: frozenset(v) for k, v in out.items()}


class PostgresReader:
    """A PostgreSQL warehouse (a `postgres` destination): one short read-only session per statement, in
    UTC, with the admin SQL's time limit as `statement_timeout` and its row cap."""

    engine = "postgres"
    max_identifier_bytes = 63

    def __init__(self, url: str, limits: QueryLimits) -> None:
        self._url = url
        self._limits = limits

    def columns(self) -> Columns:
        return _group(self.rows(_COLUMNS_SQL + " AND table_catalog = current_database()"))

    def rows(self, sql: str) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        timeout_ms = max(1, int(self._limits.seconds * 1000))
        try:
            with (
                psycopg.connect(self._url, autocommit=True, connect_timeout=10,
                                options=f"-c TimeZone=UTC -c statement_timeout={timeout_ms}"
                                " -c default_transaction_read_only=on") as con,
                con.cursor(row_factory=dict_row) as cur,
            ):
                cur.execute(sql)  # type: ignore[arg-type]  # built from quoted identifiers and literals
                rows = cur.fetchmany(self._limits.max_rows + 1)
        except psycopg.errors.QueryCanceled:
            raise QueryRefused(f"the report ran longer than the limit of {self._limits.seconds:g} s and was stopped"
                               " (SLUICE_QUERY_TIME_LIMIT_SECONDS)") from None
        except psycopg.OperationalError as e:
            raise QueryRefused(f"the PostgreSQL warehouse cannot be reached: {str(e).splitlines()[0]}") from None
        if len(rows) > self._limits.max_rows:
            raise QueryRefused(f"the report has more than {self._limits.max_rows:,} rows (SLUICE_QUERY_MAX_ROWS)")
        return rows
