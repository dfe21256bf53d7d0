"""The log interface: an append-only, ordered, durable sequence of canonical messages.

Backends, chosen by name in sluice/backends.py: SQLite WAL (embedded, `sqlite.py`) and NATS JetStream
(`nats.py`: `append` publishes with the messageId as `Nats-Msg-Id` and awaits the acks; `read` pulls
from a per-source subject). Destination positions live in the delivery state (sluice/delivery/).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple


class Record(NamedTuple):
    """One canonical message on its way into the log."""

    source_id: int
    message_id: str
    received_ms: int
    shape: bytes  # digest of the message's key structure (sluice/ingest/shape.py): loaders plan per shape
    body: bytes  # canonical JSON
    # An older messageId the same message may have been stored under (Drip webhooks before their ids were
    # scoped to the source): seen within the dedup window, it makes this record a duplicate too.
    also_seen_as: str | None = None


class Entry(NamedTuple):
    """One message read back from the log."""

    seq: int
    shape: bytes | int | None  # the digest; None (or an int, from logs written before 0.2) means "not known"
    received_ms: int
    body: bytes


class LogMismatch(RuntimeError):
    """A cursor kept outside the log (in a warehouse) that belongs to another log, or is ahead of this
    one: delivering after it would skip events, so delivery stops and says so."""


class LogError(RuntimeError):
    """The log could not make an append durable (disk full, I/O error)."""


class Log(ABC):
    @abstractmethod
    async def append(self, records: Sequence[Record]) -> list[bool]:
        """Durably append; returns, per record, True if stored or False if a duplicate messageId."""

    @abstractmethod
    def read(self, source_id: int, after_seq: int, limit: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries of one source with seq > after_seq, in order: at most `limit` of them, and no more than
        `max_bytes` of bodies (but always at least one)."""

    @abstractmethod
    def head(self) -> int:
        """The highest seq committed so far (0 when empty)."""

    @abstractmethod
    def generation(self) -> str:
        """This log's identity, made when it was created: seqs mean something only within one log, so
        every cursor that lives outside it (in a warehouse) records the generation it counts in."""

    @abstractmethod
    def wait_for(self, after_seq: int, timeout: float) -> int:
        """Block until something beyond after_seq is committed or timeout passes; returns head()."""

    @abstractmethod
    def seq_before(self, source_id: int, received_ms: int) -> int:
        """The seq just before the source's first entry received at or after received_ms (for replay)."""

    @abstractmethod
    def last_seq(self, source_id: int, until_ms: int | None = None) -> int:
        """The source's last seq (received before until_ms, if given)."""

    @abstractmethod
    def depth(self, source_id: int, after_seq: int) -> int:
        """How many of the source's entries lie beyond after_seq (a consumer's lag)."""

    @abstractmethod
    def prune(self, keep_after: dict[int, int], older_than_ms: int) -> int:
        """Drop entries every consumer of their source has passed (source_id -> min cursor) that are
        also older than the retention; returns how many were dropped."""

    def size_bytes(self) -> int:
        """Bytes the log's data takes on disk (for backpressure); 0 when the backend cannot say."""
        return 0

    @abstractmethod
    def close(self) -> None: ...
