"""Signing in (the admin token, or a one-time link from `sluice console`) and out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sluice.console.guard import clear_session_cookie, session_id, set_session_cookie
from sluice.console.session import Session
from sluice.console.web import ctx_of, field, form, render


def _secure(request: Request) -> bool:
    # Secure cookies only where the browser would send them back: HTTPS, directly or through a trusted proxy.
    return bool(request.scope.get("state", {}).get("console_scheme") == "https")


def _signed_in(request: Request, session: Session) -> Response:
    response = RedirectResponse("/sources", 303)
    set_session_cookie(response, session.id, _secure(request), int(ctx_of(request).store.session_seconds))
    return response


async def sign_in_form(request: Request) -> Response:
    return render(request, "sign_in.html")


async def sign_in(request: Request) -> Response:
    session = ctx_of(request).store.sign_in(field(await form(request), "token"))
    if session is None:
        return render(request, "sign_in.html", 401, error="That is not the admin token.")
    return _signed_in(request, session)


async def sign_in_link(request: Request) -> Response:
    session = ctx_of(request).store.sign_in_with_link(request.path_params["code"])
    if session is None:
        return render(request, "sign_in.html", 401,
                      error="That sign-in link was used already or has expired: run `sluice console` for a new one.")
    return _signed_in(request, session)


async def sign_out(request: Request) -> Response:
    sid = session_id(dict(request.scope["headers"]))
    if sid:
        ctx_of(request).store.sign_out(sid)
    response = RedirectResponse("/sign-in?notice=Signed+out.", 303)
    clear_session_cookie(response, _secure(request))
    return response


async def new_link(request: Request) -> Response:
    """`sluice console`: a one-time sign-in link (an admin API path: the Bearer token guards it)."""
    store = ctx_of(request).store
    base = str(request.base_url).rstrip("/")
    url = f"{base}/sign-in/link/{store.new_link_code()}"
    return JSONResponse({"url": url, "expires_in_seconds": store.link_seconds})


async def home(request: Request) -> Response:
    return RedirectResponse("/sources", 303)


ROUTES: list[BaseRoute] = [
    Route("/", home),
    Route("/sign-in", sign_in_form, methods=["GET"]),
    Route("/sign-in", sign_in, methods=["POST"]),
    Route("/sign-in/link/{code}", sign_in_link, methods=["GET"]),
    Route("/sign-out", sign_out, methods=["POST"]),
    Route("/admin/console-link", new_link, methods=["POST"]),
]
