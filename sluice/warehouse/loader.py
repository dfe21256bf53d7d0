"""What every warehouse engine shares: one batch = plan, evolve the schema, insert, move the cursor,
all in one transaction of the target engine. Engines supply the SQL dialect and the I/O."""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence

import duckdb

from sluice.log.base import Entry
from sluice.warehouse.plan import LOADED_AT, Dialect, Planner, TablePlan
from sluice.warehouse.staging import staging_table
from sluice.warehouse.types import ColType


class Warehouse(ABC):
    dialect: Dialect

    def __init__(self) -> None:
        self._lock = threading.RLock()  # one loading transaction at a time per warehouse
        self._planner = Planner(self.dialect)
        self._columns: dict[tuple[str, str], dict[str, ColType]] = {}

    # -- what an engine provides ------------------------------------------------------------

    @property
    @abstractmethod
    def staging_connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection that runs the plan's SQL over `staging`."""

    @abstractmethod
    def position(self, consumer: str) -> tuple[int, int]:
        """(cursor, highest seq ever loaded) of a consumer."""

    @abstractmethod
    def _read_columns(self, schema: str, table: str) -> dict[str, ColType] | None: ...

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _prepare(self, schema: str, plans: list[TablePlan]) -> None:
        """Create the schema, tables and columns the plans need (inside the transaction)."""

    @abstractmethod
    def _write(self, schema: str, plan: TablePlan, dedupe: bool, received_ms: tuple[int, int]) -> int:
        """Insert (or, for users, upsert) the plan's rows and its discards; rows written."""

    @abstractmethod
    def _set_cursor(self, consumer: str, seq: int) -> None: ...

    # -- the shared flow --------------------------------------------------------------------

    def _existing(self, schema: str, table: str) -> dict[str, ColType] | None:
        key = (schema, table)
        if key not in self._columns:
            found = self._read_columns(schema, table)
            if found is None:
                return None
            self._columns[key] = found
        return self._columns[key]

    def load(self, consumer: str, schema: str, entries: Sequence[Entry], replay: bool = False) -> dict[str, int]:
        """Load one source's batch and, unless replaying, move the cursor past it; rows per table.

        `replay`: entries sent again (a replay or re-drive): rows already present are skipped and
        the cursor stays where it is."""
        if not entries:
            return {}
        with self._lock:
            dedupe = replay or entries[0].seq <= self.position(consumer)[1]
            stage = self.staging_connection
            stage.register("staging", staging_table(entries))
            self._begin()
            try:
                plans = self._planner.plan(entries, lambda t: self._existing(schema, t), stage)
                self._prepare(schema, plans)
                received = (entries[0].received_ms - 1000, entries[-1].received_ms + 1000)
                counts = {p.name: self._write(schema, p, dedupe, received) for p in plans}
                if not replay:
                    self._set_cursor(consumer, entries[-1].seq)
                self._commit()
            except BaseException:
                with contextlib.suppress(Exception):  # a failed COMMIT may have rolled back already
                    self._rollback()
                self._columns = {k: v for k, v in self._columns.items() if k[0] != schema}
                raise
            finally:
                stage.unregister("staging")
            for plan in plans:
                known = self._columns.setdefault((schema, plan.name), {})
                known.update({c.name: c.type for c in plan.columns.values() if c.type is not None})
                known[LOADED_AT] = ColType.TIMESTAMP
        return counts

    def skip_to(self, consumer: str, seq: int) -> None:
        """Move the cursor past an entry that cannot be loaded (it has been dead-lettered)."""
        with self._lock:
            self._begin()
            try:
                self._set_cursor(consumer, seq)
                self._commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    self._rollback()
                raise

    @abstractmethod
    def is_transient(self, error: BaseException) -> bool:
        """True for failures of the engine itself (connection lost, disk full), worth retrying as they
        are; False for failures a particular batch causes, which the worker isolates event by event."""

    @abstractmethod
    def close(self) -> None: ...
