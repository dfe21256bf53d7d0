"""The log-writer process: the one writer of log.db.

It owns the log's write connection and its group-commit thread (sluice/log/writer.py), with the
delivery state's operations registered beside the appends, and answers the other processes on the
Unix socket the supervisor bound (sluice/log/wire.py): ingest processes' appends, the delivery
process's cursor advances, dead letters and prunes. It stays small (no HTTP framework, no DuckDB),
so that it starts in a moment after a crash and its memory is the SQLite page cache.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

from sluice.datadir import LOG_FILE
from sluice.delivery.state import DeliveryState
from sluice.destinations.base import Failure
from sluice.log.sqlite import SqliteLog
from sluice.log.wire import Codec, WriterServer
from sluice.server.child import Child

# What may cross the socket besides records and entries: the delivery state's dead letters.
WIRE_CLASSES = (Failure,)


def run(child: Child) -> None:
    settings = child.settings
    path = Path(child.config.data_dir) / LOG_FILE
    log = SqliteLog(path, settings.dedup_window_seconds)
    assert log.writer is not None
    DeliveryState(path, log.writer)  # registers the delivery state's operations with the writer
    sock = socket.socket(fileno=child.config.fds["log"])
    server = WriterServer(log.writer, Codec(WIRE_CLASSES))

    async def serve() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        listening = await server.serve(sock)
        child.ready()
        await stop.wait()
        # The supervisor stops ingest and delivery first: what they queued is committed and answered
        # before the listener closes.
        listening.close()
        await asyncio.sleep(0.05)

    try:
        import uvloop

        uvloop.run(serve())
    finally:
        log.close()
