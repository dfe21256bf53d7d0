"""The console's routes and its guard, for `create_admin_app(services, routes=..., console_rule=...)`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from sluice.api.app import AdminServices
from sluice.catalog.store import Catalog
from sluice.console import auth_pages, destinations_page, live, pages, reports_page, sources_page
from sluice.console.guard import ConsoleGuard
from sluice.console.session import SessionStore
from sluice.console.web import ConsoleContext
from sluice.delivery.state import DeliveryState
from sluice.log.base import Log

STATIC_DIR = Path(__file__).parent / "static"


@dataclass
class Console:
    routes: list[BaseRoute]
    guard: ConsoleGuard
    context: ConsoleContext


def build(context: ConsoleContext) -> Console:
    """The console's pages over `context`. The app serving them must carry the context as `app.state.console`
    (`attach`)."""
    routes: list[BaseRoute] = [
        *auth_pages.ROUTES,
        *sources_page.ROUTES,
        *live.ROUTES,
        *pages.ROUTES,
        *destinations_page.ROUTES,
        *reports_page.ROUTES,
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    settings = context.services.settings
    return Console(routes, ConsoleGuard(context.store, settings.max_request_bytes, settings.trusted_proxy_list),
                   context)


def for_server(services: AdminServices, catalog: Catalog, log: Log, state: DeliveryState, run_dir: Path) -> Console:
    """The console of a running server: sessions kept in this process's memory."""
    settings = services.settings
    store = SessionStore(services.admin_token, settings.console_session_seconds, settings.console_link_seconds)
    return build(ConsoleContext(services, catalog, log, state, run_dir, store))


def attach(app: Starlette, console: Console) -> None:
    app.state.console = console.context
