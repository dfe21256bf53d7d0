"""An ingest process: the Tracking API and Drip's webhooks on the listening socket every ingest process
shares (the kernel hands each new connection to one of them).

It validates and canonicalises in its own interpreter (so N of them use N cores), hands the records
to the log-writer process and answers once they are on disk. It never imports DuckDB or Arrow: its
memory is the HTTP stack's. `/health` reads what the delivery process last published; `/metrics`
adds up every process's metrics from the shared directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson

from sluice.catalog.store import Catalog
from sluice.datadir import LOG_FILE
from sluice.ingest.app import Services, create_app
from sluice.ingest.auth import SourceRegistry
from sluice.ingest.pressure import DiskPressure
from sluice.ingest.refusals import RefusalRing
from sluice.log.sqlite import SqliteLog
from sluice.log.wire import Codec, RemoteWriter
from sluice.metrics import Metrics
from sluice.server import http
from sluice.server.child import Child
from sluice.server.common import HEALTH_FILE


class PublishedHealth:
    """The delivery process's latest word on destinations that cannot make progress."""

    def __init__(self, path: Path, interval: float) -> None:
        self.path = path
        # Several missed rounds in a row: the delivery process is stuck or restarting, and says so.
        self.stale_ms = int(max(5.0, 10 * interval) * 1000)

    def problems(self) -> list[dict[str, Any]]:
        try:
            published = orjson.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return []  # not published yet: the delivery process is starting
        age = int(time.time() * 1000) - int(published["at_ms"])
        if age > self.stale_ms:
            return [{"source": None, "destination": "delivery process", "failing_since": published["at_ms"],
                     "error": f"no status from the delivery process for {age / 1000:.0f} s (restarting?)"}]
        return list(published["problems"])


def run(child: Child) -> None:
    settings = child.settings
    data_dir = Path(child.config.data_dir)
    remote = RemoteWriter(child.config.log_socket, Codec())
    log = SqliteLog(data_dir / LOG_FILE, settings.dedup_window_seconds, remote=remote)
    health = PublishedHealth(Path(child.config.run_dir) / HEALTH_FILE, settings.status_interval_seconds)
    app = create_app(Services(
        settings=settings, registry=SourceRegistry(Catalog(data_dir)), log=log, metrics=Metrics(),
        status=lambda: None,  # the delivery process refreshes the lag gauges itself
        problems=health.problems,
        pressure=DiskPressure(data_dir, log, settings).check,
        refused=RefusalRing(Path(child.config.run_dir)).record,  # for the console's live events
    ))
    servers = [(http.Server(http.config(app, settings)), http.inherited(child.config.fds["ingest"]))]
    os.read(child.config.fds["go"], 1)  # the supervisor's word that delivery (and the admin API) is up
    os.close(child.config.fds["go"])
    try:
        http.run(http.serve(servers, child.ready))
    finally:
        log.close()
