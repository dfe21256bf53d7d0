"""PostgreSQL warehouse: the same plan as DuckDB's, its rows computed by an in-memory DuckDB and
copied in with COPY; schema evolution with ALTER TABLE; rows and cursor in one transaction.

Every table has `id` as its primary key, so a replay (or any event sent twice) never adds a
duplicate row: rows go through a temporary table and `INSERT ... ON CONFLICT (id) DO NOTHING`.
Names longer than PostgreSQL's 63 bytes are cut to 54 bytes plus `_` and 8 hex digits of their
hash; a table that reaches 1,600 columns takes no new ones (their values go to `discards`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import duckdb
import psycopg
import pyarrow.csv as pacsv

from sluice.warehouse.duckdb_engine import utc
from sluice.warehouse.loader import Warehouse
from sluice.warehouse.naming import quote_ident
from sluice.warehouse.plan import DISCARD_COLUMNS, DISCARDS, LOADED_AT, Dialect, TablePlan
from sluice.warehouse.types import ColType, from_sql_type

PG_TYPES = {
    ColType.TIMESTAMP: "timestamptz",
    ColType.INTEGER: "bigint",
    ColType.FLOAT: "double precision",
    ColType.BOOLEAN: "boolean",
    ColType.VARCHAR: "text",
}
_META = "_sluice"
_CSV = pacsv.WriteOptions(include_header=False)


def _cols_ddl(columns: Sequence[tuple[str, ColType]]) -> str:
    return ", ".join(f"{quote_ident(n)} {PG_TYPES[t]}" for n, t in columns)


class PostgresWarehouse(Warehouse):
    dialect = Dialect("postgres", max_identifier_bytes=63, max_columns=1600)

    def __init__(self, url: str, connect_timeout: float = 10) -> None:
        super().__init__()
        self.url = url
        self._connect_timeout = connect_timeout
        self._pg: psycopg.Connection | None = None
        # In-memory, UTC: runs the plan's SQL over the batch (offset-less times mean UTC, as at ingest).
        self._stage = utc(duckdb.connect())

    def _conn(self) -> psycopg.Connection:
        """The connection, (re)opened on demand: PostgreSQL being down is a transient failure."""
        if self._pg is None or self._pg.closed or self._pg.broken:
            self._pg = psycopg.connect(
                self.url, connect_timeout=int(self._connect_timeout), autocommit=False, options="-c TimeZone=UTC"
            )
            with self._pg.cursor() as cur:
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_META}")
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {_META}.cursors"
                    " (consumer text PRIMARY KEY, seq bigint NOT NULL, high_seq bigint NOT NULL)"
                )
            self._pg.commit()
            self._columns.clear()
        return self._pg

    @property
    def staging_connection(self) -> duckdb.DuckDBPyConnection:
        return self._stage

    def position(self, consumer: str) -> tuple[int, int]:
        with self._lock:
            conn = self._conn()
            row = conn.execute(f"SELECT seq, high_seq FROM {_META}.cursors WHERE consumer = %s", [consumer]).fetchone()
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS and not self._loading:
                conn.commit()
            return (int(row[0]), int(row[1])) if row else (0, 0)

    _loading = False

    def _read_columns(self, schema: str, table: str) -> dict[str, ColType] | None:
        rows = (
            self._conn()
            .execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                [schema, table],
            )
            .fetchall()
        )
        return {name: from_sql_type(t) for name, t in rows} if rows else None

    def _begin(self) -> None:
        self._conn()
        self._loading = True

    def _commit(self) -> None:
        self._loading = False
        self._conn().commit()

    def _rollback(self) -> None:
        self._loading = False
        if self._pg is not None and not self._pg.closed:
            self._pg.rollback()

    def _set_cursor(self, consumer: str, seq: int) -> None:
        self._conn().execute(
            f"INSERT INTO {_META}.cursors VALUES (%s, %s, %s) ON CONFLICT (consumer)"
            " DO UPDATE SET seq = excluded.seq, high_seq = greatest(cursors.high_seq, excluded.high_seq)",
            [consumer, seq, seq],
        )

    def _prepare(self, schema: str, plans: list[TablePlan]) -> None:
        conn = self._conn()
        s = quote_ident(schema)
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.{DISCARDS} ({_cols_ddl(DISCARD_COLUMNS[:-1])},"
            f" {LOADED_AT} timestamptz DEFAULT now())"
        )
        for plan in plans:
            t = f"{s}.{quote_ident(plan.name)}"
            if not plan.exists:
                cols = [(c.name, c.type) for c in plan.columns.values() if c.type is not None]
                conn.execute(
                    f"CREATE TABLE {t} ({_cols_ddl(cols)}, {LOADED_AT} timestamptz DEFAULT now(), PRIMARY KEY (id))"
                )
                continue
            for c in plan.new_columns:
                assert c.type is not None
                conn.execute(f"ALTER TABLE {t} ADD COLUMN {quote_ident(c.name)} {PG_TYPES[c.type]}")

    def _copy(self, sql: str, target: str, columns: list[str]) -> int:
        """Run `sql` in DuckDB and COPY its rows into `target` (CSV: NULL unquoted, '' quoted)."""
        table = self._stage.sql(sql).to_arrow_table()
        if table.num_rows == 0:
            return 0
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, _CSV)
        with (
            self._conn().cursor() as cur,
            cur.copy(f"COPY {target} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy,
        ):
            copy.write(buf.getbuffer())
        return int(table.num_rows)

    def _write(self, schema: str, plan: TablePlan, dedupe: bool, received_ms: tuple[int, int]) -> int:
        conn = self._conn()
        s = quote_ident(schema)
        t = f"{s}.{quote_ident(plan.name)}"
        names = [quote_ident(c.name) for c in plan.columns.values()]
        cols = ", ".join(names)
        conn.execute(f"CREATE TEMP TABLE _sluice_rows (LIKE {t}) ON COMMIT DROP")
        self._copy(plan.select_sql(), "_sluice_rows", names)
        if plan.kind.upsert:
            sets = ", ".join(f"{n} = COALESCE(excluded.{n}, {t}.{n})" for n in names[1:])
            sql = (
                f"INSERT INTO {t} ({cols}) SELECT {cols} FROM _sluice_rows ON CONFLICT (id) DO UPDATE SET {sets},"
                f" {LOADED_AT} = now() WHERE excluded.received_at >= {t}.received_at"
            )
        else:
            sql = f"INSERT INTO {t} ({cols}) SELECT {cols} FROM _sluice_rows ON CONFLICT (id) DO NOTHING"
        written = conn.execute(sql).rowcount
        conn.execute("DROP TABLE _sluice_rows")
        dsql = plan.discards_sql()
        if dsql:
            dcols = [n for n, _ in DISCARD_COLUMNS[:-1]]
            if not dedupe:
                self._copy(dsql, f"{s}.{DISCARDS}", dcols)
            else:
                conn.execute(f"CREATE TEMP TABLE _sluice_discards (LIKE {s}.{DISCARDS}) ON COMMIT DROP")
                self._copy(dsql, "_sluice_discards", dcols)
                conn.execute(
                    f"INSERT INTO {s}.{DISCARDS} SELECT n.* FROM _sluice_discards AS n WHERE NOT EXISTS"
                    f" (SELECT 1 FROM {s}.{DISCARDS} AS o WHERE o.row_id = n.row_id"
                    " AND o.table_name = n.table_name AND o.column_name = n.column_name)"
                )
                conn.execute("DROP TABLE _sluice_discards")
        return max(written, 0)

    def is_transient(self, error: BaseException) -> bool:
        # OperationalError covers connection trouble, shutdown, out of disk, deadlocks: retry as is.
        return isinstance(error, psycopg.OperationalError | OSError)

    def close(self) -> None:
        with self._lock:
            if self._pg is not None:
                self._pg.close()
            self._stage.close()
