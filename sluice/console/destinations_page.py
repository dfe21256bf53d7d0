"""Destinations: status of every one (lag, last success and error, dead letters), adding one, enable/disable,
dead letters with their reasons, re-drive, replay by time range."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sluice.catalog.store import CatalogError
from sluice.console.web import back, blocking, ctx_of, field, form, render
from sluice.destinations.registry import DESTINATION_TYPES
from sluice.services import deliveries as delivery_service
from sluice.services import destinations as service

DEAD_LETTERS_SHOWN = 200


async def _status(request: Request) -> list[dict[str, Any]]:
    return list((await blocking(ctx_of(request).services.status))["deliveries"])


async def list_destinations(request: Request, values: dict[str, str] | None = None, error: str | None = None,
                            status: int = 200) -> Response:
    ctx = ctx_of(request)
    sources = await blocking(ctx.catalog.list_sources)
    return render(request, "destinations.html", status, rows=await _status(request), sources=sources,
                  types=DESTINATION_TYPES, values=values or {}, error=error)


async def add_destination(request: Request) -> Response:
    ctx = ctx_of(request)
    raw = await form(request)
    values = {k: field(raw, k) for k in ("source", "type", "name", "url", "headers", "secret", "batch_size",
                                         "account_id", "api_token", "base_url")}
    try:
        options: dict[str, Any] = {k: values[k] for k in ("url", "secret", "account_id", "api_token", "base_url")}
        options["headers"] = service.parse_headers(values["headers"].splitlines()) or None
        if values["batch_size"]:
            if not values["batch_size"].isdigit():
                raise ValueError("batch size must be a whole number")
            options["batch_size"] = int(values["batch_size"])
        if values["type"] not in DESTINATION_TYPES:
            raise ValueError(f"choose a type: {', '.join(DESTINATION_TYPES)}")
        if not values["name"]:
            raise ValueError("give the destination a name")
        dest = await blocking(service.add, ctx.catalog, values["source"], values["type"], values["name"], options)
    except (ValueError, CatalogError) as e:
        values["api_token"] = values["secret"] = ""  # never echoed back into the page
        return await list_destinations(request, values, str(e), 400)
    return back(f"/destinations/{dest.consumer}", f"Added {dest.name}: its worker starts within a second.")


async def _ref(request: Request) -> delivery_service.Ref | None:
    try:
        return await blocking(delivery_service.resolve_consumer, ctx_of(request).catalog,
                              request.path_params["consumer"])
    except CatalogError:
        return None


async def show_destination(request: Request) -> Response:
    ctx = ctx_of(request)
    ref = await _ref(request)
    if ref is None:
        return render(request, "not_found.html", 404, what="destination")
    row = next((r for r in await _status(request) if r["consumer"] == ref.consumer), None)
    dest = await blocking(ctx.catalog.get_destination, str(ref.dest_id)) if ref.dest_id is not None else None
    letters = await blocking(delivery_service.dead_letters, ctx.state, ref.consumer, DEAD_LETTERS_SHOWN)
    return render(request, "destination.html", ref=ref, row=row, dest=dest,
                  public=service.public(dest, ref.source.schema) if dest else None, letters=letters)


async def change_destination(request: Request) -> Response:
    ctx = ctx_of(request)
    ref = await _ref(request)
    action = request.path_params["action"]
    if ref is None:
        return render(request, "not_found.html", 404, what="destination")
    here = f"/destinations/{ref.consumer}"
    values = await form(request)
    try:
        if action == "retry":
            ids = None if field(values, "all") else [int(i) for i in values.get("id", []) if i.isdigit()]
            if ids == []:
                return back(here, "Tick the dead letters to re-drive, or re-drive all.")
            n = await blocking(delivery_service.retry, ctx.write, ref.consumer, ids)
            return back(here, f"{n} dead letter{'s' if n != 1 else ''} will be sent again now.")
        if action == "replay":
            start = delivery_service.parse_when(field(values, "since"))
            until = field(values, "until")
            end = delivery_service.parse_when(until) if until else delivery_service.parse_when("0s")
            n = await blocking(delivery_service.replay, ctx.log, ctx.write, ref, start, end)
            if n == 0:
                return back(here, f"No events of {ref.source.schema} in that range.")
            return back(here, f"Replaying {n} event{'s' if n != 1 else ''} of {ref.source.schema} to {ref.label}.")
        if ref.dest_id is None:
            return back(here, "The warehouse of a source cannot be disabled or removed.")
        if action in ("enable", "disable"):
            await blocking(service.set_enabled, ctx.catalog, str(ref.dest_id), action == "enable")
            return back(here, f"{ref.label} {action}d.")
        if action == "remove":
            if field(values, "confirm") != "yes":
                return back(here, "Tick the box to confirm; nothing was removed.")
            await blocking(service.remove, ctx.catalog, str(ref.dest_id), ctx.write)
            return back("/destinations", f"Removed {ref.label}.")
    except ValueError as e:  # a bad time, a range ending before it starts, ...
        return back(here, str(e))
    return render(request, "not_found.html", 404, what="action")


ROUTES: list[BaseRoute] = [
    Route("/destinations", list_destinations, methods=["GET"]),
    Route("/destinations", add_destination, methods=["POST"]),
    Route("/destinations/{consumer:str}", show_destination, methods=["GET"]),
    Route("/destinations/{consumer:str}/{action:str}", change_destination, methods=["POST"]),
]
