"""One worker per (source, destination): read from its cursor, deliver, advance only on success.

Transient failures back off exponentially with jitter (or as long as Retry-After asks) for the
retry window, then the batch goes to dead letters; permanent refusals go to dead letters at once,
one event at a time. Batches go out in log order, so one user's events keep their order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from sluice.catalog.models import Source
from sluice.delivery.backoff import backoff_delay
from sluice.delivery.routing import wanted
from sluice.delivery.state import DeliveryState
from sluice.destinations.base import Failure, Target, TransientError
from sluice.log.base import Entry, Log, LogMismatch
from sluice.metrics import Metrics
from sluice.settings import Settings

logger = logging.getLogger("sluice.delivery")


class Worker(threading.Thread):
    def __init__(
        self,
        log: Log,
        state: DeliveryState,
        source: Source,
        target: Target,
        settings: Settings,
        metrics: Metrics,
        names: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name=f"deliver-{source.schema}-{target.label}", daemon=True)
        self.log = log
        self.state = state
        self.source = source
        self.target = target
        self.settings = settings
        self.metrics = metrics
        self.names = names  # how `integrations` may name this destination; () = not filtered
        self._labels = (source.schema, target.label)
        self._halt = threading.Event()
        self._attempts = 0
        self._failing_since: float | None = None
        self._bound = False  # the target's cursor checked against this log
        # What the rest of the server may know of this worker without waiting on its destination (a
        # PostgreSQL that is down blocks for its connect timeout): status, /metrics, /health and prunes.
        self.known_position: int | None = None
        self.failing_since_ms: int | None = None  # wall clock, for people
        self.last_failure: str | None = None

    def stop(self) -> None:
        self._halt.set()

    def position(self) -> int:
        position = self.target.position() if self.target.transactional else self.state.cursor(self.target.consumer)
        self.known_position = position
        return position

    def failing_for(self) -> float | None:
        """Seconds since delivery last worked, while it keeps failing; None while it works."""
        since = self._failing_since
        return None if since is None else time.monotonic() - since

    def _bind(self) -> None:
        """Before the first delivery: the target's cursor must belong to this log. Until it does (or while
        the destination cannot be reached to check), this fails like any delivery: retried with backoff,
        shown in status and /health."""
        try:
            self.target.bind_log(self.log)
        except LogMismatch as e:
            message = f"{e}. Stop the server and run `sluice recover` (docs/configuration.md#recovery)"
            logger.error("delivery %s -> %s: %s", self.source.schema, self.target.label, message)
            raise TransientError(message) from None
        self._bound = True

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                head = self.log.head()
                try:
                    if not self._bound:
                        self._bind()
                    busy = self._redrive() or self._replay() or self._step()
                except Exception as e:
                    error = e if isinstance(e, TransientError) else TransientError(f"{type(e).__name__}: {e}")
                    try:
                        self._failed(error)
                    except Exception:  # even the bookkeeping failed (disk full?): keep the worker alive
                        logger.exception("delivery %s -> %s: could not record a failure",
                                         self.source.schema, self.target.label)
                        self._halt.wait(self.settings.retry_max_seconds)
                    continue
                self._attempts, self._failing_since, self.failing_since_ms = 0, None, None
                if not busy and self.log.wait_for(head, 1.0) > head:
                    self._halt.wait(self.settings.load_linger_seconds)  # let a burst gather into one batch
        finally:
            self.target.close()

    # -- one unit of work each; True if there was something to do ---------------------------

    def _step(self) -> bool:
        entries = self.log.read(self.source.id, self.position(), self.settings.load_batch_max_events,
                                self.settings.load_batch_max_bytes)
        if not entries:
            return False
        consumer = self.target.consumer
        try:
            failures = self._deliver(entries, replay=False)
        except TransientError as e:
            if e.done_through is not None or e.failed:  # never send the part that got through again
                seq = None if self.target.transactional else e.done_through
                self.state.advance(consumer, self.source.id, seq, e.failed)
            raise
        except Exception as e:
            if self.target.transactional and self._attempts >= 2 and not self.target.is_transient(e):
                self._isolate(entries)  # the same batch keeps failing: find the event(s) at fault
                return True
            raise
        # A transactional target has committed its own cursor; this records dead letters and success.
        seq = None if self.target.transactional else entries[-1].seq
        self.state.advance(self.target.consumer, self.source.id, seq, failures, through=entries[-1].seq)
        return True

    def _isolate(self, entries: Sequence[Entry]) -> None:
        """Load a failing batch one event at a time; an event that fails alone is dead-lettered and
        skipped, so one bad event never holds up its source."""
        for entry in entries:
            try:
                self._deliver([entry], replay=False)
            except Exception as e:
                if self.target.is_transient(e):
                    raise
                reason = f"the {self.target.label} could not load it: {type(e).__name__}: {e}"
                logger.error("dead-lettering seq %d of %s: %s", entry.seq, self.source.schema, reason)
                self.state.advance(self.target.consumer, self.source.id, None, [Failure(entry, reason[:2000])])
                self.target.skip_to(entry.seq)
                self.metrics.dead_letters.labels(*self._labels).inc()

    def _replay(self) -> bool:
        replay = self.state.active_replay(self.target.consumer)
        if replay is None:
            return False
        limit = self.settings.load_batch_max_events
        # Never beyond the live cursor: live delivery sends what lies past it, and a replay that went
        # there too would send those events twice (a warehouse would load them twice).
        end = min(replay.end_seq, self.position())
        entries = [e for e in self.log.read(self.source.id, replay.next_seq, limit) if e.seq <= end]
        if not entries:
            self.state.advance_replay(replay.id, replay.end_seq, self.target.consumer, self.source.id)
            return True
        consumer = self.target.consumer
        try:
            failures = self._deliver(entries, replay=True)
        except TransientError as e:
            if e.done_through is not None or e.failed:
                done = e.done_through if e.done_through is not None else replay.next_seq
                self.state.advance_replay(replay.id, done, consumer, self.source.id, e.failed)
            raise
        self.state.advance_replay(replay.id, entries[-1].seq, consumer, self.source.id, failures)
        return True

    def _redrive(self) -> bool:
        taken = self.state.redrives(self.target.consumer, 500)
        if not taken:
            return False
        by_seq = {entry.seq: dl_id for dl_id, entry in taken}
        try:
            failures = self._deliver([entry for _, entry in taken], replay=True)
        except TransientError as e:
            handled = []
            if e.done_through is not None:  # the dead letters up to done_through went out
                for dl_id, entry in taken:
                    handled.append(dl_id)
                    if entry.seq == e.done_through:
                        break
            refused = {by_seq[f.entry.seq]: f.reason for f in e.failed}
            self.state.finish_redrive(self.target.consumer, [*handled, *refused], refused)
            raise
        refused = {by_seq[f.entry.seq]: f.reason for f in failures}
        self.state.finish_redrive(self.target.consumer, list(by_seq.values()), refused)
        return True

    def _deliver(self, entries: Sequence[Entry], replay: bool) -> list[Failure]:
        chosen = [e for e in entries if wanted(e.body, self.names)] if self.names else list(entries)
        failures = self.target.deliver(self.source, chosen, replay=replay) if chosen else []
        if self.target.transactional and not replay and (not chosen or chosen[-1].seq != entries[-1].seq):
            self.target.skip_to(entries[-1].seq)  # entries `integrations` kept from it: move past them
        self._count(len(chosen) - len(failures), refused=len(failures))
        return failures

    def _count(self, delivered: int, refused: int) -> None:
        if delivered:
            self.metrics.delivered.labels(*self._labels).inc(delivered)
        if refused:
            self.metrics.dead_letters.labels(*self._labels).inc(refused)

    # -- failure handling -------------------------------------------------------------------

    def _failed(self, error: TransientError) -> None:
        consumer = self.target.consumer
        if error.failed:
            self.metrics.dead_letters.labels(*self._labels).inc(len(error.failed))
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            self.failing_since_ms = int(time.time() * 1000)
        self._attempts += 1
        message = str(error)
        self.last_failure = message
        self.state.record_error(consumer, message)
        self.metrics.delivery_errors.labels(*self._labels, "transient").inc()
        if now - self._failing_since >= self.settings.retry_window_seconds and not self.target.transactional:
            self._give_up(message)
            return
        delay = backoff_delay(self._attempts, self.settings.retry_initial_seconds, self.settings.retry_max_seconds)
        if error.retry_after is not None:
            delay = max(error.retry_after, 0.0)
        logger.warning("delivery %s -> %s failed (attempt %d, retry in %.1fs): %s",
                       self.source.schema, self.target.label, self._attempts, delay, message)
        self._halt.wait(delay)

    def _give_up(self, message: str) -> None:
        """The retry window is over: events waiting longer than it go to dead letters, delivery moves on;
        younger events get their own full window."""
        entries = self.log.read(self.source.id, self.position(), self.settings.load_batch_max_events)
        window_s = self.settings.retry_window_seconds
        cutoff_ms = int((time.time() - window_s) * 1000)
        expired = [e for e in entries if e.received_ms <= cutoff_ms]
        if not expired and entries:
            expired = entries[:1]  # the one that failed the whole window (its first attempt came late)
        reason = f"gave up after retrying for {window_s / 3600:g} h: {message}"
        if expired:
            last = expired[-1].seq
            failures = [Failure(e, reason) for e in entries if e.seq <= last]
            self.state.advance(self.target.consumer, self.source.id, last, failures)
            self.metrics.dead_letters.labels(*self._labels).inc(len(failures))
        self._attempts, self._failing_since = 0, None
