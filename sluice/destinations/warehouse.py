"""The embedded DuckDB warehouse as a delivery target (every source loads into it)."""

from __future__ import annotations

from collections.abc import Sequence

from sluice.catalog.models import Source
from sluice.destinations.base import Failure, Target
from sluice.log.base import Entry
from sluice.warehouse.duckdb_engine import DuckDBWarehouse


def warehouse_consumer(source: Source) -> str:
    return f"warehouse-{source.id}"


class EmbeddedWarehouseTarget(Target):
    label = "warehouse"
    transactional = True

    def __init__(self, warehouse: DuckDBWarehouse, source: Source) -> None:
        self.warehouse = warehouse
        self.consumer = warehouse_consumer(source)

    def position(self) -> int:
        # The cursor lives in the warehouse itself, committed with the rows it covers.
        return self.warehouse.position(self.consumer)[0]

    def skip_to(self, seq: int) -> None:
        self.warehouse.skip_to(self.consumer, seq)

    def is_transient(self, error: BaseException) -> bool:
        return self.warehouse.is_transient(error)

    def deliver(self, source: Source, entries: Sequence[Entry], replay: bool = False) -> list[Failure]:
        # Values that do not fit a column go to the discards table, so nothing is refused here.
        self.warehouse.load(self.consumer, source.schema, entries, replay=replay)
        return []
