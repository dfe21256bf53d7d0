"""What every console page shares: the context it runs in, templates, forms, and the signed-in session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sluice.api.app import AdminServices
from sluice.catalog.store import Catalog
from sluice.console.session import Session, SessionStore
from sluice.delivery.state import DeliveryState
from sluice.log.base import Log
from sluice.services.deliveries import ms_iso

NAV = (("Sources", "/sources"), ("Live events", "/live"), ("Schema", "/schema"), ("Destinations", "/destinations"),
       ("Reports", "/reports"), ("SQL", "/sql"))


@dataclass
class ConsoleContext:
    """What the pages work on, inside the delivery process (which owns the warehouse and serves the admin app)."""

    services: AdminServices  # query, status, delivery_state (the delivery state's writer), reports
    catalog: Catalog
    log: Log
    state: DeliveryState  # read side: dead letters
    run_dir: Path  # ingest processes' refusal rings (sluice/ingest/refusals.py)
    store: SessionStore

    @property
    def write(self) -> Callable[..., Any]:
        return self.services.delivery_state


def _when(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, int):
        return ms_iso(value) or "-"
    return value.isoformat(sep=" ", timespec="seconds") if hasattr(value, "isoformat") else str(value)


ENV = Environment(loader=PackageLoader("sluice.console", "templates"), autoescape=select_autoescape(default=True),
                  trim_blocks=True, lstrip_blocks=True)
ENV.filters["when"] = _when


def ctx_of(request: Request) -> ConsoleContext:
    return request.app.state.console  # type: ignore[no-any-return]


def session_of(request: Request) -> Session | None:
    return request.scope.get("state", {}).get("console_session")


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    session = session_of(request)
    html = ENV.get_template(template).render(
        nav=NAV, path=request.url.path, csrf=session.csrf if session else "", signed_in=session is not None,
        notice=request.query_params.get("notice"), **values,
    )
    return HTMLResponse(html, status)


async def form(request: Request) -> dict[str, list[str]]:
    """The urlencoded form the guard already read and checked (CSRF included)."""
    return parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)


def field(values: dict[str, list[str]], name: str, default: str = "") -> str:
    return values.get(name, [default])[0].strip()


def back(path: str, notice: str | None = None, **params: str) -> RedirectResponse:
    """After a change: to a page (303, so a reload never repeats the change), with what happened."""
    query = {**params, **({"notice": notice} if notice else {})}
    return RedirectResponse(f"{path}?{urlencode(query)}" if query else path, 303)


Handler = Callable[[Request], Awaitable[Response]]


async def blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Catalog, log and warehouse calls are blocking: off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)
