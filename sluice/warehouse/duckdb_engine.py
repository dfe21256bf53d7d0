"""The embedded warehouse: a DuckDB file in the data dir, loaded in Segment's schema.

Rows and the loader's cursor commit in one DuckDB transaction, so a crash never loads a batch
twice or loses one. DuckDB allows one writing process: the server owns the file while it runs
and answers `sluice query` through its admin endpoint.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from sluice.log.base import Entry
from sluice.warehouse.naming import quote_ident
from sluice.warehouse.plan import DISCARD_COLUMNS, DISCARDS, LOADED_AT, Dialect, Planner, TablePlan
from sluice.warehouse.staging import staging_table
from sluice.warehouse.types import DUCKDB_TYPES, ColType, from_sql_type

DIALECT = Dialect("duckdb", max_identifier_bytes=255, max_columns=5000)
_META = "_sluice"


def _cols_ddl(columns: Sequence[tuple[str, ColType]]) -> str:
    return ", ".join(f"{quote_ident(n)} {DUCKDB_TYPES[t]}" for n, t in columns)


class DuckDBWarehouse:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = duckdb.connect(str(path))
        self._lock = threading.Lock()  # one loading transaction at a time
        self._load_con = self._db.cursor()
        self._planner = Planner(DIALECT)
        self._columns: dict[tuple[str, str], dict[str, ColType]] = {}
        self._db.execute(f"CREATE SCHEMA IF NOT EXISTS {_META}")
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {_META}.cursors"
            " (consumer VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, high_seq BIGINT NOT NULL)"
        )

    # -- cursor ---------------------------------------------------------------------------------

    def position(self, consumer: str) -> tuple[int, int]:
        """(cursor, highest seq ever loaded) for a consumer."""
        row = self._db.cursor().execute(
            f"SELECT seq, high_seq FROM {_META}.cursors WHERE consumer = ?", [consumer]
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def rewind(self, consumer: str, seq: int) -> None:
        """Move a cursor back (replay); rows loaded again are deduplicated on id."""
        with self._lock:
            self._db.cursor().execute(
                f"UPDATE {_META}.cursors SET seq = ? WHERE consumer = ?", [seq, consumer]
            )

    # -- loading --------------------------------------------------------------------------------

    def _existing(self, schema: str, table: str) -> dict[str, ColType] | None:
        key = (schema, table)
        if key not in self._columns:
            rows = self._load_con.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, table],
            ).fetchall()
            if not rows:
                return None
            self._columns[key] = {name: from_sql_type(t) for name, t in rows}
        return self._columns[key]

    def load(self, consumer: str, schema: str, entries: Sequence[Entry]) -> dict[str, int]:
        """Load a batch of one source's entries and advance the cursor past them; rows per table."""
        if not entries:
            return {}
        con = self._load_con
        last = entries[-1].seq
        with self._lock:
            _, high = self.position(consumer)
            replay = entries[0].seq <= high  # only a replay can meet rows already loaded
            con.register("staging", staging_table(entries))
            con.execute("BEGIN")
            try:
                plans = self._planner.plan(entries, lambda t: self._existing(schema, t), con)
                counts = self._apply(con, schema, plans, replay, entries)
                con.execute(
                    f"INSERT INTO {_META}.cursors VALUES (?, ?, ?) ON CONFLICT (consumer)"
                    " DO UPDATE SET seq = excluded.seq, high_seq = greatest(high_seq, excluded.high_seq)",
                    [consumer, last, last],
                )
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):  # a failed COMMIT has rolled back already
                    con.execute("ROLLBACK")
                self._columns = {k: v for k, v in self._columns.items() if k[0] != schema}
                raise
            finally:
                con.unregister("staging")
            for plan in plans:
                known = self._columns.setdefault((schema, plan.name), {})
                known.update({c.name: c.type for c in plan.columns.values() if c.type is not None})
                known[LOADED_AT] = ColType.TIMESTAMP
        return counts

    def _apply(
        self,
        con: duckdb.DuckDBPyConnection,
        schema: str,
        plans: list[TablePlan],
        replay: bool,
        entries: Sequence[Entry],
    ) -> dict[str, int]:
        s = quote_ident(schema)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        discards = f"{s}.{quote_ident(DISCARDS)}"
        con.execute(f"CREATE TABLE IF NOT EXISTS {discards} ({_cols_ddl(DISCARD_COLUMNS)})")
        received = (entries[0].received_ms - 1000, entries[-1].received_ms + 1000)
        counts: dict[str, int] = {}
        for plan in plans:
            t = f"{s}.{quote_ident(plan.name)}"
            if not plan.exists:
                cols = [(c.name, c.type) for c in plan.columns.values() if c.type is not None]
                pk = ", PRIMARY KEY (id)" if plan.kind.upsert else ""
                con.execute(f"CREATE TABLE {t} ({_cols_ddl([*cols, (LOADED_AT, ColType.TIMESTAMP)])}{pk})")
            else:
                for c in plan.new_columns:
                    assert c.type is not None
                    con.execute(f"ALTER TABLE {t} ADD COLUMN {quote_ident(c.name)} {DUCKDB_TYPES[c.type]}")
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
                if replay:  # warehouses dedupe on id: a replayed row already present is skipped
                    sql += (
                        f" WHERE NOT EXISTS (SELECT 1 FROM {t} AS o WHERE o.id = n.c0"
                        f" AND o.received_at BETWEEN make_timestamptz({received[0]}::BIGINT * 1000)"
                        f" AND make_timestamptz({received[1]}::BIGINT * 1000))"
                    )
            row = con.execute(sql).fetchone()
            counts[plan.name] = int(row[0]) if row else 0
            dsql = plan.discards_sql()
            if dsql:
                sql = f"INSERT INTO {discards} SELECT *, now() FROM ({dsql}) AS n"
                if replay:
                    sql += (
                        f" WHERE NOT EXISTS (SELECT 1 FROM {discards} AS o WHERE o.row_id = n.row_id"
                        " AND o.table_name = n.table_name AND o.column_name = n.column_name)"
                    )
                con.execute(sql)
        return counts

    # -- querying -------------------------------------------------------------------------------

    def query(self, sql: str) -> dict[str, Any]:
        cur = self._db.cursor()
        try:
            cur.execute(sql)
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchall() if cur.description else []
        finally:
            cur.close()
        return {"columns": columns, "rows": rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def query_file(path: Path, sql: str) -> dict[str, Any]:
    """Run SQL on the warehouse file directly (no server running)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description] if cur.description else []
        return {"columns": columns, "rows": cur.fetchall() if cur.description else []}
    finally:
        con.close()
