"""`_sluice.identity_map`: the identity map as a view in the embedded warehouse, for anyone's SQL
(`sluice query "select * from _sluice.identity_map"`, dbt, a BI tool).

The map's SQL names the tables that exist (identity.py), so the deliver process re-creates the view when
that set changes: checked every `interval` seconds. Reports never depend on it (they inline the same SQL)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import duckdb

from sluice.analytics.identity import identity_map_sql
from sluice.analytics.reader import Reader
from sluice.warehouse.stored_schema import META

IDENTITY_VIEW = f"{META}.identity_map"


def refresh_identity_view(reader: Reader, connect: Callable[[], duckdb.DuckDBPyConnection], current: str | None
                          ) -> str:
    """Re-create the view when its SQL changed; returns the SQL now in place."""
    sql = identity_map_sql(reader.columns())
    if sql != current:
        con = connect()
        try:
            con.execute(f"CREATE OR REPLACE VIEW {IDENTITY_VIEW} AS {sql}")
        finally:
            con.close()
    return sql


class IdentityViewKeeper(threading.Thread):
    def __init__(self, reader: Reader, connect: Callable[[], duckdb.DuckDBPyConnection], interval: float) -> None:
        super().__init__(name="identity-view", daemon=True)
        self.reader, self.connect, self.interval = reader, connect, interval
        self.halt = threading.Event()

    def run(self) -> None:
        current: str | None = None
        while not self.halt.is_set():
            with contextlib.suppress(Exception):  # a busy or closing warehouse: the next round tries again
                current = refresh_identity_view(self.reader, self.connect, current)
            self.halt.wait(self.interval)
