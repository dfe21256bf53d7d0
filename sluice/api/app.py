"""The admin API: its own Starlette app, served by `sluice serve` on a listener of its own
(127.0.0.1:8089 by default), so that exposing ingest never exposes it.

Every path of the admin API (`/admin/...`, `/api/...`) needs the admin token (`<data-dir>/admin-token`, as
`Authorization: Bearer ...`), checked in one place: `RequireToken`, around the whole app. Every other path
belongs to the web console and passes the console's session rule instead (sluice/console/guard.py); without
a console every path needs the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sluice.delivery.state import CLI_OPS
from sluice.ingest.app import error_handlers, json_response
from sluice.ingest.body import BadRequest, decode_json, read_body
from sluice.settings import Settings


@dataclass
class AdminServices:
    """What the admin endpoints need; the server assembles it."""

    settings: Settings
    admin_token: str
    query: Callable[[str], dict[str, Any]]  # read-only SQL on the warehouse, within the query limits
    status: Callable[[], dict[str, Any]]  # the log's head and every destination's delivery status
    # Applies one of the delivery state's named writes through the log's single writer (the CLI's
    # replays, re-drives and removals, while the server runs).
    delivery_state: Callable[..., Any]
    # The reports (sluice/analytics/service.py): kind ("email" | "attribution" | "reconcile") and query params, named
    # as the CLI's options -> the JSON rows; raises ReportError (a ValueError) for a bad parameter.
    reports: Callable[[str, Mapping[str, str]], list[dict[str, Any]]] | None = None
    # Drops a schema no source uses from the embedded warehouse (sluice/api/schemas.py).
    drop_schema: Callable[[str], dict[str, Any]] | None = None


API_PREFIXES = ("/admin/", "/api/")
# The console's rule for its paths: (scope, receive, send, the app to call once allowed).
ConsoleRule = Callable[[Scope, Receive, Send, ASGIApp], Awaitable[None]]


class RequireToken:
    """The one place the admin token is checked: every request to the admin listener passes here."""

    def __init__(self, app: ASGIApp, token: str, console_rule: ConsoleRule | None = None) -> None:
        self.app = app
        self._token = token.encode()
        self._console_rule = console_rule

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._console_rule is not None and not scope["path"].startswith(API_PREFIXES):
            await self._console_rule(scope, receive, send, self.app)  # a console page: its session, not the token
            return
        if not self._allowed(scope):
            response = json_response(
                {"success": False, "error": "admin token required (Authorization: Bearer <data-dir>/admin-token)"},
                401,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        token = header[7:].strip() if header[:7].lower() == b"bearer " else b""
        # A write key never opens this: only the admin token kept in the data dir does.
        return bool(token) and hmac.compare_digest(token, self._token)


def _services(request: Request) -> AdminServices:
    return request.app.state.services  # type: ignore[no-any-return]


async def string_field(request: Request, field: str, code: str) -> str:
    """The one string an admin request's JSON body carries (`{field: "..."}`); BadRequest otherwise."""
    payload = decode_json(await read_body(request, _services(request).settings.max_request_bytes))
    if not isinstance(payload, dict) or not isinstance(payload.get(field), str):
        raise BadRequest(f'body must be {{"{field}": "..."}}', code)
    return str(payload[field])


async def admin_query(request: Request) -> Response:
    services = _services(request)
    try:
        sql = await string_field(request, "sql", "bad_query")
    except BadRequest as e:
        return json_response({"success": False, "error": e.message}, e.status)
    try:
        result = await run_in_threadpool(services.query, sql)
    except Exception as e:  # refused (QueryRefused), stopped, or the user's SQL failed: tell them why
        return json_response({"error": str(e)}, 400)
    return Response(orjson.dumps(result, default=str), media_type="application/json")


async def admin_status(request: Request) -> Response:
    return json_response(await run_in_threadpool(_services(request).status))


async def admin_delivery_state(request: Request) -> Response:
    """`{"op": name, "args": {...}}`: one of the delivery state's writes the CLI may ask for."""
    services = _services(request)
    try:
        payload = decode_json(await read_body(request, services.settings.max_request_bytes))
    except BadRequest as e:
        return json_response({"success": False, "error": e.message}, e.status)
    op = payload.get("op") if isinstance(payload, dict) else None
    args = payload.get("args") if isinstance(payload, dict) else None
    if op not in CLI_OPS or not isinstance(args, dict):
        return json_response({"error": f'body must be {{"op": one of {sorted(CLI_OPS)}, "args": {{...}}}}'}, 400)
    try:
        answer = await run_in_threadpool(lambda: services.delivery_state(op, **args))
    except TypeError as e:  # wrong arguments for the operation
        return json_response({"error": str(e)}, 400)
    return json_response({"result": answer})


ADMIN_ROUTES: list[BaseRoute] = [
    Route("/admin/query", admin_query, methods=["POST"]),
    Route("/admin/status", admin_status, methods=["GET"]),
    Route("/admin/delivery-state", admin_delivery_state, methods=["POST"]),
]


def create_admin_app(services: AdminServices, routes: Sequence[BaseRoute] = (),
                     console_rule: ConsoleRule | None = None) -> Starlette:
    """The admin app: its own routes plus `routes` (/api/reports/..., the console's pages under `console_rule`)."""
    app = Starlette(
        routes=[*ADMIN_ROUTES, *routes],
        middleware=[Middleware(RequireToken, token=services.admin_token, console_rule=console_rule)],
        exception_handlers=error_handlers(),
    )
    app.state.services = services
    return app
