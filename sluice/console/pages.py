"""Schema and SQL: what each source's warehouse schema holds, and a query box over the read-only admin path."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sluice.console.web import blocking, ctx_of, field, form, render
from sluice.services import schema as schema_service


async def schema_page(request: Request) -> Response:
    ctx = ctx_of(request)
    sources = await blocking(ctx.catalog.list_sources)
    chosen = request.query_params.get("source")
    source = next((s for s in sources if str(s.id) == chosen), sources[0] if sources else None)
    tables, error = [], None
    if source is not None:
        try:
            tables = await blocking(schema_service.describe, ctx.services.query, source.schema)
        except Exception as e:  # the warehouse is busy or failing: say so
            error = f"the warehouse did not answer: {e}"
    return render(request, "schema.html", sources=sources, source=source, tables=tables, error=error)


async def sql_page(request: Request) -> Response:
    return render(request, "sql.html", sql="", result=None)


async def run_sql(request: Request) -> Response:
    sql = field(await form(request), "sql")
    if not sql:
        return render(request, "sql.html", 400, sql=sql, result=None, error="Write a query first.")
    try:
        result = await blocking(ctx_of(request).services.query, sql)
    except Exception as e:  # refused (not read-only), over the time limit, or the SQL failed: say why
        return render(request, "sql.html", 400, sql=sql, result=None, error=str(e))
    return render(request, "sql.html", sql=sql, result=result)


ROUTES: list[BaseRoute] = [
    Route("/schema", schema_page, methods=["GET"]),
    Route("/sql", sql_page, methods=["GET"]),
    Route("/sql", run_sql, methods=["POST"]),
]
