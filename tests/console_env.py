"""The console in-process: the admin app with its console over a real catalog, log, delivery state and DuckDB
warehouse in a temporary data dir, driven with Starlette's TestClient (no server process)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from sluice.api.app import AdminServices, create_admin_app
from sluice.catalog.store import Catalog
from sluice.console import app as web_console
from sluice.delivery.state import DeliveryState
from sluice.log.sqlite import SqliteLog
from sluice.settings import Settings
from sluice.warehouse.duckdb_engine import DuckDBWarehouse
from sluice.warehouse.readonly import QueryLimits

TOKEN = "test-admin-token-0123456789"


@dataclass
class ConsoleEnv:
    client: TestClient
    catalog: Catalog
    log: SqliteLog
    state: DeliveryState
    warehouse: DuckDBWarehouse
    console: web_console.Console
    run_dir: Path

    def sign_in(self) -> str:
        """Sign in with the admin token; the CSRF token of the new session."""
        r = self.client.post("/sign-in", data={"token": TOKEN}, follow_redirects=False)
        assert r.status_code == 303, r.text
        return self.csrf()

    def csrf(self, path: str = "/sources") -> str:
        page = self.client.get(path).text
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, page
        return found.group(1)


@contextmanager
def console_env(data_dir: Path, reports: Callable[[str, Mapping[str, str]], list[dict[str, Any]]] | None = None,
                base_url: str = "http://testserver", **overrides: Any) -> Iterator[ConsoleEnv]:
    data_dir.mkdir(parents=True, exist_ok=True)
    run_dir = data_dir / "run"
    run_dir.mkdir(exist_ok=True)
    settings = Settings(data_dir=data_dir, **overrides)
    catalog = Catalog(data_dir)
    log = SqliteLog(data_dir / "log.db", settings.dedup_window_seconds)
    state = DeliveryState(data_dir / "log.db")
    warehouse = DuckDBWarehouse(data_dir / "warehouse.duckdb")
    limits = QueryLimits(settings.query_time_limit_seconds, settings.query_max_rows)
    services = AdminServices(
        settings=settings, admin_token=TOKEN, query=lambda sql: warehouse.query(sql, limits),
        status=lambda: {"log_head": log.head(), "deliveries": []}, delivery_state=state.apply, reports=reports,
    )
    console = web_console.for_server(services, catalog, log, state, run_dir)
    app = create_admin_app(services, routes=console.routes, console_rule=console.guard)
    web_console.attach(app, console)
    try:
        with TestClient(app, base_url=base_url) as client:
            yield ConsoleEnv(client, catalog, log, state, warehouse, console, run_dir)
    finally:
        log.close()
        warehouse.close()
