"""`POST /admin/drop-schema {"schema": S}`: remove a deleted source's tables from the embedded warehouse
(the process that owns the DuckDB file does it; `sluice demo --reset` asks for it)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sluice.api.app import string_field
from sluice.ingest.app import json_response
from sluice.ingest.body import BadRequest


def drop_source_schema(catalog: Any, warehouse: Any, schema: str) -> dict[str, Any]:
    """Drop `schema` from the warehouse, refusing while a source still loads into it."""
    users = [s for s in catalog.list_sources() if s.schema == schema]
    if users:
        raise ValueError(f"source {users[0].id} ({users[0].name}) still uses schema {schema!r}: delete it first")
    return {"schema": schema, "dropped": warehouse.drop_schema(schema)}


async def drop_schema(request: Request) -> Response:
    services = request.app.state.services
    try:
        schema = await string_field(request, "schema", "bad_request")
    except BadRequest as e:
        return json_response({"success": False, "error": e.message}, e.status)
    if services.drop_schema is None:
        return json_response({"error": "this process does not own a warehouse"}, 404)
    try:
        return json_response(await run_in_threadpool(services.drop_schema, schema))
    except ValueError as e:
        return json_response({"error": str(e)}, 400)


SCHEMA_ROUTES: list[BaseRoute] = [Route("/admin/drop-schema", drop_schema, methods=["POST"])]
