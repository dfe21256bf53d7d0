"""The embedded warehouse: a DuckDB file in the data dir, loaded in Segment's schema.

Staging and target are the same DuckDB database, so each table's rows go from the plan's slots into
the table with one INSERT ... SELECT. Each source loads on a connection of its own (DuckDB runs
their transactions side by side), so one source's slow batch never holds up another's. DuckDB
allows one writing process: the server owns the file while it runs and answers `sluice query`
through its admin endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from sluice.warehouse.loader import Caps, Cursor, Dialect, Session, Warehouse
from sluice.warehouse.naming import quote_ident
from sluice.warehouse.plan import TableWrite
from sluice.warehouse.readonly import LOCKED_DOWN, QueryLimits, lock, run_read_only
from sluice.warehouse.stored_schema import COLUMNS_TABLE, META, SYSTEM_SCHEMAS, reconcile, without_uuid_ts
from sluice.warehouse.types import DUCKDB_TYPES, ColType

_CURSORS = f"{META}.cursors"


def _cols_ddl(columns: Sequence[tuple[str, ColType]]) -> str:
    return ", ".join(f"{quote_ident(n)} {DUCKDB_TYPES[t]}" for n, t in columns)


def _meta_ddl(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {META}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {_CURSORS}"
        " (consumer VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, high_seq BIGINT NOT NULL, log_generation VARCHAR)"
    )
    con.execute(f"ALTER TABLE {_CURSORS} ADD COLUMN IF NOT EXISTS log_generation VARCHAR")  # sluice 0.1's lacked it
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {COLUMNS_TABLE} (schema_name VARCHAR NOT NULL, table_name VARCHAR NOT NULL,"
        " column_name VARCHAR NOT NULL, column_type VARCHAR NOT NULL, ordinal INTEGER NOT NULL,"
        " PRIMARY KEY (schema_name, table_name, column_name))"
    )


class DuckDBSession(Session):
    """A connection of its own on the warehouse's DuckDB instance: plan SQL and inserts run on it,
    inside one transaction per batch."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    @property
    def stage(self) -> duckdb.DuckDBPyConnection:
        return self._con

    def begin(self) -> None:
        self._con.execute("BEGIN")

    def commit(self) -> None:
        self._con.execute("COMMIT")

    def rollback(self) -> None:
        self._con.execute("ROLLBACK")

    def create_table(self, schema: str, table: str, columns: list[tuple[str, ColType]], primary_key: bool) -> None:
        s = quote_ident(schema)
        self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        pk = ", PRIMARY KEY (id)" if primary_key else ""
        self._con.execute(f"CREATE TABLE {s}.{quote_ident(table)} ({_cols_ddl(columns)}{pk})")

    def add_columns(self, schema: str, table: str, columns: list[tuple[str, ColType]]) -> None:
        t = f"{quote_ident(schema)}.{quote_ident(table)}"
        for name, type_ in columns:  # DuckDB's ALTER TABLE takes one column at a time
            self._con.execute(f"ALTER TABLE {t} ADD COLUMN {quote_ident(name)} {DUCKDB_TYPES[type_]}")

    def write(self, schema: str, write: TableWrite, dedupe: bool, received_ms: tuple[int, int]) -> int:
        t = f"{quote_ident(schema)}.{quote_ident(write.table)}"
        names = [quote_ident(c) for c in write.columns]
        aliases = [f"c{i}" for i in range(len(names))]
        target = f"{t} ({', '.join(names)}, loaded_at, uuid_ts)"
        source = f"({write.select}) AS n({', '.join(aliases)})"
        if write.kind.upsert:
            sets = ", ".join(f"{n} = COALESCE(excluded.{n}, {n})" for n in names[1:])
            sql = (
                f"INSERT INTO {target} SELECT *, now(), now() FROM {source}"
                f" ON CONFLICT (id) DO UPDATE SET {sets}, loaded_at = excluded.loaded_at, uuid_ts = excluded.uuid_ts"
                " WHERE excluded.received_at >= received_at"
            )
        else:
            sql = f"INSERT INTO {target} SELECT *, now(), now() FROM {source}"
            if dedupe:  # warehouses dedupe on id: a row sent again is skipped
                lo, hi = received_ms
                rid, rcv = aliases[write.columns.index("id")], aliases[write.columns.index("received_at")]
                sql += (
                    f" WHERE NOT EXISTS (SELECT 1 FROM {t} AS o WHERE o.id = n.{rid} AND o.received_at = n.{rcv}"
                    f" AND o.received_at BETWEEN make_timestamptz({lo}::BIGINT * 1000)"
                    f" AND make_timestamptz({hi}::BIGINT * 1000))"
                )
        # fetchall: DuckDB 2 wants every result consumed before the connection's next statement.
        inserted = self._con.execute(sql).fetchall()
        return int(inserted[0][0]) if inserted else 0

    def write_discards(self, schema: str, select: str, dedupe: bool) -> None:
        d = f"{quote_ident(schema)}.discards"
        sql = (
            f"INSERT INTO {d} (table_name, column_name, row_id, value, reason, received_at, loaded_at, uuid_ts)"
            f" SELECT *, now(), now() FROM ({select}) AS n(t, c, r, v, why, rcv)"
        )
        if dedupe:
            sql += (
                f" WHERE NOT EXISTS (SELECT 1 FROM {d} AS o WHERE o.row_id = n.r AND o.table_name = n.t"
                " AND o.column_name = n.c)"
            )
        self._con.execute(sql).fetchall()

    def save_columns(self, schema: str, table: str, columns: list[tuple[str, ColType]], first_ordinal: int) -> None:
        rows = pa.table({  # one INSERT from Arrow: executemany runs one statement per row
            "schema_name": [schema] * len(columns),
            "table_name": [table] * len(columns),
            "column_name": [name for name, _ in columns],
            "column_type": [type_.value for _, type_ in columns],
            "ordinal": pa.array(range(first_ordinal, first_ordinal + len(columns)), pa.int32()),
        })
        self._con.register("_sluice_new_columns", rows)
        try:
            self._con.execute(
                f"INSERT INTO {COLUMNS_TABLE} SELECT * FROM _sluice_new_columns ON CONFLICT DO NOTHING"
            ).fetchall()
        finally:
            self._con.unregister("_sluice_new_columns")

    def set_cursor(self, consumer: str, seq: int, log_generation: str | None) -> None:
        self._con.execute(
            f"INSERT INTO {_CURSORS} VALUES (?, ?, ?, ?) ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq,"
            " high_seq = greatest(high_seq, excluded.high_seq),"
            " log_generation = coalesce(excluded.log_generation, log_generation)",
            [consumer, seq, seq, log_generation],
        ).fetchall()

    def reset_cursor(self, consumer: str, seq: int, high_seq: int, log_generation: str) -> None:
        self._con.execute(
            f"INSERT INTO {_CURSORS} VALUES (?, ?, ?, ?) ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq,"
            " high_seq = excluded.high_seq, log_generation = excluded.log_generation",
            [consumer, seq, high_seq, log_generation],
        ).fetchall()

    def close(self) -> None:
        self._con.close()


