"""The log writer over a local socket: one writer process for log.db, fed by every other process.

Ingest processes hand their records to the writer process, and the delivery process its cursor
advances, dead letters and prunes, exactly as they would hand them to the writer thread in one
process (`writer.py`): an append is answered only after the group commit that holds it is on disk,
so a 200 still means fsynced.

Frames, both ways: a 9-byte header `(length: u32, request id: u32, kind: 1 byte)` and a payload.
Requests are `A` (an append: the records) and `C` (a call: the operation's name and arguments);
answers are `O` (ok: an append's flags, one byte per record, or a call's answer) and `E` (error:
the exception's type name and message). Several requests may be in flight on one connection; the
request id pairs each answer with its request.

Payloads are pickled (protocol 5: records go as plain tuples of ints, strings and bytes, which pickle
copies at C speed) and unpickled by a restricted unpickler that builds no class but the few named
by the caller (`Record`, `Entry`, and the delivery state's `Failure`). The socket lives in the
private data directory (mode 0600, umask 077): only its owner can connect, and the owner can
write log.db anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import pickle
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sluice.log.base import Entry, LogError, Record

_HEADER = struct.Struct("<IIc")
_MAX_FRAME = 1 << 30  # a request is at most one HTTP request's records (500 KB by default): far below this

APPEND, CALL, OK, ERROR = b"A", b"C", b"O", b"E"
# Exceptions a call may raise that its caller handles by type (the admin API answers 400 for them).
_KNOWN_ERRORS: dict[str, type[Exception]] = {"TypeError": TypeError, "ValueError": ValueError, "LogError": LogError}

ALWAYS_ALLOWED: tuple[type, ...] = (Record, Entry)


class Codec:
    """Pickle with a restricted unpickler: only the named classes (and plain data) come back."""

    def __init__(self, allowed: Iterable[type] = ()) -> None:
        self._allowed = {(c.__module__, c.__qualname__): c for c in (*ALWAYS_ALLOWED, *allowed)}

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=5)

    def loads(self, data: bytes) -> Any:
        return _Unpickler(io.BytesIO(data), self._allowed).load()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, allowed: dict[tuple[str, str], type]) -> None:
        super().__init__(file)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        cls = self._allowed.get((module, name))
        if cls is None:
            raise pickle.UnpicklingError(f"{module}.{name} may not cross the log socket")
        return cls


def frame(request_id: int, kind: bytes, payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), request_id, kind) + payload


class FrameReader:
    """Splits a byte stream into (request id, kind, payload) frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes, bytes]]:
        buf = self._buf
        buf += data
        frames = []
        start = 0
        while len(buf) - start >= _HEADER.size:
            length, request_id, kind = _HEADER.unpack_from(buf, start)
            if length > _MAX_FRAME:
                raise LogError(f"a frame of {length} bytes on the log socket: not a sluice peer")
            end = start + _HEADER.size + length
            if len(buf) < end:
                break
            frames.append((request_id, kind, bytes(buf[start + _HEADER.size : end])))
            start = end
        if start:
            del buf[:start]
        return frames


def error_payload(codec: Codec, error: BaseException) -> bytes:
    return codec.dumps((type(error).__name__, str(error)))


def raise_error(codec: Codec, payload: bytes) -> None:
    kind, message = codec.loads(payload)
    raise _KNOWN_ERRORS.get(kind, LogError)(message)


# -- the writer's side ---------------------------------------------------------------------------


class _ServerProtocol(asyncio.Protocol):
    """One client connection to the writer process."""

    def __init__(self, server: WriterServer) -> None:
        self._server = server
        self._reader = FrameReader()
        self._transport: asyncio.Transport | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None  # answers still pending are dropped: their records are stored anyway

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except LogError:
            if self._transport is not None:
                self._transport.close()
            return
        for request_id, kind, payload in frames:
            task = asyncio.ensure_future(self._answer(request_id, kind, payload))
            self._tasks.add(task)  # referenced until done, as asyncio asks
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, request_id: int, kind: bytes, payload: bytes) -> None:
        server = self._server
        codec = server.codec
        try:
            if kind == APPEND:
                flags = await server.writer.append([Record(*r) for r in codec.loads(payload)])
                answer = bytes(flags)
            elif kind == CALL:
                op, arguments = codec.loads(payload)
                answer = codec.dumps(await server.writer.call_async(op, **arguments))
            else:
                raise LogError(f"unknown request kind {kind!r}")
            out = frame(request_id, OK, answer)
        except Exception as e:
            out = frame(request_id, ERROR, error_payload(codec, e))
        if self._transport is not None:
            self._transport.write(out)


class WriterServer:
    """Serves a `Writer` (appends and named operations) on a listening Unix socket."""

    def __init__(self, writer: Any, codec: Codec) -> None:
        self.writer = writer
        self.codec = codec

    async def serve(self, sock: socket.socket) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_unix_server(lambda: _ServerProtocol(self), sock=sock)


