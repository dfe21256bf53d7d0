"""The delivery process of a deliver node (`sluice serve --role deliver|all`).

It runs the workers this node owns among every deliver node (a PostgreSQL advisory lock per
(source, destination), delivery/ownership.py), reading JetStream and moving each destination's
durable consumer after the destination committed; it prunes what every durable consumer has passed,
and serves the admin API. There is no embedded DuckDB warehouse: sources load into PostgreSQL
destinations (`sluice destinations add SOURCE postgres ...`), queried there with any SQL client.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from sluice.analytics.reader import Reader
from sluice.analytics.service import ReportError, report_service
from sluice.api.app import AdminServices, create_admin_app
from sluice.api.reports import REPORT_ROUTES
from sluice.backends import open_owners
from sluice.delivery.manager import DeliveryManager
from sluice.metrics import Metrics
from sluice.server import http
from sluice.server.child import Child
from sluice.server.common import HEALTH_FILE, admin_token
from sluice.server.deliver_role import Publisher
from sluice.server.shared_open import open_shared
from sluice.warehouse.readonly import QueryLimits


def no_warehouse(sql: str) -> dict[str, Any]:
    raise ValueError(
        "a scale-out deployment has no embedded warehouse: query the PostgreSQL destination with psql or any"
        " SQL client (docs/scale-out.md)"
    )


def no_embedded_reader() -> Reader:
    raise ReportError("a scale-out deployment has no embedded warehouse: name the PostgreSQL destination the"
                      " report reads with --warehouse DESTINATION (warehouse=... in the API)")


def run(child: Child) -> None:
    settings = child.settings
    data_dir = Path(child.config.data_dir)
    if settings.deliver_nice:
        os.nice(settings.deliver_nice)
    parts = open_shared(settings)
    metrics = Metrics()
    manager = DeliveryManager(parts.log, parts.state, parts.catalog, parts.sources, None, settings, metrics,
                              owners=open_owners(settings))

    def status() -> dict[str, Any]:
        return {"log_head": parts.log.head(), "deliveries": manager.status()}

    admin_app = create_admin_app(AdminServices(
        settings=settings, admin_token=admin_token(data_dir), query=no_warehouse, status=status,
        delivery_state=parts.state.apply,
        reports=report_service(parts.catalog, no_embedded_reader, QueryLimits(settings.query_time_limit_seconds,
                                                                             settings.query_max_rows), settings),
    ), routes=REPORT_ROUTES)
    publisher = Publisher(manager, parts.log, metrics, Path(child.config.run_dir) / HEALTH_FILE,  # type: ignore[arg-type]
                          settings.status_interval_seconds)
    servers = [(http.Server(http.config(admin_app, settings)), http.inherited(child.config.fds["admin"]))]
    manager.start()
    publisher.start()
    try:
        http.run(http.serve(servers, child.ready))
    finally:
        publisher.halt.set()
        manager.stop()
        with contextlib.suppress(Exception):
            publisher.publish()
        parts.close()
