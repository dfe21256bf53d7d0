"""CORS for every `/v1` path, so that analytics.js can post from any page (as Segment's API lets it).

analytics.js posts with an `Authorization: Basic` header, which makes the browser ask first (`OPTIONS`, a
preflight). The preflight carries no credentials, so it cannot tell which source the page will send to: it is
answered for every origin, and a source's allow-list is applied to the request itself (`origin_refusal`), whose
403 answer still carries `Access-Control-Allow-Origin` so that the page (and its console) can read the reason.

Every answer on a `/v1` path, errors included, names the origin it is for: the request's `Origin`, echoed (with
`Vary: Origin`), or `*` for a request without one (a server-side client).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluice.catalog.models import Source

METHODS = b"GET, POST, OPTIONS"
# What analytics.js and Segment's other clients send, for a preflight that names no headers.
DEFAULT_HEADERS = b"authorization, content-type, content-encoding, x-retry-count"


class Cors:
    def __init__(self, app: ASGIApp, max_age_seconds: int) -> None:
        self.app = app
        self.max_age = str(max_age_seconds).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        if scope["method"] == "OPTIONS":
            await self._preflight(scope, origin, send)
            return
        allow = _allow_headers(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *allow]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, origin: bytes | None, send: Send) -> None:
        requested = _header(scope, b"access-control-request-headers")
        headers = [
            *_allow_headers(origin),
            (b"access-control-allow-methods", METHODS),
            (b"access-control-allow-headers", requested or DEFAULT_HEADERS),
            (b"access-control-max-age", self.max_age),
            (b"vary", b"Access-Control-Request-Headers, Access-Control-Request-Method"),
            (b"allow", METHODS),
            (b"content-length", b"0"),
        ]
        # Chromium asks before a public page may call a private address (sluice on a LAN or on localhost).
        if _header(scope, b"access-control-request-private-network") == b"true":
            headers.append((b"access-control-allow-private-network", b"true"))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _allow_headers(origin: bytes | None) -> list[tuple[bytes, bytes]]:
    if origin is None:
        return [(b"access-control-allow-origin", b"*")]
    # Echoing the origin (not `*`) also serves a page that sends credentials; sluice sets no cookies.
    return [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    ]


def origin_refusal(source: Source, headers: Headers) -> str | None:
    """Why a browser page may not send to this source, or None. Only a request with an `Origin` header (a
    browser's) is checked: the allow-list keeps other sites' pages out, it does not authenticate servers."""
    if not source.allowed_origins:
        return None
    origin = headers.get("origin")
    if origin is None or origin in source.allowed_origins:
        return None
    return (
        f"sluice: pages from {origin} may not send to the source {source.schema!r}, which accepts browser events"
        f" only from its allowed origins; to add this one: sluice sources update {source.schema}"
        f" --allowed-origin {origin}"
    )
