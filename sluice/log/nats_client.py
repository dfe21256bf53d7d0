"""One NATS connection on an event loop of its own, usable from threads and from other event loops.

nats-py is asyncio only, and a connection belongs to the loop it was made on. sluice calls it from
delivery workers (plain threads, blocking calls) and from ingest's uvloop (awaiting appends), and under
the process model from several processes each with their own loops. So each process keeps one
connection on a dedicated daemon thread running its own loop: `run()` blocks a thread on a coroutine
there, `call()` awaits one from any other loop. One hop costs about 0.3 ms on a busy 2-core machine (a
thread wake-up), once per append request, not per event: against ~14 ms for the acknowledgements of a
100-event request on a 3-replica stream (docs/scale-out.md has the measurements).

The connection reconnects by itself (every server of the URL is tried, forever): while no server
answers, calls fail after their timeout with the reason, and ingest answers 503.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
import orjson
from nats.aio.client import Client

T = TypeVar("T")
logger = logging.getLogger("sluice.nats")
_QUIET_SECONDS = 10.0  # one line per this long while a server stays away, not a traceback per attempt


def redacted(url: str) -> str:
    """The URL as logs and errors show it: credentials (`nats://user:password@host`) replaced."""
    return re.sub(r"(://|,)[^@,/]*@", r"\1***@", url)


class NatsError(RuntimeError):
    """JetStream refused a request or could not be reached; the message says which and why."""

    def __init__(self, message: str, code: int | None = None, err_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code  # the HTTP-like status of the API answer (404: not found, 503: no quorum ...)
        self.err_code = err_code  # JetStream's own error code (10059: stream not found, 10014: consumer ...)


def servers(url: str) -> list[str]:
    """`nats://h1:4222,h2:4222` -> every server, each with its scheme (nats-py wants one per entry)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("nats", "tls"):
        raise ValueError(f"a NATS log URL looks like nats://host:4222[,host2:4222...], not {url!r}")
    hosts = [h.strip() for h in rest.split(",") if h.strip()]
    if not hosts:
        raise ValueError(f"no server in {url!r}")
    return [f"{scheme}://{h}" for h in hosts]


class NatsConnection:
    def __init__(self, url: str, timeout: float, name: str = "sluice") -> None:
        self.url = url
        self.shown = redacted(url)  # what messages say: never the credentials
        self.timeout = timeout
        self._last_complaint = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-loop", daemon=True)
        self._thread.start()
        self.nc: Client = self.run(self._connect(servers(url), name), timeout=max(timeout, 10.0))

    async def _connect(self, urls: list[str], name: str) -> Client:
        try:
            return await nats.connect(
                servers=urls,
                name=name,
                connect_timeout=self.timeout,
                max_reconnect_attempts=-1,  # a cluster loses a server now and then: keep trying the others
                reconnect_time_wait=0.5,
                allow_reconnect=True,
                error_cb=self._complain,
            )
        except Exception as e:
            raise NatsError(f"cannot connect to NATS at {self.shown}: {type(e).__name__}: {e}") from None

    async def _complain(self, error: Exception) -> None:
        """nats-py's own handler logs a traceback per reconnection attempt: one line now and then instead."""
        now = time.monotonic()
        if now - self._last_complaint >= _QUIET_SECONDS:
            self._last_complaint = now
            logger.warning("NATS at %s: %s: %s (retrying)", self.shown, type(error).__name__, error)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the connection's loop and wait for it (from any thread but that loop's)."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout if timeout is not None else self.timeout * 4)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise NatsError(f"NATS at {self.shown} did not answer in time") from None

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await a coroutine that runs on the connection's loop, from another event loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def api(self, subject: str, payload: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """One JetStream API request (`$JS.API.<subject>`) on the connection's loop; the decoded answer, or
        NatsError with JetStream's description."""
        data = orjson.dumps(payload) if payload is not None else b""
        try:
            msg = await self.nc.request(f"$JS.API.{subject}", data, timeout=timeout or self.timeout)
        except nats.errors.NoRespondersError:
            raise NatsError(f"JetStream is not enabled or not reachable at {self.shown}", 503) from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise NatsError(f"JetStream at {self.shown} did not answer {subject.split('.')[0]} in time", 408) from None
        except nats.errors.Error as e:
            raise NatsError(f"NATS at {self.shown}: {type(e).__name__}: {e}") from None
        answer = orjson.loads(msg.data)
        error = answer.get("error") if isinstance(answer, dict) else None
        if error:
            raise NatsError(
                f"JetStream: {error.get('description', error)}", error.get("code"), error.get("err_code")
            )
        return answer

    def close(self) -> None:
        """Idempotent: a log and its cursors may share one connection."""
        if self._loop.is_closed() or not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):  # already disconnected: nothing left to flush
            self.run(self.nc.drain(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
