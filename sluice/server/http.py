"""Running uvicorn servers on sockets a process inherited, until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn

from sluice.ingest.edge import protocol_for
from sluice.settings import Settings


class Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the process, which stops all its servers on one signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def config(app: Any, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=protocol_for(settings),
        lifespan="off",  # the process starts and stops everything around the listeners
        access_log=False,
        log_level="warning",
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 by default: the ingest app does it itself, only
        # for settings.trusted_proxies (sluice/ingest/app.py, IngestApp), so no client can pick its context.ip.
        proxy_headers=False,
        timeout_keep_alive=settings.keep_alive_timeout_seconds,  # type: ignore[arg-type]
        timeout_graceful_shutdown=10,
    )


def inherited(fd: int) -> socket.socket:
    """A listening socket handed down by the supervisor."""
    return socket.socket(fileno=fd)


async def serve(servers: list[tuple[Server, socket.socket]], started: Callable[[], None]) -> None:
    """Serve until SIGTERM (the supervisor's stop); `started` once every server listens. SIGINT is the
    supervisor's to handle: a terminal's Ctrl-C reaches every process of the group, and the supervisor
    stops its children in order."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server, _ in servers:
            if server.should_exit:  # a second SIGTERM: stop waiting for open requests
                server.force_exit = True
            server.should_exit = True

    loop.add_signal_handler(signal.SIGTERM, stop)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    while not all(server.started for server, _ in servers) and not any(t.done() for t in tasks):
        await asyncio.sleep(0.01)
    if all(server.started for server, _ in servers):
        started()
    else:
        stop()
    await asyncio.gather(*tasks)


def run(coroutine: Awaitable[Any]) -> Any:
    """Run on uvloop, as uvicorn would."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)  # type: ignore[arg-type]
