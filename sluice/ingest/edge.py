"""The HTTP edge: limits on what a client may hold of the server, added to uvicorn's httptools protocol.

uvicorn 0.54 with httptools has no limit on header size or count and no timeout before a request's
headers or body are complete (`h11_max_incomplete_event_size` exists for h11 only; `limit_concurrency`
answers 503 to new *requests* but never caps open connections; `timeout_keep_alive` only runs between
requests). httptools also buffers a header until its end, so one 100 MiB header blocked the server
for seconds. This subclass adds, per connection:

- a cap on open connections per listener: one more is answered 503 and closed at once;
- a header-size cap, counted as bytes arrive (so a huge header is cut off early) and checked exactly
  once the headers are parsed, and a header-count cap: 431;
- a deadline for the headers (from connecting, or from the first byte of the next request on a
  kept-alive connection) and one for the body: 408, then the connection is closed.

Every answer it writes itself is JSON, like the app's, and readable by any origin (CORS).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sluice.settings import Settings


@dataclass(frozen=True)
class EdgeLimits:
    max_header_bytes: int
    max_header_count: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    max_connections: int

    @classmethod
    def from_settings(cls, s: Settings) -> EdgeLimits:
        return cls(s.max_header_bytes, s.max_header_count, s.header_timeout_seconds, s.body_timeout_seconds,
                   s.max_connections)


def raw_answer(status: int, error: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, for when no app runs to give one."""
    body = orjson.dumps({"success": False, "error": error})
    # Any origin may read these answers: a browser page sending to ingest then sees why (431, 408, 503) instead of
    # an opaque CORS failure (sluice/ingest/cors.py). They carry nothing but the reason, so on the admin
    # listener, whose app answers no origin, this opens nothing.
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"access-control-allow-origin: *\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _HeadersTooLarge(Exception):
    pass


class EdgeProtocol(HttpToolsProtocol):
    limits: EdgeLimits  # set on the subclass that `protocol_for` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._in_headers = True
        self._seen_bytes = 0  # bytes received since the current request began, while in its headers
        self._header_bytes = 0  # exact size of the request line and headers, from the parser
        self._header_count = 0
        self._too_large: str | None = None
        self._deadline: asyncio.TimerHandle | None = None

    # -- connection -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            self.transport = transport
            transport.write(raw_answer(503, "too many open connections; retry later"))
            transport.close()
            return
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_seconds, "request headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return
        counting = self._in_headers
        super().data_received(data)
        # Bytes that arrived while the headers were still incomplete (an under-count when a request
        # begins mid-chunk, never an over-count): enough to stop a header that never ends.
        if counting and self._in_headers and not self.transport.is_closing():
            self._seen_bytes += len(data)
            if self._seen_bytes > self.limits.max_header_bytes:
                self._answer(431, self._size_error())

    # -- parser callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._seen_bytes = self._header_bytes = self._header_count = 0
        self._arm(self.limits.header_timeout_seconds, "request headers")

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        self._header_count += 1
        if self._header_count > self.limits.max_header_count:
            self._too_large = f"more than {self.limits.max_header_count:,} request headers"
            raise _HeadersTooLarge
        if self._header_bytes > self.limits.max_header_bytes:
            self._too_large = self._size_error()
            raise _HeadersTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body:
            self._arm(self.limits.body_timeout_seconds, "request body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request httptools cannot parse, as JSON (and 431 for our own limits)."""
        if self._too_large is not None:
            self._answer(431, self._too_large)
        else:
            self._answer(400, f"invalid HTTP request: {msg}")

    # -- helpers --------------------------------------------------------------------------------

    def _size_error(self) -> str:
        return f"request headers are larger than the limit of {self.limits.max_header_bytes:,} bytes"

    def _answer(self, status: int, error: str) -> None:
        """Answer and close; or only close when an answer of ours would garble the app's."""
        self._disarm()
        cycle = self.cycle  # while in headers: the previous request's, if any
        if self._in_headers:
            if cycle is not None and not cycle.response_complete:  # a pipelined request's answer is due
                self.transport.close()
                return
        elif cycle is not None:
            if cycle.response_started:  # the app answered (say, before reading the whole body)
                self.transport.close()
                return
            cycle.disconnected = True  # the app's receive() now says so, and its send() is a no-op
            cycle.message_event.set()
        self.transport.write(raw_answer(status, error))
        self.transport.close()

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, seconds, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, seconds: float, what: str) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self._answer(408, f"the {what} did not arrive within {seconds:g} s")


def protocol_for(settings: Settings) -> type[EdgeProtocol]:
    """The protocol class uvicorn builds per connection, carrying these settings' limits."""
    return type("SluiceEdgeProtocol", (EdgeProtocol,), {"limits": EdgeLimits.from_settings(settings)})
