"""Which warehouse a report reads: the embedded DuckDB one, or a `postgres` destination by id or name.

Readers are chosen by the destination's type (a registry, as in sluice/backends.py), so a third warehouse
engine is one more entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sluice.analytics.reader import PostgresReader, Reader
from sluice.warehouse.readonly import QueryLimits


def _postgres(destination: Any, limits: QueryLimits) -> Reader:
    return PostgresReader(destination.config["url"], limits)


WAREHOUSE_READERS: dict[str, Callable[[Any, QueryLimits], Reader]] = {"postgres": _postgres}
EMBEDDED_NAMES = ("embedded", "duckdb")


def reader_factory(catalog: Any, embedded: Callable[[], Reader], limits: QueryLimits) -> Callable[[str | None], Reader]:
    """`reader(None)` (or "embedded") is the DuckDB warehouse; `reader(name)` the warehouse destination named."""

    def reader(name: str | None) -> Reader:
        if name is None or name in EMBEDDED_NAMES:
            return embedded()
        destination = catalog.get_destination(name)  # CatalogError (a ValueError) when there is none
        opener = WAREHOUSE_READERS.get(destination.type)
        if opener is None:
            raise ValueError(f"destination {name!r} is a {destination.type} destination, not a warehouse")
        return opener(destination, limits)

    return reader
