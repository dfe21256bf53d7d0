"""An ingest process of the scale-out deployment (`sluice serve --role ingest|all`).

The same ingest app as on one machine, on the shared engines: write keys come from the PostgreSQL
catalog (kept in step by NOTIFY, so a key rotated on any node works here at once) and events are
appended to JetStream, answered 200 only once the stream acknowledged them (on a quorum with 3
replicas). JetStream refuses new events when it is full (discard new), which ingest answers 503:
the data dir's disk holds no events here, so it is not watched.
"""

from __future__ import annotations

from pathlib import Path

from sluice.ingest.app import Services, create_app
from sluice.metrics import Metrics
from sluice.server import http
from sluice.server.child import Child
from sluice.server.common import HEALTH_FILE
from sluice.server.ingest_role import PublishedHealth
from sluice.server.shared_open import open_shared


def run(child: Child) -> None:
    settings = child.settings
    parts = open_shared(settings)
    # With --role all, this node's delivery process publishes its problems as on one machine; an ingest-only
    # node has none to show (deliver nodes show theirs).
    health = PublishedHealth(Path(child.config.run_dir) / HEALTH_FILE, settings.status_interval_seconds)
    app = create_app(Services(
        settings=settings, registry=parts.sources, log=parts.log, metrics=Metrics(),
        status=lambda: None, problems=health.problems,
    ))
    servers = [(http.Server(http.config(app, settings)), http.inherited(child.config.fds["ingest"]))]
    try:
        http.run(http.serve(servers, child.ready))
    finally:
        parts.close()
