"""The session rule for every console path (RequireToken in sluice/api/app.py hands them here).

- Open without a session: the sign-in form and one-time links (`/sign-in...`) and the stylesheet and
  script (`/static/...`); nothing else, not even a source's name.
- Everything else needs a live session cookie: a page answers 303 to the sign-in form, anything else 401.
- Every change (any method but GET and HEAD) needs the session's CSRF token, as the form field `csrf` or
  the `X-CSRF-Token` header, and must come from this site (Origin / Sec-Fetch-Site); the body is read
  here (within the request size limit) and handed on unchanged, so no handler can forget the check.
- Every console answer is kept out of caches and frames, and loads nothing from elsewhere (CSP).
"""

from __future__ import annotations

import ipaddress
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluice.console.session import COOKIE, CSRF_FIELD, CSRF_HEADER, SessionStore, csrf_ok, same_origin

OPEN_PREFIXES = ("/sign-in", "/static/")
SAFE_METHODS = ("GET", "HEAD")
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make browsers send `Origin: null`
    # pygal's SVG charts carry their own <style>; no script but the console's own file runs.
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
     b" frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
]


def session_id(headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"cookie")
    if not raw:
        return None
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(raw.decode("latin-1"))
    except Exception:  # a malformed Cookie header: no session
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel else None


def scheme_of(scope: Scope, trusted: list[str]) -> str:
    """http or https as the browser sees it: a trusted proxy (SLUICE_TRUSTED_PROXIES) that terminates TLS says
    so in X-Forwarded-Proto; nobody else may."""
    client = scope.get("client")
    if trusted and client:
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return str(scope.get("scheme", "http"))
        if any(address in ipaddress.ip_network(t, strict=False) for t in trusted):
            proto = dict(scope["headers"]).get(b"x-forwarded-proto", b"").decode("latin-1").split(",")[0].strip()
            if proto in ("http", "https"):
                return proto
    return str(scope.get("scheme", "http"))


class ConsoleGuard:
    """Applied by RequireToken to every path that is not the admin API's."""

    def __init__(self, store: SessionStore, max_body: int, trusted_proxies: list[str] | None = None) -> None:
        self.store = store
        self.max_body = max_body
        self.trusted = trusted_proxies or []

    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        headers = dict(scope["headers"])
        method = scope["method"]
        path: str = scope["path"]
        session = self.store.get(session_id(headers))
        scheme = scheme_of(scope, self.trusted)
        scope.setdefault("state", {}).update(console_session=session, console_scheme=scheme)
        if not path.startswith(OPEN_PREFIXES) and session is None:
            if method in SAFE_METHODS and not path.startswith("/live/stream"):
                await RedirectResponse("/sign-in", 303)(scope, receive, secured_send)
            else:
                await PlainTextResponse("sign in first", 401)(scope, receive, secured_send)
            return
        if method in SAFE_METHODS:
            await app(scope, receive, secured_send)
            return
        if not same_origin(headers, scheme):
            await PlainTextResponse("refused: this change did not come from the console's own pages", 403)(
                scope, receive, secured_send)
            return
        body = await self._read_body(receive)
        if body is None:
            await PlainTextResponse("request body too large", 413)(scope, receive, secured_send)
            return
        # Signing in has no session yet (same_origin above and SameSite=Strict guard it); every other change
        # must carry the session's token.
        if not path.startswith("/sign-in") and not csrf_ok(session, self._submitted(headers, body)):  # type: ignore[arg-type]
            await PlainTextResponse("refused: the form's CSRF token is missing or wrong; reload the page", 403)(
                scope, receive, secured_send)
            return
        await app(scope, _replay(body), secured_send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _submitted(headers: dict[bytes, bytes], body: bytes) -> str | None:
        header = headers.get(CSRF_HEADER)
        if header:
            return header.decode("latin-1")
        if headers.get(b"content-type", b"").startswith(b"application/x-www-form-urlencoded"):
            values = parse_qs(body.decode("utf-8", "replace")).get(CSRF_FIELD)
            return values[0] if values else None
        return None


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def set_session_cookie(response: Response, session_id_: str, secure: bool, max_age: int) -> None:
    response.set_cookie(COOKIE, session_id_, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=secure)


def clear_session_cookie(response: Response, secure: bool) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=secure)
