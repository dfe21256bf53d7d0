"""What every warehouse engine shares: one batch = plan, evolve the schema, insert rows and discards,
move the cursor, all in one transaction of the target engine. Engines supply sessions (a connection
each) that know their SQL dialect and I/O.

Exactly once: a batch's rows, its discards, the stored schema and the cursor commit together, so a
crash loads a batch entirely or not at all. Rows sent again (replays, re-drives, a batch at or below
the highest seq ever loaded) are deduplicated on `id`; the delivery worker never replays beyond the
cursor, so live loading never meets a row a replay already wrote.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from sluice.log.base import Entry, LogMismatch
from sluice.settings import Settings
from sluice.warehouse.plan import BatchPlan, Limits, Planner, TableWrite
from sluice.warehouse.stored_schema import StoredSchema
from sluice.warehouse.tables import DISCARD_COLUMNS, DISCARDS, LOAD_TIME
from sluice.warehouse.types import ColType


@dataclass(frozen=True)
class Dialect:
    """What an engine allows: its identifier length and its own limit of columns per table."""

    name: str
    max_identifier_bytes: int
    max_columns: int


@dataclass(frozen=True)
class Caps:
    """The warehouse limits a user sets (settings.py): columns per table, event tables per schema."""

    max_columns: int = 500
    max_event_tables: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> Caps:
        return cls(settings.max_columns_per_table, settings.max_event_tables)


@dataclass(frozen=True)
class Cursor:
    seq: int  # loaded through this seq
    high_seq: int  # the highest seq ever loaded (replays and re-drives dedupe at or below it)
    log_generation: str | None  # the log these seqs belong to (None: written before generations)


class Session(ABC):
    """One connection of a warehouse, loading one consumer's batches one at a time."""

    @property
    @abstractmethod
    def stage(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection the plan's SQL runs on."""

    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def create_table(self, schema: str, table: str, columns: list[tuple[str, ColType]], primary_key: bool) -> None:
        """Create the schema if needed and the table; `primary_key`: on `id` (users, upserted)."""

    @abstractmethod
    def add_columns(self, schema: str, table: str, columns: list[tuple[str, ColType]]) -> None: ...

    @abstractmethod
    def write(self, schema: str, write: TableWrite, dedupe: bool, received_ms: tuple[int, int]) -> int: ...

    @abstractmethod
    def write_discards(self, schema: str, select: str, dedupe: bool) -> None: ...

    @abstractmethod
    def save_columns(self, schema: str, table: str, columns: list[tuple[str, ColType]], first_ordinal: int) -> None:
        """Record columns in `_sluice.columns` (inside the load's transaction)."""

    @abstractmethod
    def set_cursor(self, consumer: str, seq: int, log_generation: str | None) -> None:
        """Move the cursor (high_seq follows it up, never down)."""

    @abstractmethod
    def reset_cursor(self, consumer: str, seq: int, high_seq: int, log_generation: str) -> None:
        """Set the cursor outright (recovery only)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


_tags = itertools.count(1)


class Warehouse(ABC):
    dialect: Dialect

    def __init__(self, caps: Caps) -> None:
        self.limits = Limits(
            self.dialect.max_identifier_bytes, min(caps.max_columns, self.dialect.max_columns), caps.max_event_tables
        )
        self.planner = Planner(self.limits)
        self.schema = StoredSchema()
        self._sessions: dict[str, Session] = {}
        self._sessions_lock = threading.Lock()

    # -- what an engine provides ------------------------------------------------------------

    @abstractmethod
    def _open_session(self) -> Session: ...

    @abstractmethod
    def cursor(self, consumer: str) -> Cursor: ...

    @abstractmethod
    def is_transient(self, error: BaseException) -> bool:
        """True for failures of the engine itself (connection lost, disk full), worth retrying as they
        are; False for failures a particular batch causes, which the worker isolates event by event."""

    @abstractmethod
    def refresh_schema(self) -> None:
        """Reread the stored schema, adopting tables it does not know (see stored_schema.py)."""

    @abstractmethod
    def close(self) -> None: ...

    # -- the shared flow --------------------------------------------------------------------

    def session(self, consumer: str) -> Session:
        """The consumer's own connection: sources load side by side, and one slow batch blocks no other."""
        with self._sessions_lock:
            session = self._sessions.get(consumer)
            if session is None:
                session = self._sessions[consumer] = self._open_session()
            return session

    def drop_session(self, consumer: str) -> None:
        with self._sessions_lock:
            session = self._sessions.pop(consumer, None)
        if session is not None:
            with contextlib.suppress(Exception):
                session.close()

    def position(self, consumer: str) -> tuple[int, int]:
        c = self.cursor(consumer)
        return c.seq, c.high_seq

    def check_log(self, consumer: str, log_generation: str, head: int) -> None:
        """Refuse to load after a cursor from another log, or one ahead of this log's head."""
        c = self.cursor(consumer)
        if c.seq == 0 and c.high_seq == 0:
            return
        if c.log_generation is not None and c.log_generation != log_generation:
            raise LogMismatch(
                f"{consumer} has loaded events up to seq {c.high_seq} of log {c.log_generation}, but the log is now"
                f" {log_generation}: the log was replaced or reset"
            )
        if c.high_seq > head:
            raise LogMismatch(
                f"{consumer} has loaded events up to seq {c.high_seq}, but the log ends at seq {head}:"
                " the log lost its newest events"
            )

    def load(
        self, consumer: str, schema: str, entries: Sequence[Entry], replay: bool = False,
        log_generation: str | None = None,
    ) -> dict[str, int]:
        """Load one source's batch and, unless replaying, move the cursor past it; rows per table.

        `replay`: entries sent again (a replay or re-drive): rows already present are skipped and
        the cursor stays where it is."""
        if not entries:
            return {}
        session = self.session(consumer)
        dedupe = replay or entries[0].seq <= self.cursor(consumer).high_seq
        known = self.schema.tables(schema)
        plan = self.planner.plan(entries, known, session.stage, f"t{next(_tags)}")
        for name, table in plan.relations.items():
            session.stage.register(name, table)
        try:
            session.begin()
            try:
                counts, extra = self._apply(session, schema, plan, known, entries, dedupe)
                if not replay:
                    session.set_cursor(consumer, entries[-1].seq, log_generation)
                session.commit()
            except BaseException:
                with contextlib.suppress(Exception):  # a failed COMMIT may have rolled back already
                    session.rollback()
                # The database may differ from what this process believed (a table dropped by hand):
                # read it again before the retry.
                with contextlib.suppress(Exception):
                    self.refresh_schema()
                raise
        finally:
            for name in plan.relations:
                with contextlib.suppress(Exception):
                    session.stage.unregister(name)
        self.schema.committed(schema, {**plan.columns_after(known), **extra})
        return counts

    def skip_to(self, consumer: str, seq: int, log_generation: str | None = None) -> None:
        """Move the cursor past an entry that cannot be loaded (it has been dead-lettered)."""
        session = self.session(consumer)
        session.begin()
        try:
            session.set_cursor(consumer, seq, log_generation)
            session.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                session.rollback()
            raise

    def adopt_log(self, consumer: str, log_generation: str, head: int) -> Cursor | None:
        """Recovery after the log was replaced or lost its newest events (`sluice recover`): the cursor
        restarts within this log, and what it holds is loaded again with deduplication on `id`.
        Returns the cursor it replaced, or None when it already belonged to this log."""
        old = self.cursor(consumer)
        if (old.seq, old.high_seq) == (0, 0):
            return None
        same = old.log_generation in (None, log_generation)
        if same and old.high_seq <= head:
            if old.log_generation is None:  # written before generations: adopt this log
                self.skip_to(consumer, old.seq, log_generation)
            return None
        session = self.session(consumer)
        session.begin()
        try:
            # Same log, lost tail: everything it still holds was loaded. Another log: reload it all.
            session.reset_cursor(consumer, head if same else 0, head, log_generation)
            session.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                session.rollback()
            raise
        return old

    def _apply(
        self, session: Session, schema: str, plan: BatchPlan, known: dict[str, dict[str, ColType]],
        entries: Sequence[Entry], dedupe: bool,
    ) -> tuple[dict[str, int], dict[str, dict[str, ColType]]]:
        """Run the plan inside the open transaction; (rows per table, discards' columns if they changed)."""
        extra: dict[str, dict[str, ColType]] = {}
        have = known.get(DISCARDS)
        if have is None:
            session.create_table(schema, DISCARDS, list(DISCARD_COLUMNS), primary_key=False)
            session.save_columns(schema, DISCARDS, list(DISCARD_COLUMNS), 0)
            extra[DISCARDS] = dict(DISCARD_COLUMNS)
        elif missing := [(n, t) for n, t in DISCARD_COLUMNS if n not in have]:  # written by an older sluice
            session.add_columns(schema, DISCARDS, missing)
            session.save_columns(schema, DISCARDS, missing, len(have))
            extra[DISCARDS] = {**have, **dict(missing)}
        for table, (kind, cols) in plan.new_tables.items():
            every = [*cols, *LOAD_TIME]
            session.create_table(schema, table, every, primary_key=kind.upsert)
            session.save_columns(schema, table, every, 0)
        for table, cols in plan.new_columns.items():
            session.add_columns(schema, table, cols)
            session.save_columns(schema, table, cols, len(known.get(table, {})))
        received = (entries[0].received_ms - 1000, entries[-1].received_ms + 1000)
        counts: dict[str, int] = {}
        for write in plan.writes:
            counts[write.table] = counts.get(write.table, 0) + session.write(schema, write, dedupe, received)
        if plan.discards:  # one statement: sent-again discards are checked against what was there before
            session.write_discards(schema, " UNION ALL ".join(f"SELECT * FROM ({d})" for d in plan.discards), dedupe)
        return counts, extra
