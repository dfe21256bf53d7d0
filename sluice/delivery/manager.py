"""Starts and stops delivery workers as sources and destinations come and go."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sluice.catalog.models import Source
from sluice.delivery.worker import Worker
from sluice.destinations.base import Target
from sluice.ingest.auth import SourceRegistry
from sluice.log.base import Log
from sluice.metrics import Metrics
from sluice.settings import Settings

log = logging.getLogger("sluice.delivery")

# (source) -> {worker key: target factory}
Targets = Callable[[Source], dict[str, Callable[[], Target]]]


class DeliveryManager:
    def __init__(self, log_: Log, registry: SourceRegistry, targets: Targets, settings: Settings, metrics: Metrics):
        self.log = log_
        self.registry = registry
        self.targets = targets
        self.settings = settings
        self.metrics = metrics
        self.workers: dict[tuple[int, str], Worker] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delivery-manager", daemon=True)

    def start(self) -> None:
        self.sync()
        self._thread.start()

    def sync(self) -> None:
        """Make the running workers match the catalog."""
        wanted: dict[tuple[int, str], tuple[Source, Callable[[], Target]]] = {}
        for source in self.registry.all():
            for key, factory in self.targets(source).items():
                wanted[(source.id, key)] = (source, factory)
        for key in list(self.workers):
            if key not in wanted:
                self.workers.pop(key).stop()
        for key, (source, factory) in wanted.items():
            if key not in self.workers:
                worker = Worker(self.log, source, factory(), self.settings, self.metrics)
                self.workers[key] = worker
                worker.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.sync()
            except Exception:  # the catalog is briefly locked, say: try again next tick
                log.exception("could not sync delivery workers")

    def status(self) -> list[dict[str, Any]]:
        rows = []
        for (_source_id, _key), w in sorted(self.workers.items()):
            position = w.target.position()
            lag = self.log.depth(w.source.id, position) if hasattr(self.log, "depth") else None
            if lag is not None:
                self.metrics.lag.labels(w.source.schema, w.target.label).set(lag)
            rows.append(
                {
                    "source": w.source.schema,
                    "destination": w.target.label,
                    "cursor": position,
                    "lag": lag,
                    "last_success": w.state.last_success,
                    "last_error": w.state.last_error,
                    "delivered": w.state.delivered,
                }
            )
        return rows

    def stop(self) -> None:
        self._stop.set()
        for w in self.workers.values():
            w.stop()
        for w in self.workers.values():
            w.join(timeout=30)
        if self._thread.is_alive():
            self._thread.join(timeout=5)
