"""Destination cursors as JetStream durable consumers: one per (source, destination), on the server.

A cursor is a durable pull consumer named after the destination's consumer name, filtered on its
source's subject, acknowledging *all* up to a message (AckAll), and delivering headers only (it never
carries an event's body: reading is the log's job, `sluice/log/nats.py`). Its ack floor is the cursor:
replicated with the stream, kept across restarts of any client or of a minority of servers, and
readable by every node, so status, lag and the log's prune see every destination wherever it runs.

`commit(consumer, source, seq)` is called only after the destination has committed everything up to
`seq` (the worker's rule), and acknowledges the last message at or below `seq`. An acknowledgement
needs a delivered message, so the cursor pulls (headers only, about 200 bytes each) up to `seq` and
keeps what it pulled beyond it for the next commit. If the process dies, those are offered again
after `nats_ack_wait_seconds`; until then a restarted process cannot acknowledge past them, and keeps
the position it committed in memory: the ack floor catches up when they come back. The only effect
of a crash is the at-least-once redelivery every non-transactional destination already allows
(warehouses keep their own cursor with their rows and load nothing twice).
"""

from __future__ import annotations

import asyncio
import bisect
import threading
from dataclasses import dataclass, field

from nats.aio.msg import Msg

from sluice.log.nats import NatsLog
from sluice.log.nats_client import NatsError

_NS = 1_000_000_000
_PULL_MAX = 2000  # headers per pull while catching up to a commit


@dataclass
class _Held:
    """Messages this process pulled from a cursor and has not acknowledged yet, by stream seq."""

    seqs: list[int] = field(default_factory=list)
    msgs: dict[int, Msg] = field(default_factory=dict)
    committed: int = 0  # the position this process committed (the server's floor may lag behind it)


class JetStreamCursors:
    # Warehouses keep their own cursor; mirroring it here makes their position visible to every node
    # (status, lag, and the prune that must not drop what they have not loaded).
    mirrors_transactional = True

    def __init__(self, log: NatsLog, ack_wait_seconds: float) -> None:
        self.log = log
        self.conn = log.conn
        self.stream = log.stream
        self.ack_wait_seconds = ack_wait_seconds
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._locks: dict[str, asyncio.Lock] = {}  # on the connection's loop: one commit per cursor at a time

    def _state(self, consumer: str) -> _Held:
        with self._lock:
            return self._held.setdefault(consumer, _Held())

    def cursor(self, consumer: str) -> int:
        """The last seq the destination has committed (0: none yet, start from the oldest event)."""
        return max(self.conn.run(self._floor(consumer)), self._state(consumer).committed)

    async def _floor(self, consumer: str) -> int:
        try:
            info = await self.conn.api(f"CONSUMER.INFO.{self.stream}.{consumer}")
        except NatsError as e:
            if e.code == 404:
                return 0
            raise
        return int(info["ack_floor"]["stream_seq"])

    def commit(self, consumer: str, source_id: int, seq: int) -> None:
        self.conn.run(self._commit(consumer, source_id, seq), timeout=self.conn.timeout * 10)

    async def _ensure(self, consumer: str, source_id: int) -> None:
        config = {
            "durable_name": consumer,
            "description": f"sluice cursor of {consumer} over source {source_id}",
            "deliver_policy": "all",  # a new destination starts from the oldest event still in the log
            "ack_policy": "all",
            "ack_wait": int(self.ack_wait_seconds * _NS),
            "max_deliver": -1,
            "max_ack_pending": -1,
            "filter_subject": self.log.options.subject(source_id),
            "headers_only": True,
            "replay_policy": "instant",
        }
        # Idempotent: creating a durable that exists with the same configuration answers its info.
        await self.conn.api(
            f"CONSUMER.DURABLE.CREATE.{self.stream}.{consumer}", {"stream_name": self.stream, "config": config}
        )

    async def _commit(self, consumer: str, source_id: int, seq: int) -> None:
        lock = self._locks.setdefault(consumer, asyncio.Lock())
        async with lock:
            held = self._state(consumer)
            if seq <= held.committed:
                return
            floor = await self._floor_or_create(consumer, source_id)
            if seq <= floor:
                held.committed = seq
                return
            # Pull until a message beyond `seq` (or nothing more) is held: the last one at or below it is acked.
            while not held.seqs or held.seqs[-1] < seq:
                have = held.seqs[-1] if held.seqs else floor
                msgs = await self.log._pull(consumer, max(1, min(seq - have, _PULL_MAX)))
                if not msgs:
                    break
                for m in msgs:
                    s = int(m.reply.split(".")[-4])
                    if s <= floor:
                        continue
                    if s not in held.msgs:
                        bisect.insort(held.seqs, s)
                    held.msgs[s] = m  # a redelivery replaces the older handle: only the newest one acks
            i = bisect.bisect_right(held.seqs, seq)
            if i:
                last = held.msgs[held.seqs[i - 1]]
                # A request, not a publish: the server answers once the ack is applied (and replicated).
                await self.conn.nc.request(last.reply, b"+ACK", timeout=self.conn.timeout)
                for s in held.seqs[:i]:
                    del held.msgs[s]
                del held.seqs[:i]
            held.committed = seq

    async def _floor_or_create(self, consumer: str, source_id: int) -> int:
        try:
            info = await self.conn.api(f"CONSUMER.INFO.{self.stream}.{consumer}")
        except NatsError as e:
            if e.code != 404:
                raise
            await self._ensure(consumer, source_id)
            return 0
        return int(info["ack_floor"]["stream_seq"])

    def forget(self, consumer: str) -> None:
        with self._lock:
            self._held.pop(consumer, None)
        try:
            self.conn.run(self.conn.api(f"CONSUMER.DELETE.{self.stream}.{consumer}"))
        except NatsError as e:
            if e.code != 404:
                raise
