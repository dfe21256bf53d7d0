"""Starts and stops one delivery worker per (source, destination) as the catalog changes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sluice.catalog.models import Destination, Source
from sluice.catalog.store import Catalog
from sluice.delivery.state import DeliveryState
from sluice.delivery.worker import Worker
from sluice.destinations import registry
from sluice.destinations.base import Target
from sluice.ingest.auth import SourceRegistry
from sluice.log.base import Log
from sluice.metrics import Metrics
from sluice.settings import Settings

logger = logging.getLogger("sluice.delivery")


class DeliveryManager:
    def __init__(
        self,
        log: Log,
        state: DeliveryState,
        catalog: Catalog,
        sources: SourceRegistry,
        embedded: Callable[[Source], Target],
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.log = log
        self.state = state
        self.catalog = catalog
        self.sources = sources
        self.embedded = embedded  # the built-in warehouse every source loads into
        self.settings = settings
        self.metrics = metrics
        self.workers: dict[tuple[int, str], Worker] = {}
        # Stopped workers that may still be finishing a batch: no replacement starts until they end,
        # or two workers would deliver from one cursor (a quick disable + enable).
        self._stopping: dict[tuple[int, str], Worker] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delivery-manager", daemon=True)

    def start(self) -> None:
        self.sync()
        self._thread.start()

    def _wanted(self) -> dict[tuple[int, str], tuple[Source, Destination | None]]:
        wanted: dict[tuple[int, str], tuple[Source, Destination | None]] = {}
        sources = {s.id: s for s in self.sources.all()}
        for source in sources.values():
            wanted[(source.id, "warehouse")] = (source, None)
        for dest in self.catalog.list_destinations():
            if dest.enabled and dest.source_id in sources:
                wanted[(dest.source_id, dest.consumer)] = (sources[dest.source_id], dest)
        return wanted

    def sync(self) -> None:
        """Make the running workers match the catalog."""
        wanted = self._wanted()
        for key in list(self.workers):
            if key not in wanted:
                worker = self.workers.pop(key)
                worker.stop()
                self._stopping[key] = worker
        self._stopping = {k: w for k, w in self._stopping.items() if w.is_alive()}
        for key, (source, dest) in wanted.items():
            if (key in self.workers and self.workers[key].is_alive()) or key in self._stopping:
                continue
            if dest is None:
                target, names = self.embedded(source), ()
            else:
                target, names = registry.build(dest, self.settings), registry.names(dest)
            worker = Worker(self.log, self.state, source, target, self.settings, self.metrics, names)
            self.workers[key] = worker
            worker.start()

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(0.5):
            ticks += 1
            try:
                self.sync()
                if ticks % 120 == 0:  # every minute
                    self.prune()
            except Exception:  # e.g. the catalog briefly locked: try again next tick
                logger.exception("could not sync delivery workers")

    def prune(self) -> int:
        """Drop log entries every enabled destination of their source has, once past the retention."""
        keep: dict[int, int] = {}
        for (source_id, _), worker in list(self.workers.items()):
            position = worker.position()
            keep[source_id] = min(keep.get(source_id, position), position)
        older_than = int((time.time() - self.settings.log_retention_seconds) * 1000)
        return self.log.prune(keep, older_than)

    def status(self) -> list[dict[str, Any]]:
        rows = []
        for worker in list(self.workers.values()):
            target = worker.target
            try:
                cursor: int | None = worker.position()
            except Exception:  # a warehouse that is down has no readable cursor right now
                cursor = None
            lag = self.log.depth(worker.source.id, cursor) if cursor is not None else None
            if lag is not None:
                self.metrics.lag.labels(worker.source.schema, target.label).set(lag)
            rows.append(
                {
                    "source": worker.source.schema,
                    "destination": target.label,
                    "consumer": target.consumer,
                    "cursor": cursor,
                    "lag": lag,
                    **self.state.status(target.consumer),
                }
            )
        return rows

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for w in self.workers.values():
            w.stop()
        for w in self.workers.values():
            w.join(timeout=30)
