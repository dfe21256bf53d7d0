"""Sources: the list with what arrived, creating one in the seed's flow, keys and setup, rotate, delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sluice.catalog.models import Source
from sluice.catalog.store import CatalogError
from sluice.console.web import back, blocking, ctx_of, field, form, render
from sluice.services import sources as service
from sluice.sources import drip_connect


async def list_sources(request: Request) -> Response:
    ctx = ctx_of(request)
    sources = await blocking(ctx.catalog.list_sources)
    error = None
    try:
        arrived = await blocking(service.arrived, ctx.services.query, [s.schema for s in sources])
    except Exception as e:  # the warehouse is busy or failing: the list still shows
        arrived, error = {}, str(e)
    empty = service.Arrived(0, None)
    return render(request, "sources.html", sources=[(s, arrived.get(s.schema, empty)) for s in sources],
                  counts_error=error)


async def new_source(request: Request) -> Response:
    return render(request, "source_new.html", values={})


async def create_source(request: Request) -> Response:
    ctx = ctx_of(request)
    values = {k: field(await form(request), k) for k in ("type", "name", "schema")}
    try:
        source = await blocking(service.create, ctx.catalog, values["type"], values["name"], values["schema"])
    except (CatalogError, ValueError) as e:
        return render(request, "source_new.html", 400, values=values, error=str(e))
    return back(f"/sources/{source.id}", f"Created {source.name}: copy the keys below and follow the setup steps.")


async def _source(request: Request) -> Source | None:
    try:
        return await blocking(ctx_of(request).catalog.get_source, str(request.path_params["id"]))
    except CatalogError:
        return None


def _missing(request: Request) -> Response:
    return render(request, "not_found.html", 404, what="source")


async def show_source(request: Request) -> Response:
    source = await _source(request)
    if source is None:
        return _missing(request)
    settings = ctx_of(request).services.settings
    base = service.public_url(settings, server_running=True)
    connection = await blocking(drip_connect.drip_connection, settings, source.id) if source.type == "drip" else None
    return render(request, "source.html", source=source, public=source.public(base.url), drip_steps=service.DRIP_STEPS,
                  setup=service.setup_text(source, base.url), connection=connection,
                  url_warning=base.warning if source.type == "drip" else None)  # browsers may reach a private one


async def rotate_key(request: Request) -> Response:
    try:
        source = await blocking(ctx_of(request).catalog.rotate_key, str(request.path_params["id"]))
    except CatalogError:
        return _missing(request)
    return back(f"/sources/{source.id}", "New write key: the old one no longer works.")


async def confirm_delete(request: Request) -> Response:
    source = await _source(request)
    if source is None:
        return _missing(request)
    return render(request, "source_delete.html", source=source)


async def delete_source(request: Request) -> Response:
    ctx = ctx_of(request)
    source = await _source(request)
    if source is None:
        return _missing(request)
    if field(await form(request), "confirm") != source.schema:
        return render(request, "source_delete.html", 400, source=source,
                      error=f"Type {source.schema} to confirm; nothing was deleted.")
    await blocking(service.delete, ctx.catalog, str(source.id), ctx.write)
    return back("/sources", f"Deleted {source.name}; schema {source.schema} stays in the warehouse.")


async def connect(request: Request) -> Response:
    """Connect or disconnect the source's Drip account through Drip's webhooks API (sluice/sources/drip_connect.py)."""
    source = await _source(request)
    if source is None or request.path_params["action"] not in ("connect", "disconnect"):
        return _missing(request)
    ctx = ctx_of(request)
    values = await form(request)
    try:
        if request.path_params["action"] == "connect":
            done = await blocking(drip_connect.connect_drip, ctx.services.settings, ctx.catalog, source.schema,
                                  field(values, "account_id"), field(values, "api_token"))
            notice = f"Connected to Drip account {done['account_id']}: Drip now sends this source every event."
            if done.get("warning"):
                notice += f" Warning: {done['warning']}"
        else:
            await blocking(drip_connect.disconnect_drip, ctx.services.settings, ctx.catalog, source.schema)
            notice = "Disconnected: the webhook is removed from the Drip account."
    except drip_connect.DripConnectError as e:  # Drip refused, could not be reached, or nothing to disconnect
        return back(f"/sources/{source.id}", f"Drip: {e}")
    return back(f"/sources/{source.id}", notice)


ROUTES: list[BaseRoute] = [
    Route("/sources", list_sources, methods=["GET"]),
    Route("/sources", create_source, methods=["POST"]),
    Route("/sources/new", new_source, methods=["GET"]),
    Route("/sources/{id:int}", show_source, methods=["GET"]),
    Route("/sources/{id:int}/rotate-key", rotate_key, methods=["POST"]),
    Route("/sources/{id:int}/delete", confirm_delete, methods=["GET"]),
    Route("/sources/{id:int}/delete", delete_source, methods=["POST"]),
    Route("/sources/{id:int}/drip/{action:str}", connect, methods=["POST"]),
]
