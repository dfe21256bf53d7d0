"""A warehouse (DuckDB or PostgreSQL) as a delivery target: it keeps its cursor with its rows."""

from __future__ import annotations

from collections.abc import Sequence

from sluice.catalog.models import Destination, Source
from sluice.destinations.base import Failure, Target
from sluice.log.base import Entry, Log
from sluice.warehouse.loader import Caps, Warehouse


def warehouse_consumer(source: Source) -> str:
    """The embedded warehouse's cursor name for a source (every source loads into it)."""
    return f"warehouse-{source.id}"


class WarehouseTarget(Target):
    transactional = True

    def __init__(self, warehouse: Warehouse, consumer: str, label: str, owned: bool) -> None:
        self.warehouse = warehouse
        self.consumer = consumer
        self.label = label
        self._owned = owned  # the embedded warehouse is shared by every source's worker
        self._log_generation: str | None = None

    @classmethod
    def embedded(cls, warehouse: Warehouse, source: Source) -> WarehouseTarget:
        return cls(warehouse, warehouse_consumer(source), "warehouse", owned=False)

    @classmethod
    def postgres(cls, destination: Destination, caps: Caps) -> WarehouseTarget:
        from sluice.warehouse.postgres_engine import PostgresWarehouse

        return cls(PostgresWarehouse(destination.config["url"], caps), destination.consumer, destination.name,
                   owned=True)

    def bind_log(self, log: Log) -> None:
        # The cursor must belong to this log: loading after a cursor from another log would skip events.
        self.warehouse.check_log(self.consumer, log.generation(), log.head())
        self._log_generation = log.generation()

    def position(self) -> int:
        # The cursor lives in the warehouse itself, committed with the rows it covers.
        return self.warehouse.position(self.consumer)[0]

    def skip_to(self, seq: int) -> None:
        self.warehouse.skip_to(self.consumer, seq, self._log_generation)

    def is_transient(self, error: BaseException) -> bool:
        return self.warehouse.is_transient(error)

    def deliver(self, source: Source, entries: Sequence[Entry], replay: bool = False) -> list[Failure]:
        # Values that do not fit a column go to the discards table, so nothing is refused here.
        self.warehouse.load(self.consumer, source.schema, entries, replay=replay, log_generation=self._log_generation)
        return []

    def close(self) -> None:
        if self._owned:
            self.warehouse.close()
        else:
            self.warehouse.drop_session(self.consumer)
