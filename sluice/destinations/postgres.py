"""A PostgreSQL warehouse as a delivery target."""

from __future__ import annotations

from collections.abc import Sequence

from sluice.catalog.models import Destination, Source
from sluice.destinations.base import Failure, Target
from sluice.log.base import Entry
from sluice.warehouse.postgres_engine import PostgresWarehouse


class PostgresTarget(Target):
    transactional = True

    def __init__(self, destination: Destination) -> None:
        self.label = destination.name
        self.consumer = destination.consumer
        self.warehouse = PostgresWarehouse(destination.config["url"])

    def position(self) -> int:
        return self.warehouse.position(self.consumer)[0]

    def skip_to(self, seq: int) -> None:
        self.warehouse.skip_to(self.consumer, seq)

    def is_transient(self, error: BaseException) -> bool:
        return self.warehouse.is_transient(error)

    def deliver(self, source: Source, entries: Sequence[Entry], replay: bool = False) -> list[Failure]:
        self.warehouse.load(self.consumer, source.schema, entries, replay=replay)
        return []

    def close(self) -> None:
        self.warehouse.close()
