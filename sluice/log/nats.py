"""The scale-out log: a NATS JetStream stream, one subject per source.

- **append** publishes each record to `<prefix>.<source_id>` with its messageId as `Nats-Msg-Id`, all of a
  request's records in flight together, and answers only when JetStream has acknowledged every one: on
  a stream with 3 replicas an acknowledgement means stored on a quorum (2 of 3), which plays the part of
  the embedded log's fsync. JetStream drops a repeated `Nats-Msg-Id` inside the stream's duplicate
  window (`nats_duplicate_window_seconds`) whichever node published it, and says so in its ack (the
  record counts as a duplicate, as in the embedded log); beyond the window the warehouse's `id` key
  deduplicates. If any publish fails the request fails (503) and the sender's retry is deduplicated.
- **sequence numbers** are the stream's own: stable, rising, never reused (a purge keeps them), the same
  on every node. `generation()` is an id made with the stream (kept in its description), so a warehouse
  cursor taken from a deleted and re-created stream is refused as today.
- **reading** by (source, after seq) uses short-lived ephemeral pull consumers filtered on the source's
  subject, positioned by sequence (or by time, for replays); a reader that carries on where the last
  read of its source stopped is reused, so steady delivery costs one pull request per batch. A reader
  (one replica) may sit on a server still catching up after a restart: it then returns a prefix of
  what the leader holds, never a gap, and the rest on a later read.
- **retention**: limits-based with `discard: new` and no age limit, so JetStream itself never drops an
  event; when the stream reaches `nats_max_bytes` publishes are refused and ingest answers 503
  (back-pressure) until delivery catches up and `prune` frees space. `prune` drops a source's events
  only below the position every destination has passed (the manager's positions, and every durable
  consumer's ack floor on the server, so a destination run by another node is counted too) and older
  than the retention.

Destination cursors are durable consumers of this stream (`sluice/delivery/jetstream_cursors.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
import orjson
from nats.aio.msg import Msg

from sluice.log.base import Entry, Log, LogError, Record
from sluice.log.nats_client import NatsConnection, NatsError
from sluice.settings import Settings

RECEIVED_HEADER = "Sluice-Received-Ms"
SHAPE_HEADER = "Sluice-Shape"
_DESCRIPTION = "sluice log "  # + the generation id
_READERS_KEPT = 256  # idle readers remembered per process (each is an ephemeral consumer on the server)
_READER_IDLE_SECONDS = 60  # the server deletes a reader idle this long
_NS = 1_000_000_000
_names = itertools.count(1)


@dataclass(frozen=True)
class JetStreamOptions:
    url: str
    stream: str = "SLUICE"
    replicas: int = 1
    duplicate_window_seconds: float = 120.0
    max_bytes: int = -1
    request_timeout_seconds: float = 5.0
    head_poll_seconds: float = 0.1

    @classmethod
    def from_settings(cls, settings: Settings) -> JetStreamOptions:
        return cls(
            url=settings.log,
            stream=settings.nats_stream,
            replicas=settings.nats_replicas,
            duplicate_window_seconds=settings.nats_duplicate_window_seconds,
            max_bytes=settings.nats_max_bytes,
            request_timeout_seconds=settings.nats_request_timeout_seconds,
            head_poll_seconds=settings.nats_head_poll_seconds,
        )

    @property
    def prefix(self) -> str:
        return f"{self.stream.lower()}.events"

    def subject(self, source_id: int) -> str:
        return f"{self.prefix}.{source_id}"


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _ms_rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _entry(msg: Msg) -> Entry:
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp ns>.<pending>
    tokens = msg.reply.split(".")
    seq, stored_ns = int(tokens[-4]), int(tokens[-2])
    headers = msg.headers or {}
    received = headers.get(RECEIVED_HEADER)
    shape = headers.get(SHAPE_HEADER)
    return Entry(
        seq,
        bytes.fromhex(shape) if shape else None,
        int(received) if received else stored_ns // 1_000_000,
        msg.data,
    )


class NatsLog(Log):
    def __init__(self, options: JetStreamOptions, readonly: bool = False, connection: NatsConnection | None = None):
        self.options = options
        self.stream = options.stream
        self.conn = connection or NatsConnection(options.url, options.request_timeout_seconds, name="sluice-log")
        self._readonly = readonly
        self._closed = threading.Event()
        self._head = 0
        self._head_at = 0.0
        self._head_lock = threading.Lock()
        self._head_refreshing = False  # a background refresh asked for from an event loop is under way
        # (source, after seq) -> (reader consumer, when last used): a read that carries on reuses its reader.
        self._readers: OrderedDict[tuple[int, int], tuple[str, float]] = OrderedDict()
        self._dropping: set[asyncio.Task[None]] = set()
        self._readers_lock = threading.Lock()
        # Acks of appends in flight, by reply subject; made on the connection's loop at the first append.
        self._acks: dict[str, asyncio.Future[bytes]] | None = None
        self._ack_prefix = ""
        try:
            info = self.conn.run(self._ensure_stream(), timeout=options.request_timeout_seconds * 10)
        except BaseException:
            self.conn.close()
            raise
        self._generation = self._generation_of(info)
        self._head = int(info["state"]["last_seq"]) if info else 0

    @classmethod
    def from_settings(cls, settings: Settings, readonly: bool = False) -> NatsLog:
        return cls(JetStreamOptions.from_settings(settings), readonly=readonly)

    # -- the stream -------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        o = self.options
        return {
            "name": o.stream,
            "description": f"{_DESCRIPTION}{uuid.uuid4().hex}",
            "subjects": [f"{o.prefix}.*"],
            "retention": "limits",  # JetStream never drops an event by itself ...
            "discard": "new",  # ... and refuses new ones when full: back-pressure, never loss
            "max_age": 0,
            "max_bytes": o.max_bytes,
            "max_msgs": -1,
            "max_msgs_per_subject": -1,
            "max_msg_size": -1,
            "max_consumers": -1,
            "storage": "file",
            "num_replicas": o.replicas,
            "duplicate_window": int(o.duplicate_window_seconds * _NS),
            "allow_direct": True,
        }

    async def _ensure_stream(self) -> dict[str, Any] | None:
        """The stream's info, creating it if needed. A cluster that has just started (or lost a server)
        may take longer than one request timeout to place a 3-replica stream: a request that timed out
        is asked again, twice (a create that did go through is then found "already in use")."""
        for attempt in range(3):
            try:
                return await self._ensure_stream_once()
            except NatsError as e:
                if e.code != 408 or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _ensure_stream_once(self) -> dict[str, Any] | None:
        try:
            return dict(await self.conn.api(f"STREAM.INFO.{self.stream}"))
        except NatsError as e:
            if e.code != 404 or self._readonly:
                if e.code == 404:
                    return None
                raise
        try:
            return dict(await self.conn.api(f"STREAM.CREATE.{self.stream}", self._config()))
        except NatsError as e:  # another node created it first: use theirs
            if "already in use" not in str(e):
                raise
            return dict(await self.conn.api(f"STREAM.INFO.{self.stream}"))

    @staticmethod
    def _generation_of(info: dict[str, Any] | None) -> str:
        if info is None:
            return ""
        description = info["config"].get("description") or ""
        if description.startswith(_DESCRIPTION):
            return description[len(_DESCRIPTION) :]
        # A stream made by hand: its creation time identifies it (a re-created stream gets a new one).
        return f"{info['config']['name']}@{info['created']}"

    def generation(self) -> str:
        return self._generation

    # -- appending ----------------------------------------------------------------------------

    async def append(self, records: Sequence[Record]) -> list[bool]:
        if not records:
            return []
        if self._readonly:
            raise LogError("this log was opened read-only")
        seqs_dupes = await self.conn.call(self._publish(records))
        stored = []
        top = 0
        for seq, duplicate in seqs_dupes:
            stored.append(not duplicate)
            top = max(top, seq)
        with self._head_lock:
            self._head = max(self._head, top)
        return stored

    async def _publish(self, records: Sequence[Record]) -> list[tuple[int, bool]]:
        """Every record in flight at once, each with its own reply subject; one subscription takes the acks."""
        nc = self.conn.nc
        if self._acks is None:
            self._ack_prefix = nc.new_inbox()
            self._acks = {}
            await nc.subscribe(f"{self._ack_prefix}.*", cb=self._on_ack)
        loop = asyncio.get_running_loop()
        o = self.options
        waiting: list[asyncio.Future[bytes]] = []
        replies: list[str] = []
        try:
            for r in records:
                reply = f"{self._ack_prefix}.{next(_names)}"
                future: asyncio.Future[bytes] = loop.create_future()
                self._acks[reply] = future
                waiting.append(future)
                replies.append(reply)
                # `also_seen_as` (an id a Drip webhook had before ids were scoped to the source) only exists in
                # embedded logs written before 0.2: a JetStream stream never held one.
                headers = {"Nats-Msg-Id": r.message_id, RECEIVED_HEADER: str(r.received_ms)}
                if r.shape:
                    headers[SHAPE_HEADER] = r.shape.hex()
                await nc.publish(o.subject(r.source_id), r.body, reply=reply, headers=headers)
            answers = await asyncio.wait_for(asyncio.gather(*waiting), o.request_timeout_seconds)
        except TimeoutError:
            raise LogError(
                f"JetStream did not acknowledge the events within {o.request_timeout_seconds:g} s"
                " (is a quorum of NATS servers up?)"
            ) from None
        except nats.errors.Error as e:  # not connected to any server
            raise LogError(f"could not send the events to NATS: {type(e).__name__}: {e}") from None
        finally:
            for reply in replies:  # answered ones are gone already; the rest will never be
                self._acks.pop(reply, None)
        out = []
        for raw in answers:
            ack = orjson.loads(raw) if raw else {}
            if "error" in ack or "seq" not in ack:  # the stream is full (back-pressure), or gone
                error = ack.get("error") or {}
                raise LogError(f"JetStream refused the events: {error.get('description') or raw[:200]!r}")
            out.append((int(ack["seq"]), bool(ack.get("duplicate"))))
        return out

    async def _on_ack(self, msg: Msg) -> None:
        assert self._acks is not None
        future = self._acks.pop(msg.subject, None)
        if future is None or future.done():
            return
        status = (msg.headers or {}).get("Status") if not msg.data else None
        if status == "503":  # no responders: no stream listens on the subject (yet)
            future.set_result(b'{"error":{"description":"no JetStream stream takes these events (no responders)"}}')
        else:
            future.set_result(msg.data)

    # -- reading -------------------------------------------------------------------------------

    def read(self, source_id: int, after_seq: int, limit: int, max_bytes: int | None = None) -> list[Entry]:
        return self.conn.run(self._read(source_id, after_seq, limit, max_bytes))

    async def _read(self, source_id: int, after_seq: int, limit: int, max_bytes: int | None = None) -> list[Entry]:
        with self._readers_lock:
            kept = self._readers.pop((source_id, after_seq), None)
        reader = None
        if kept is not None:
            if time.monotonic() - kept[1] < _READER_IDLE_SECONDS / 2:
                reader = kept[0]
            else:  # the server may be about to delete it for inactivity: start a fresh one
                await self._drop(kept[0])
        if reader is None:
            first = await self._next_seq(source_id, after_seq + 1)
            if first is None:
                return []
            reader = await self._reader(source_id, {"deliver_policy": "by_start_sequence", "opt_start_seq": first})
        try:
            msgs = await self._pull(reader, limit, max_bytes=max_bytes)
            if not msgs and max_bytes is not None:  # one entry larger than the cap: read it alone
                msgs = await self._pull(reader, 1)
            entries = [_entry(m) for m in msgs]
        except NatsError:  # the reader is gone (its server restarted): the next read makes a new one
            await self._drop(reader)
            raise
        self._keep(source_id, entries[-1].seq if entries else after_seq, reader)
        return entries

    def _keep(self, source_id: int, at: int, reader: str) -> None:
        with self._readers_lock:
            old = self._readers.pop((source_id, at), None)
            self._readers[(source_id, at)] = (reader, time.monotonic())
            evicted = [self._readers.popitem(last=False)[1] for _ in range(len(self._readers) - _READERS_KEPT)]
        for name, _ in [old, *evicted] if old else evicted:
            if name != reader:
                task = asyncio.get_running_loop().create_task(self._drop(name))
                self._dropping.add(task)  # keep a reference until it is done
                task.add_done_callback(self._dropping.discard)

    async def _next_seq(self, source_id: int, from_seq: int) -> int | None:
        """The seq of the source's first entry at or after `from_seq` (one cheap request), or None."""
        try:
            subject = self.options.subject(source_id)
            request = {"seq": max(from_seq, 1), "next_by_subj": subject}
            answer = await self.conn.api(f"STREAM.MSG.GET.{self.stream}", request)
        except NatsError as e:
            if e.code == 404:
                return None
            raise
        return int(answer["message"]["seq"])

    async def _reader(self, source_id: int, start: dict[str, Any]) -> str:
        name = f"sluice-read-{uuid.uuid4().hex[:12]}-{next(_names)}"
        config = {
            "name": name,
            **start,
            "ack_policy": "none",  # a reader only reads: positions are kept elsewhere
            "filter_subject": self.options.subject(source_id),
            "inactive_threshold": _READER_IDLE_SECONDS * _NS,
            "mem_storage": True,
            "num_replicas": 1,
            "max_deliver": 1,
            "replay_policy": "instant",
        }
        # CONSUMER.CREATE with a name (2.9): the consumer is made on the stream's leader.
        await self.conn.api(f"CONSUMER.CREATE.{self.stream}.{name}", {"stream_name": self.stream, "config": config})
        return name

    async def _pull(self, consumer: str, batch: int, timeout: float | None = None,
                    max_bytes: int | None = None) -> list[Msg]:
        """Up to `batch` messages (and about `max_bytes`) available now from a pull consumer (no waiting
        for new ones)."""
        nc = self.conn.nc
        inbox = nc.new_inbox()
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        sub = await nc.subscribe(inbox, cb=queue.put)
        try:
            request = f'"batch":{batch},"no_wait":true' + (f',"max_bytes":{max_bytes}' if max_bytes else "")
            await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{consumer}", f"{{{request}}}".encode(),
                             reply=inbox)
            out: list[Msg] = []
            deadline = time.monotonic() + (timeout or self.options.request_timeout_seconds)
            while len(out) < batch:
                try:
                    msg = await asyncio.wait_for(queue.get(), max(deadline - time.monotonic(), 0.001))
                except TimeoutError:
                    if out:
                        return out  # what arrived is in order; the rest comes with the next read
                    raise NatsError(f"JetStream did not answer a read of {consumer} in time", 408) from None
                status = (msg.headers or {}).get("Status") if not msg.data else None
                if status is None and msg.reply:
                    out.append(msg)
                elif status in ("404", "408", "409"):  # no (more) messages now / request expired / limits
                    break
                elif status == "100":  # heartbeat
                    continue
                else:
                    raise NatsError(f"JetStream could not read {consumer}: status {status}", int(status or 0))
            return out
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _drop(self, consumer: str) -> None:
        with contextlib.suppress(Exception):
            await self.conn.api(f"CONSUMER.DELETE.{self.stream}.{consumer}")

    # -- positions -----------------------------------------------------------------------------

    def head(self) -> int:
        """The stream's last seq: refreshed from the server at most every `head_poll_seconds`. Called on an
        event loop (ingest's /health and /metrics), it never waits for the server, which may be away for
        a request timeout: it answers what it knows and asks for a refresh in the background."""
        now = time.monotonic()
        if now - self._head_at < self.options.head_poll_seconds or self._closed.is_set():
            return self._head
        if _on_event_loop():
            if not self._head_refreshing:
                self._head_refreshing = True
                asyncio.run_coroutine_threadsafe(self._refresh_head(), self.conn.loop)
            return self._head
        with self._head_lock:
            if time.monotonic() - self._head_at >= self.options.head_poll_seconds:
                info = self.conn.run(self.conn.api(f"STREAM.INFO.{self.stream}"))
                self._head = max(self._head, int(info["state"]["last_seq"]))
                self._head_at = time.monotonic()
            return self._head

    async def _refresh_head(self) -> None:
        try:
            info = await self.conn.api(f"STREAM.INFO.{self.stream}")
            with self._head_lock:
                self._head = max(self._head, int(info["state"]["last_seq"]))
                self._head_at = time.monotonic()
        except Exception:  # NATS away: the next call asks again
            pass
        finally:
            self._head_refreshing = False

    def wait_for(self, after_seq: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            try:
                head = self.head()
            except NatsError:  # NATS is away: the caller's next read reports it
                head = self._head
            remaining = deadline - time.monotonic()
            if head > after_seq or remaining <= 0 or self._closed.is_set():
                return head
            self._closed.wait(min(self.options.head_poll_seconds, remaining))

    def seq_before(self, source_id: int, received_ms: int) -> int:
        """The seq before the source's first entry stored at or after `received_ms` (JetStream's store time,
        within milliseconds of the receipt time)."""
        first = self.conn.run(self._first_since(source_id, received_ms))
        return first - 1 if first is not None else self.last_seq(source_id)

    async def _first_since(self, source_id: int, ms: int) -> int | None:
        reader = await self._reader(source_id, {"deliver_policy": "by_start_time", "opt_start_time": _ms_rfc3339(ms)})
        try:
            msgs = await self._pull(reader, 1)
        finally:
            await self._drop(reader)
        return _entry(msgs[0]).seq if msgs else None

    def last_seq(self, source_id: int, until_ms: int | None = None) -> int:
        if until_ms is not None:
            first = self.conn.run(self._first_since(source_id, until_ms))
            if first is not None:
                return first - 1
        return self.conn.run(self._last_seq(source_id))

    async def _last_seq(self, source_id: int) -> int:
        try:
            answer = await self.conn.api(
                f"STREAM.MSG.GET.{self.stream}", {"last_by_subj": self.options.subject(source_id)}
            )
        except NatsError as e:
            if e.code == 404:
                return 0
            raise
        return int(answer["message"]["seq"])

    def depth(self, source_id: int, after_seq: int) -> int:
        return self.conn.run(self._depth(source_id, after_seq))

    async def _depth(self, source_id: int, after_seq: int) -> int:
        first = await self._next_seq(source_id, after_seq + 1)
        if first is None:
            return 0
        reader = await self._reader(source_id, {"deliver_policy": "by_start_sequence", "opt_start_seq": first})
        try:
            info = await self.conn.api(f"CONSUMER.INFO.{self.stream}.{reader}")
        finally:
            await self._drop(reader)
        return int(info["num_pending"])

    # -- retention -----------------------------------------------------------------------------

    def prune(self, keep_after: dict[int, int], older_than_ms: int) -> int:
        if self._readonly:
            raise LogError("this log was opened read-only")
        return self.conn.run(self._prune(keep_after, older_than_ms), timeout=120)

    async def durable_floors(self) -> dict[str, int]:
        """Filter subject -> the lowest ack floor of the durable consumers (destination cursors) on it."""
        floors: dict[str, int] = {}
        offset = 0
        while True:
            page = await self.conn.api(f"CONSUMER.LIST.{self.stream}", {"offset": offset})
            for info in page.get("consumers") or []:
                config = info["config"]
                if not config.get("durable_name"):
                    continue  # a reader
                subject = config.get("filter_subject", "")
                floor = int(info["ack_floor"]["stream_seq"])
                floors[subject] = min(floors.get(subject, floor), floor)
            offset += len(page.get("consumers") or [])
            if not page.get("consumers") or offset >= int(page.get("total", 0)):
                return floors

    async def _prune(self, keep_after: dict[int, int], older_than_ms: int) -> int:
        floors = await self.durable_floors()
        dropped = 0
        for source_id, position in keep_after.items():
            subject = self.options.subject(source_id)
            bound = min(position, floors.get(subject, position))
            first_young = await self._first_since(source_id, older_than_ms)
            if first_young is not None:
                bound = min(bound, first_young - 1)
            if bound <= 0:
                continue
            # Purge the subject's messages with seq < bound + 1: exactly those every reader has passed.
            answer = await self.conn.api(f"STREAM.PURGE.{self.stream}", {"filter": subject, "seq": bound + 1})
            dropped += int(answer.get("purged", 0))
        return dropped

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self._readers_lock:
            readers = [name for name, _ in self._readers.values()]
            self._readers.clear()
        with contextlib.suppress(Exception):
            self.conn.run(self._drop_all(readers), timeout=5)
        self.conn.close()

    async def _drop_all(self, readers: list[str]) -> None:
        await asyncio.gather(*(self._drop(r) for r in readers))
