"""Starts and stops one delivery worker per (source, destination) as the catalog changes, prunes the log,
and reports delivery status.

Status, /metrics, /health and prunes use what each worker last knew of its position: none of them
ever waits on a destination, so one destination that is down holds up nothing else."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sluice.catalog.models import Destination, Source
from sluice.catalog.store import Catalog
from sluice.delivery.ownership import LocalOwners
from sluice.delivery.state import DeliveryState
from sluice.delivery.worker import Worker
from sluice.destinations import registry
from sluice.destinations.base import Target
from sluice.destinations.warehouse import warehouse_consumer
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
        embedded: Callable[[Source], Target] | None,
        settings: Settings,
        metrics: Metrics,
        owners: Any = None,
    ) -> None:
        self.log = log
        self.state = state
        self.catalog = catalog
        self.sources = sources
        self.embedded = embedded  # the built-in warehouse every source loads into (None: scale-out has none)
        # Which workers this process runs (delivery/ownership.py): all of them, or those whose lock it holds.
        self.owners = owners if owners is not None else LocalOwners()
        self.settings = settings
        self.metrics = metrics
        self.workers: dict[tuple[int, str], Worker] = {}
        # Stopped workers that may still be finishing a batch: no replacement starts until they end,
        # or two workers would deliver from one cursor (a quick disable + enable).
        self._stopping: dict[tuple[int, str], Worker] = {}
        self._sync_lock = threading.RLock()  # the manager's thread syncs; the admin API stops a forgotten worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delivery-manager", daemon=True)

    def start(self) -> None:
        self.sync()
        self._thread.start()

    def _wanted(self) -> dict[tuple[int, str], tuple[Source, Destination | None]]:
        wanted: dict[tuple[int, str], tuple[Source, Destination | None]] = {}
        sources = {s.id: s for s in self.sources.all()}
        if self.embedded is not None:
            for source in sources.values():
                wanted[(source.id, "warehouse")] = (source, None)
        for dest in self.catalog.list_destinations():
            if dest.enabled and dest.source_id in sources:
                wanted[(dest.source_id, dest.consumer)] = (sources[dest.source_id], dest)
        return wanted

    def sync(self) -> None:
        """Make the running workers match the catalog."""
        with self._sync_lock:
            self._sync()

    def _sync(self) -> None:
        wanted = self._wanted()
        owned = self.owners.alive()  # False: the locks are gone with their session, so is every worker
        for key in list(self.workers):
            if key not in wanted or not owned:
                worker = self.workers.pop(key)
                worker.stop()
                self._stopping[key] = worker
        for key, worker in list(self._stopping.items()):
            if not worker.is_alive():
                del self._stopping[key]
                if key not in self.workers:  # stopped for good here: another node may take it now
                    self.owners.release(*key)
        if not owned:
            return
        for key, (source, dest) in wanted.items():
            if (key in self.workers and self.workers[key].is_alive()) or key in self._stopping:
                continue
            if key not in self.workers and not self.owners.acquire(*key):
                continue  # another deliver node runs it
            if dest is None:
                assert self.embedded is not None
                target, names = self.embedded(source), ()
            else:
                target, names = registry.build(dest, self.settings), registry.names(dest)
            worker = Worker(self.log, self.state, source, target, self.settings, self.metrics, names)
            self.workers[key] = worker
            worker.start()

    def _run(self) -> None:
        next_prune = time.monotonic() + self.settings.prune_interval_seconds
        while not self._stop.wait(0.5):
            try:
                self.sync()
            except Exception as e:  # e.g. the catalog briefly locked: try again next tick
                logger.warning("could not sync delivery workers (retrying): %s: %s", type(e).__name__, e)
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + self.settings.prune_interval_seconds
                try:
                    self.prune()
                except Exception as e:
                    logger.warning("could not prune the log (retrying later): %s: %s", type(e).__name__, e)

    def prune(self) -> int:
        """Drop log entries every enabled destination of their source has, once past the retention.

        A source one of whose workers has not yet learnt its position (its destination has been down
        since the start) is not pruned this time; every other source is."""
        keep: dict[int, int] = {}
        unknown: set[int] = set()
        for (source_id, _), worker in list(self.workers.items()):
            position = worker.known_position
            if position is None:
                unknown.add(source_id)
                continue
            keep[source_id] = min(keep.get(source_id, position), position)
        older_than = int((time.time() - self.settings.log_retention_seconds) * 1000)
        return self.log.prune({k: v for k, v in keep.items() if k not in unknown}, older_than)

    def problems(self) -> list[dict[str, Any]]:
        """Destinations that have not made progress for `stall_seconds` (for /health)."""
        out = []
        for worker in list(self.workers.values()):
            failing = worker.failing_for()
            if failing is not None and failing >= self.settings.stall_seconds:
                out.append({
                    "source": worker.source.schema,
                    "destination": worker.target.label,
                    "failing_since": worker.failing_since_ms,
                    "error": worker.last_failure,
                })
        return out

    def status(self) -> list[dict[str, Any]]:
        """Every destination of the catalog (and each source's warehouse), running or not."""
        rows = []
        workers = dict(self.workers)
        sources = {s.id: s for s in self.sources.all()}
        # (source, worker key, cursor name, label, keeps its own cursor, enabled)
        wanted: list[tuple[Source, str, str, str, bool, bool]] = [
            (s, "warehouse", warehouse_consumer(s), "warehouse", True, True) for s in sources.values()
            if self.embedded is not None
        ]
        wanted += [
            (sources[d.source_id], d.consumer, d.consumer, d.name, d.type == "postgres", d.enabled)
            for d in self.catalog.list_destinations()
            if d.source_id in sources
        ]
        for source, key, consumer, label, transactional, enabled in wanted:
            worker = workers.get((source.id, key))
            cursor = worker.known_position if worker else None
            if cursor is None and not transactional:
                cursor = self.state.cursor(consumer)  # kept in log.db: readable without the destination
            lag = self.log.depth(source.id, cursor) if cursor is not None else None
            if lag is not None:
                self.metrics.lag.labels(source.schema, label).set(lag)
            failing = worker.failing_for() if worker else None
            if not enabled:
                state = "disabled"
            elif worker is None:
                state = "starting" if isinstance(self.owners, LocalOwners) else "elsewhere"
            elif failing is None:
                state = "ok"
            else:
                state = "stalled" if failing >= self.settings.stall_seconds else "retrying"
            rows.append({
                "source": source.schema,
                "destination": label,
                "consumer": consumer,
                "state": state,
                "cursor": cursor,
                "lag": lag,
                "failing_since": worker.failing_since_ms if worker else None,
                **self.state.status(consumer),
            })
        return rows

    def apply(self, op: str, **args: Any) -> Any:
        """One of the delivery state's named writes asked for by the CLI (through the admin API). Before a
        removed destination's state is forgotten its worker is stopped: a worker still running (the catalog
        is synced every 0.5 s) would otherwise find its cursor gone and send everything again from the start."""
        if op == "forget":
            self.stop_consumer(str(args.get("consumer")))
        return self.state.apply(op, **args)

    def stop_consumer(self, consumer: str, timeout: float = 30) -> None:
        with self._sync_lock:
            for key in [k for k, w in self.workers.items() if w.target.consumer == consumer]:
                worker = self.workers.pop(key)
                worker.stop()
                worker.join(timeout=timeout)
                self._stopping[key] = worker  # released by the next sync once it has ended

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for w in self.workers.values():
            w.stop()
        for w in self.workers.values():
            w.join(timeout=30)
        self.owners.close()