# -- the clients' side ---------------------------------------------------------------------------


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, client: RemoteWriter) -> None:
        self._client = client
        self._reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[tuple[bytes, bytes]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._client._lost(self)
        error = LogError(f"the log writer went away ({exc or 'connection closed'}); retry later")
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except LogError:
            if self.transport is not None:
                self.transport.close()
            return
        for request_id, kind, payload in frames:
            future = self.pending.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result((kind, payload))


class RemoteWriter:
    """The writer of another process, reached over its Unix socket.

    Offers what the log and the delivery state use of a local `Writer`: `append` (async, pipelined on
    one connection per event loop) and `call` (blocking, for threads). `register` is a no-op: the
    operations run in the writer process, which registered them itself."""

    def __init__(self, path: str, codec: Codec, timeout: float = 60.0) -> None:
        self.path = path
        self.codec = codec
        self.timeout = timeout
        self._ids = iter(range(1, 1 << 32))
        self._ids_lock = threading.Lock()
        self._async: dict[asyncio.AbstractEventLoop, _ClientProtocol] = {}
        self._connecting: dict[asyncio.AbstractEventLoop, asyncio.Future[_ClientProtocol]] = {}
        self._sync = threading.local()

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """The writer process registers the operations; nothing to do on this side."""

    def _next_id(self) -> int:
        with self._ids_lock:
            n = next(self._ids, None)
            if n is None:
                self._ids = iter(range(1, 1 << 32))
                n = next(self._ids)
            return n

    # -- async: appends from an event loop ------------------------------------------------------

    def _lost(self, protocol: _ClientProtocol) -> None:
        for loop, p in list(self._async.items()):
            if p is protocol:
                del self._async[loop]

    async def _connection(self) -> _ClientProtocol:
        loop = asyncio.get_running_loop()
        protocol = self._async.get(loop)
        if protocol is not None and protocol.transport is not None:
            return protocol
        pending = self._connecting.get(loop)
        if pending is None:  # one connection attempt at a time, shared by every request that waits
            pending = self._connecting[loop] = loop.create_future()
            try:
                _, protocol = await loop.create_unix_connection(lambda: _ClientProtocol(self), self.path)
            except OSError as e:
                error = LogError(f"cannot reach the log writer ({e.strerror or e}); retry later")
                pending.set_exception(error)
                pending.exception()  # retrieved: no "never retrieved" warning when nobody else waits
                raise error from None
            finally:
                del self._connecting[loop]
            self._async[loop] = protocol
            pending.set_result(protocol)
            return protocol
        return await asyncio.shield(pending)

    async def _request(self, kind: bytes, payload: bytes) -> bytes:
        protocol = await self._connection()
        request_id = self._next_id()
        future: asyncio.Future[tuple[bytes, bytes]] = asyncio.get_running_loop().create_future()
        protocol.pending[request_id] = future
        assert protocol.transport is not None
        protocol.transport.write(frame(request_id, kind, payload))
        answer_kind, answer = await future
        if answer_kind == ERROR:
            raise_error(self.codec, answer)
        return answer

    async def append(self, records: Sequence[Record]) -> list[bool]:
        # Plain tuples: a named tuple pickles through a Python-level __getnewargs__, 2-3x slower per record.
        flags = await self._request(APPEND, self.codec.dumps([tuple(r) for r in records]))
        return [bool(b) for b in flags]

    async def call_async(self, op: str, **arguments: Any) -> Any:
        return self.codec.loads(await self._request(CALL, self.codec.dumps((op, arguments))))

    # -- sync: operations from threads ---------------------------------------------------------

    def call(self, op: str, **arguments: Any) -> Any:
        """Apply an operation in the writer's next group commit; blocks until it is on disk."""
        payload = frame(self._next_id(), CALL, self.codec.dumps((op, arguments)))
        sock = self._sync_socket()
        try:
            sock.sendall(payload)
            kind, answer = self._read_answer(sock)
        except OSError as e:
            self._drop_sync()
            raise LogError(f"the log writer went away ({e.strerror or e}); retry later") from None
        if kind == ERROR:
            raise_error(self.codec, answer)
        return self.codec.loads(answer)

    def _sync_socket(self) -> socket.socket:
        sock: socket.socket | None = getattr(self._sync, "sock", None)
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError as e:
                sock.close()
                raise LogError(f"cannot reach the log writer ({e.strerror or e}); retry later") from None
            self._sync.sock = sock
        return sock

    def _drop_sync(self) -> None:
        sock = getattr(self._sync, "sock", None)
        self._sync.sock = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _read_answer(self, sock: socket.socket) -> tuple[bytes, bytes]:
        reader = FrameReader()
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("the log writer closed the connection")
            frames = reader.feed(data)
            if frames:  # one request in flight on a thread's connection: this is its answer
                _, kind, payload = frames[0]
                return kind, payload

    def close(self) -> None:
        for protocol in list(self._async.values()):
            if protocol.transport is not None:
                protocol.transport.close()
        self._async.clear()
        self._drop_sync()
