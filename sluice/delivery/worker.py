"""One worker per (source, destination): read from its cursor, deliver, advance only on success."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sluice.catalog.models import Source
from sluice.delivery.backoff import backoff_delay
from sluice.destinations.base import Target
from sluice.log.base import Log
from sluice.metrics import Metrics
from sluice.settings import Settings

log = logging.getLogger("sluice.delivery")


@dataclass
class WorkerState:
    """What `deliveries status` shows for one worker."""

    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    attempts: int = 0
    delivered: int = 0


class Worker(threading.Thread):
    def __init__(self, log_: Log, source: Source, target: Target, settings: Settings, metrics: Metrics) -> None:
        super().__init__(name=f"deliver-{source.schema}-{target.label}", daemon=True)
        self.log = log_
        self.source = source
        self.target = target
        self.settings = settings
        self.metrics = metrics
        self.state = WorkerState()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        labels = (self.source.schema, self.target.label)
        linger = self.settings.load_linger_seconds
        while not self._stop.is_set():
            head = self.log.head()
            try:
                cursor = self.target.position()
                entries = self.log.read(self.source.id, cursor, self.settings.load_batch_max_events)
                if not entries:
                    if self.log.wait_for(head, 1.0) > head and not self._stop.is_set():
                        time.sleep(linger)  # let a burst gather into one batch
                    continue
                self.target.deliver(self.source, entries)
            except Exception as e:
                self.state.attempts += 1
                self.state.last_error = f"{type(e).__name__}: {e}"
                self.state.last_error_at = time.time()
                self.metrics.delivery_errors.labels(*labels, "transient").inc()
                delay = backoff_delay(
                    self.state.attempts, self.settings.retry_initial_seconds, self.settings.retry_max_seconds
                )
                log.warning("delivery to %s failed (retry in %.1fs): %s", self.target.label, delay, e)
                self._stop.wait(delay)
                continue
            self.state.attempts = 0
            self.state.last_success = time.time()
            self.state.delivered += len(entries)
            self.metrics.delivered.labels(*labels).inc(len(entries))