class DuckDBWarehouse(Warehouse):
    dialect = Dialect("duckdb", max_identifier_bytes=255, max_columns=5000)

    def __init__(self, path: Path, caps: Caps | None = None, resources: dict[str, str] | None = None) -> None:
        """`resources`: DuckDB settings for the instance's threads and memory (the server's
        `warehouse_threads`, `warehouse_memory_limit_mb`); DuckDB's defaults when absent."""
        super().__init__(caps or Caps())
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        config = {"checkpoint_threshold": "64MB", **(resources or {}), **LOCKED_DOWN}
        # Locked down (readonly.py): admin SQL shares this instance, and must reach nothing outside it.
        self._db = lock(utc(duckdb.connect(str(path), config=config)))
        _meta_ddl(self._db)
        self.refresh_schema()

    def _open_session(self) -> Session:
        return DuckDBSession(self._db.cursor())

    def cursor(self, consumer: str) -> Cursor:
        con = self._db.cursor()
        try:
            rows = con.execute(
                f"SELECT seq, high_seq, log_generation FROM {_CURSORS} WHERE consumer = ?", [consumer]
            ).fetchall()
        finally:
            con.close()
        return Cursor(int(rows[0][0]), int(rows[0][1]), rows[0][2]) if rows else Cursor(0, 0, None)

    def cursors(self) -> dict[str, Cursor]:
        con = self._db.cursor()
        try:
            rows = con.execute(f"SELECT consumer, seq, high_seq, log_generation FROM {_CURSORS}").fetchall()
        finally:
            con.close()
        return {r[0]: Cursor(int(r[1]), int(r[2]), r[3]) for r in rows}

    def refresh_schema(self) -> None:
        con = self._db.cursor()
        try:
            stored = con.execute(
                f"SELECT schema_name, table_name, column_name, column_type, ordinal FROM {COLUMNS_TABLE}"
                " ORDER BY schema_name, table_name, ordinal"
            ).fetchall()
            actual = con.execute(
                "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_catalog = current_database() ORDER BY table_schema, table_name, ordinal_position"
            ).fetchall()
            add, drop = reconcile(stored, actual)
            if add or drop:
                con.execute("BEGIN")
                for schema, table, ordinal in without_uuid_ts(add):
                    t = f"{quote_ident(schema)}.{quote_ident(table)}"
                    con.execute(f"ALTER TABLE {t} ADD COLUMN uuid_ts TIMESTAMPTZ")
                    con.execute(f"UPDATE {t} SET uuid_ts = loaded_at")
                    add.append((schema, table, "uuid_ts", "timestamp", ordinal))
                if add:  # DuckDB's executemany refuses an empty list
                    con.executemany(f"INSERT INTO {COLUMNS_TABLE} VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", add)
                if drop:
                    con.executemany(f"DELETE FROM {COLUMNS_TABLE} WHERE schema_name = ? AND table_name = ?", drop)
                con.execute("COMMIT")
                stored = con.execute(
                    f"SELECT schema_name, table_name, column_name, column_type, ordinal FROM {COLUMNS_TABLE}"
                    " ORDER BY schema_name, table_name, ordinal"
                ).fetchall()
        finally:
            con.close()
        self.schema.replace((s, t, c, ty) for s, t, c, ty, _ in stored)

    def is_transient(self, error: BaseException) -> bool:
        engine = duckdb.IOException | duckdb.OutOfMemoryException | duckdb.TransactionException
        return isinstance(error, engine | MemoryError | OSError)

    def drop_schema(self, schema: str, consumers: Sequence[str] = ()) -> bool:
        """Remove a schema's tables, what the store knows of them, and the named cursors (a deleted
        source's: `sluice demo --reset`). False when there was no such schema."""
        if schema in SYSTEM_SCHEMAS:
            raise ValueError(f"{schema!r} is not a source's schema")
        con = self._db.cursor()
        try:
            found = con.execute("SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?",
                                [schema]).fetchall()[0][0]
            con.execute("BEGIN")
            con.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
            con.execute(f"DELETE FROM {COLUMNS_TABLE} WHERE schema_name = ?", [schema])
            for consumer in consumers:
                con.execute(f"DELETE FROM {_CURSORS} WHERE consumer = ?", [consumer])
            con.execute("COMMIT")
        finally:
            con.close()
        self.refresh_schema()
        return bool(found)

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own on the warehouse (the analytics stage's reads); the caller closes it."""
        return self._db.cursor()

    def query(self, sql: str, limits: QueryLimits) -> dict[str, Any]:
        """Admin SQL: read-only, on a connection of its own (never the loader's), within `limits`."""
        return run_read_only(self._db.cursor(), sql, limits)

    def close(self) -> None:
        for consumer in list(self._sessions):
            self.drop_session(consumer)
        self._db.close()


def utc(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Every session in UTC: a time without an offset means UTC, as it does at ingest (and results
    read the same on any machine). GLOBAL, so cursors made from it inherit it."""
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    return con


def open_file(path: Path) -> duckdb.DuckDBPyConnection:
    """The warehouse file opened read-only (no server running), with the server's restrictions."""
    return lock(utc(duckdb.connect(str(path), read_only=True, config=LOCKED_DOWN)))


def query_file(path: Path, sql: str, limits: QueryLimits) -> dict[str, Any]:
    """Admin SQL on the warehouse file directly (no server running), with the server's restrictions."""
    return run_read_only(open_file(path), sql, limits)
