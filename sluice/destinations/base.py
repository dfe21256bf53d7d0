"""What a delivery worker needs from a destination."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from sluice.catalog.models import Source
from sluice.log.base import Entry


class Target(ABC):
    """A destination as seen by one worker: where its cursor is, and how to hand it a batch.

    `deliver` must advance `position()` past the batch only when the batch is safely delivered.
    """

    label: str

    @abstractmethod
    def position(self) -> int: ...

    @abstractmethod
    def deliver(self, source: Source, entries: Sequence[Entry]) -> None: ...
