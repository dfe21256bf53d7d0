"""PostgreSQL warehouse: the same plan as DuckDB's, its rows computed by an in-memory DuckDB and
copied in with COPY; schema evolution with ALTER TABLE; rows, discards, stored schema and cursor in
one transaction.

Every table has `id` as its primary key, so a replay (or any event sent twice) never adds a
duplicate row: rows go through a temporary table and `INSERT ... ON CONFLICT (id) DO NOTHING`.
Names longer than PostgreSQL's 63 bytes are cut to 54 bytes plus `_` and 8 hex digits of their
hash.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence

import duckdb
import psycopg
import pyarrow.csv as pacsv

from sluice.warehouse.duckdb_engine import utc
from sluice.warehouse.loader import Caps, Cursor, Dialect, Session, Warehouse
from sluice.warehouse.naming import quote_ident
from sluice.warehouse.plan import TableWrite
from sluice.warehouse.stored_schema import COLUMNS_TABLE, META, reconcile, without_uuid_ts
from sluice.warehouse.types import ColType

PG_TYPES = {
    ColType.TIMESTAMP: "timestamptz",
    ColType.INTEGER: "bigint",
    ColType.FLOAT: "double precision",
    ColType.BOOLEAN: "boolean",
    ColType.VARCHAR: "text",
}
_CURSORS = f"{META}.cursors"
_CSV = pacsv.WriteOptions(include_header=False)


def _cols_ddl(columns: Sequence[tuple[str, ColType]]) -> str:
    return ", ".join(
        f"{quote_ident(n)} {PG_TYPES[t]}" + (" DEFAULT now()" if n in ("loaded_at", "uuid_ts") else "")
        for n, t in columns
    )


class PostgresSession(Session):
    def __init__(self, warehouse: PostgresWarehouse) -> None:
        self._wh = warehouse
        # In-memory, UTC: runs the plan's SQL over the batch (offset-less times mean UTC, as at ingest).
        self._stage = utc(duckdb.connect())

    @property
    def stage(self) -> duckdb.DuckDBPyConnection:
        return self._stage

    @property
    def _pg(self) -> psycopg.Connection:
        return self._wh.connection()

    def begin(self) -> None:
        self._pg.execute("SELECT 1")  # opens the transaction (and the connection, if it was lost)

    def commit(self) -> None:
        self._pg.commit()

    def rollback(self) -> None:
        self._wh.rollback()

    def create_table(self, schema: str, table: str, columns: list[tuple[str, ColType]], primary_key: bool) -> None:
        s = quote_ident(schema)
        self._pg.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        pk = ", PRIMARY KEY (id)" if any(n == "id" for n, _ in columns) else ""
        self._pg.execute(f"CREATE TABLE {s}.{quote_ident(table)} ({_cols_ddl(columns)}{pk})")

    def add_columns(self, schema: str, table: str, columns: list[tuple[str, ColType]]) -> None:
        adds = ", ".join(f"ADD COLUMN {c}" for c in _cols_ddl(columns).split(", "))
        self._pg.execute(f"ALTER TABLE {quote_ident(schema)}.{quote_ident(table)} {adds}")

    def _copy(self, sql: str, target: str, columns: list[str]) -> int:
        """Run `sql` in DuckDB and COPY its rows into `target` (CSV: NULL unquoted, '' quoted)."""
        table = self._stage.sql(sql).to_arrow_table()
        if table.num_rows == 0:
            return 0
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, _CSV)
        with self._pg.cursor() as cur, cur.copy(f"COPY {target} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as cp:
            cp.write(buf.getbuffer())
        return int(table.num_rows)

    def write(self, schema: str, write: TableWrite, dedupe: bool, received_ms: tuple[int, int]) -> int:
        pg = self._pg
        t = f"{quote_ident(schema)}.{quote_ident(write.table)}"
        names = [quote_ident(c) for c in write.columns]
        cols = ", ".join(names)
        pg.execute(f"CREATE TEMP TABLE _sluice_rows (LIKE {t}) ON COMMIT DROP")
        self._copy(write.select, "_sluice_rows", names)
        if write.kind.upsert:
            sets = ", ".join(f"{n} = COALESCE(excluded.{n}, {t}.{n})" for n in names[1:])
            sql = (
                f"INSERT INTO {t} ({cols}) SELECT {cols} FROM _sluice_rows ON CONFLICT (id) DO UPDATE SET {sets},"
                f" loaded_at = now(), uuid_ts = now() WHERE excluded.received_at >= {t}.received_at"
            )
        else:
            sql = f"INSERT INTO {t} ({cols}) SELECT {cols} FROM _sluice_rows ON CONFLICT (id) DO NOTHING"
        written = pg.execute(sql).rowcount
        pg.execute("DROP TABLE _sluice_rows")
        return max(written, 0)

    def write_discards(self, schema: str, select: str, dedupe: bool) -> None:
        d = f"{quote_ident(schema)}.discards"
        cols = ["table_name", "column_name", "row_id", "value", "reason", "received_at"]
        if not dedupe:
            self._copy(select, d, cols)
            return
        self._pg.execute(f"CREATE TEMP TABLE _sluice_discards (LIKE {d}) ON COMMIT DROP")
        self._copy(select, "_sluice_discards", cols)
        self._pg.execute(
            f"INSERT INTO {d} ({', '.join(cols)}) SELECT {', '.join('n.' + c for c in cols)}"
            f" FROM _sluice_discards AS n WHERE NOT EXISTS (SELECT 1 FROM {d} AS o WHERE o.row_id = n.row_id"
            " AND o.table_name = n.table_name AND o.column_name = n.column_name)"
        )
        self._pg.execute("DROP TABLE _sluice_discards")

    def save_columns(self, schema: str, table: str, columns: list[tuple[str, ColType]], first_ordinal: int) -> None:
        with self._pg.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {COLUMNS_TABLE} VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(schema, table, name, type_.value, first_ordinal + i) for i, (name, type_) in enumerate(columns)],
            )

    def set_cursor(self, consumer: str, seq: int, log_generation: str | None) -> None:
        self._pg.execute(
            f"INSERT INTO {_CURSORS} VALUES (%s, %s, %s, %s) ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq,"
            " high_seq = greatest(cursors.high_seq, excluded.high_seq),"
            " log_generation = coalesce(excluded.log_generation, cursors.log_generation)",
            [consumer, seq, seq, log_generation],
        )

    def reset_cursor(self, consumer: str, seq: int, high_seq: int, log_generation: str) -> None:
        self._pg.execute(
            f"INSERT INTO {_CURSORS} VALUES (%s, %s, %s, %s) ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq,"
            " high_seq = excluded.high_seq, log_generation = excluded.log_generation",
            [consumer, seq, high_seq, log_generation],
        )

    def close(self) -> None:
        self._stage.close()


class PostgresWarehouse(Warehouse):
    dialect = Dialect("postgres", max_identifier_bytes=63, max_columns=1600)

    def __init__(self, url: str, caps: Caps | None = None, connect_timeout: float = 10) -> None:
        super().__init__(caps or Caps())
        self.url = url
        self._connect_timeout = connect_timeout
        self._pg: psycopg.Connection | None = None
        self._lock = threading.RLock()  # one connection: one transaction at a time
        self._schema_loaded = False
        self._in_load = False

    def connection(self) -> psycopg.Connection:
        """The connection, (re)opened on demand: PostgreSQL being down is a transient failure."""
        with self._lock:
            if self._pg is None or self._pg.closed or self._pg.broken:
                self._pg = psycopg.connect(
                    self.url, connect_timeout=int(self._connect_timeout), autocommit=False,
                    options="-c TimeZone=UTC",
                )
                with self._pg.cursor() as cur:
                    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {META}")
                    cur.execute(
                        f"CREATE TABLE IF NOT EXISTS {_CURSORS} (consumer text PRIMARY KEY, seq bigint NOT NULL,"
                        " high_seq bigint NOT NULL, log_generation text)"
                    )
                    cur.execute(f"ALTER TABLE {_CURSORS} ADD COLUMN IF NOT EXISTS log_generation text")
                    cur.execute(
                        f"CREATE TABLE IF NOT EXISTS {COLUMNS_TABLE} (schema_name text NOT NULL,"
                        " table_name text NOT NULL, column_name text NOT NULL, column_type text NOT NULL,"
                        " ordinal integer NOT NULL, PRIMARY KEY (schema_name, table_name, column_name))"
                    )
                self._pg.commit()
                self._schema_loaded = False
            if not self._schema_loaded:
                self._schema_loaded = True
                self.refresh_schema()
            return self._pg

    def rollback(self) -> None:
        with self._lock:
            if self._pg is not None and not self._pg.closed:
                self._pg.rollback()

    def _open_session(self) -> Session:
        return PostgresSession(self)

    def load(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with self._lock:  # the one connection carries one load at a time
            self.connection()
            self._in_load = True
            try:
                return super().load(*args, **kwargs)
            finally:
                self._in_load = False

    def cursor(self, consumer: str) -> Cursor:
        with self._lock:
            conn = self.connection()
            row = conn.execute(
                f"SELECT seq, high_seq, log_generation FROM {_CURSORS} WHERE consumer = %s", [consumer]
            ).fetchone()
            if not self._in_load:  # outside a load, end the read's transaction; inside, it is the load's
                conn.commit()
            return Cursor(int(row[0]), int(row[1]), row[2]) if row else Cursor(0, 0, None)

    def refresh_schema(self) -> None:
        with self._lock:
            conn = self._pg
            assert conn is not None
            stored = conn.execute(
                f"SELECT schema_name, table_name, column_name, column_type, ordinal FROM {COLUMNS_TABLE}"
                " ORDER BY schema_name, table_name, ordinal"
            ).fetchall()
            actual = conn.execute(
                "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_catalog = current_database() ORDER BY table_schema, table_name, ordinal_position"
            ).fetchall()
            add, drop = reconcile([tuple(r) for r in stored], [tuple(r) for r in actual])
            if add or drop:
                for schema, table, ordinal in without_uuid_ts(add):
                    t = f"{quote_ident(schema)}.{quote_ident(table)}"
                    conn.execute(f"ALTER TABLE {t} ADD COLUMN uuid_ts timestamptz DEFAULT now()")
                    conn.execute(f"UPDATE {t} SET uuid_ts = loaded_at")
                    add.append((schema, table, "uuid_ts", "timestamp", ordinal))
                with conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO {COLUMNS_TABLE} VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                                    add)
                    cur.executemany(f"DELETE FROM {COLUMNS_TABLE} WHERE schema_name = %s AND table_name = %s", drop)
                stored = conn.execute(
                    f"SELECT schema_name, table_name, column_name, column_type, ordinal FROM {COLUMNS_TABLE}"
                    " ORDER BY schema_name, table_name, ordinal"
                ).fetchall()
            conn.commit()
            self.schema.replace((s, t, c, ty) for s, t, c, ty, _ in stored)

    def is_transient(self, error: BaseException) -> bool:
        # OperationalError covers connection trouble, shutdown, out of disk, deadlocks: retry as is.
        return isinstance(error, psycopg.OperationalError | OSError)

    def close(self) -> None:
        with self._lock:
            for consumer in list(self._sessions):
                self.drop_session(consumer)
            if self._pg is not None:
                self._pg.close()
