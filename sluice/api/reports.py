"""`GET /api/reports/email` and `/api/reports/attribution` on the admin app (admin token, as every admin
path): the query parameters are the CLI's options (source, warehouse, by, since, until, conversion, value,
window, model); the answer is the report's JSON list, or 400 with the reason."""

from __future__ import annotations

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sluice.analytics.service import ReportError
from sluice.ingest.app import json_response
from sluice.warehouse.readonly import QueryRefused


async def report(request: Request) -> Response:
    services = request.app.state.services
    if services.reports is None:
        return json_response({"error": "reports are not served by this process"}, 404)
    kind = request.path_params["kind"]
    params = dict(request.query_params)
    try:
        rows = await run_in_threadpool(services.reports, kind, params)
    except (ReportError, QueryRefused) as e:
        return json_response({"error": str(e)}, 400)
    return Response(orjson.dumps(rows, default=str), media_type="application/json")


REPORT_ROUTES: list[BaseRoute] = [Route("/api/reports/{kind:str}", report, methods=["GET"])]
