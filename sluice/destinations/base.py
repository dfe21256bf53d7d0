"""What a delivery worker needs from a destination."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from sluice.catalog.models import Source
from sluice.log.base import Entry, Log


@dataclass(frozen=True)
class Failure:
    """One event the destination refused for good (a 4xx about that event): it goes to dead letters."""

    entry: Entry
    reason: str


class TransientError(Exception):
    """The destination could not take the batch now (timeout, connection error, 5xx, 408, 429).

    `retry_after`: seconds the destination asked us to wait (Retry-After), if it said.
    `done_through`: the last seq that *was* delivered before the failure, so the cursor can move
    past it and it is not sent twice.
    `failed`: events refused for good before the failure.
    """

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        done_through: int | None = None,
        failed: Sequence[Failure] = (),
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.done_through = done_through
        self.failed = list(failed)


class Target(ABC):
    """A destination as one worker sees it.

    `deliver` hands over a batch, in log order. It returns the events refused for good (they go
    to dead letters, the rest count as delivered) or raises TransientError to be retried.
    A `transactional` target keeps its own cursor, committed with the data (`position`); for the
    others the worker keeps the cursor in the log after each successful batch.
    """

    label: str  # shown in status and metrics, e.g. "warehouse" or the destination's name
    consumer: str  # the cursor's name
    transactional: bool = False

    def bind_log(self, log: Log) -> None:  # noqa: B027 - optional hook
        """Called once before delivery starts. A target keeping its own cursor checks that the cursor
        belongs to this log (warehouse.loader.LogMismatch otherwise)."""

    def position(self) -> int:
        raise NotImplementedError

    def skip_to(self, seq: int) -> None:
        """Transactional targets: move the own cursor past an entry that was dead-lettered."""
        raise NotImplementedError

    def is_transient(self, error: BaseException) -> bool:
        """Transactional targets: is this failure the engine's (retry as is) or the batch's (isolate)?"""
        return True

    @abstractmethod
    def deliver(self, source: Source, entries: Sequence[Entry], replay: bool = False) -> list[Failure]:
        """`replay`: these entries are re-sent (replay or re-drive); a transactional target must not
        move its cursor for them and must skip rows it already holds."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
