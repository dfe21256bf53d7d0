"""The embedded warehouse: a DuckDB file in the data dir, loaded in Segment's schema.

Staging and target are the same DuckDB database, so each table's rows go straight from the
batch's JSON into the table with one INSERT ... SELECT. DuckDB allows one writing process: the
server owns the file while it runs and answers `sluice query` through its admin endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from sluice.warehouse.loader import Warehouse
from sluice.warehouse.naming import quote_ident
from sluice.warehouse.plan import DISCARD_COLUMNS, DISCARDS, LOADED_AT, Dialect, TablePlan
from sluice.warehouse.readonly import LOCKED_DOWN, QueryLimits, lock, run_read_only
from sluice.warehouse.types import DUCKDB_TYPES, ColType, from_sql_type

_META = "_sluice"


def _cols_ddl(columns: Sequence[tuple[str, ColType]]) -> str:
    return ", ".join(f"{quote_ident(n)} {DUCKDB_TYPES[t]}" for n, t in columns)


class DuckDBWarehouse(Warehouse):
    dialect = Dialect("duckdb", max_identifier_bytes=255, max_columns=5000)

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Locked down (readonly.py): admin SQL shares this instance, and must reach nothing outside it.
        self._db = lock(utc(duckdb.connect(str(path), config={"checkpoint_threshold": "64MB", **LOCKED_DOWN})))
        self._con = self._db.cursor()  # the loading connection
        self._db.execute(f"CREATE SCHEMA IF NOT EXISTS {_META}")
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {_META}.cursors"
            " (consumer VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, high_seq BIGINT NOT NULL)"
        )

    @property
    def staging_connection(self) -> duckdb.DuckDBPyConnection:
        return self._con

    def position(self, consumer: str) -> tuple[int, int]:
        rows = self._db.cursor().execute(
            f"SELECT seq, high_seq FROM {_META}.cursors WHERE consumer = ?", [consumer]
        ).fetchall()
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def _read_columns(self, schema: str, table: str) -> dict[str, ColType] | None:
        rows = self._con.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
        return {name: from_sql_type(t) for name, t in rows} if rows else None

    def _begin(self) -> None:
        self._con.execute("BEGIN")

    def _commit(self) -> None:
        self._con.execute("COMMIT")

    def _rollback(self) -> None:
        self._con.execute("ROLLBACK")

    def _set_cursor(self, consumer: str, seq: int) -> None:
        self._con.execute(
            f"INSERT INTO {_META}.cursors VALUES (?, ?, ?) ON CONFLICT (consumer)"
            " DO UPDATE SET seq = excluded.seq, high_seq = greatest(high_seq, excluded.high_seq)",
            [consumer, seq, seq],
        )

    def _prepare(self, schema: str, plans: list[TablePlan]) -> None:
        s = quote_ident(schema)
        self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        self._con.execute(f"CREATE TABLE IF NOT EXISTS {s}.{DISCARDS} ({_cols_ddl(DISCARD_COLUMNS)})")
        for plan in plans:
            t = f"{s}.{quote_ident(plan.name)}"
            if not plan.exists:
                cols = [(c.name, c.type) for c in plan.columns.values() if c.type is not None]
                pk = ", PRIMARY KEY (id)" if plan.kind.upsert else ""
                self._con.execute(f"CREATE TABLE {t} ({_cols_ddl([*cols, (LOADED_AT, ColType.TIMESTAMP)])}{pk})")
                continue
            for c in plan.new_columns:
                assert c.type is not None
                self._con.execute(f"ALTER TABLE {t} ADD COLUMN {quote_ident(c.name)} {DUCKDB_TYPES[c.type]}")

    def _write(self, schema: str, plan: TablePlan, dedupe: bool, received_ms: tuple[int, int]) -> int:
        s = quote_ident(schema)
        t = f"{s}.{quote_ident(plan.name)}"
        names = [quote_ident(c.name) for c in plan.columns.values()]
        target = f"{t} ({', '.join(names)}, {LOADED_AT})"
        if plan.kind.upsert:
            sets = ", ".join(f"{n} = COALESCE(excluded.{n}, {n})" for n in names[1:])
            sql = (
                f"INSERT INTO {target} SELECT *, now() FROM ({plan.select_sql()})"
                f" ON CONFLICT (id) DO UPDATE SET {sets}, {LOADED_AT} = excluded.{LOADED_AT}"
                " WHERE excluded.received_at >= received_at"
            )
        else:
            sql = f"INSERT INTO {target} SELECT *, now() FROM ({plan.select_sql()}) AS n"
            if dedupe:  # warehouses dedupe on id: a row sent again is skipped
                lo, hi = received_ms
                sql += (
                    f" WHERE NOT EXISTS (SELECT 1 FROM {t} AS o WHERE o.id = n.c0 AND o.received_at"
                    f" BETWEEN make_timestamptz({lo}::BIGINT * 1000) AND make_timestamptz({hi}::BIGINT * 1000))"
                )
        # fetchall: DuckDB 2 wants every result consumed before the connection's next statement.
        inserted = self._con.execute(sql).fetchall()
        dsql = plan.discards_sql()
        if dsql:
            sql = f"INSERT INTO {s}.{DISCARDS} SELECT *, now() FROM ({dsql}) AS n"
            if dedupe:
                sql += (
                    f" WHERE NOT EXISTS (SELECT 1 FROM {s}.{DISCARDS} AS o WHERE o.row_id = n.row_id"
                    " AND o.table_name = n.table_name AND o.column_name = n.column_name)"
                )
            self._con.execute(sql)
        return int(inserted[0][0]) if inserted else 0

    def is_transient(self, error: BaseException) -> bool:
        engine = duckdb.IOException | duckdb.OutOfMemoryException | duckdb.TransactionException
        return isinstance(error, engine | MemoryError | OSError)

    def query(self, sql: str, limits: QueryLimits) -> dict[str, Any]:
        """Admin SQL: read-only, on a connection of its own (never the loader's), within `limits`."""
        return run_read_only(self._db.cursor(), sql, limits)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def utc(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Every session in UTC: a time without an offset means UTC, as it does at ingest (and results
    read the same on any machine). GLOBAL, so cursors made from it inherit it."""
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    return con


def query_file(path: Path, sql: str, limits: QueryLimits) -> dict[str, Any]:
    """Admin SQL on the warehouse file directly (no server running), with the server's restrictions."""
    return run_read_only(lock(utc(duckdb.connect(str(path), read_only=True, config=LOCKED_DOWN))), sql, limits)
