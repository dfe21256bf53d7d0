"""Email reports (issue 11's analytics, through `AdminServices.reports`): tables and charts of rates by
campaign, rates over time, attribution by campaign; source and period filters; CSV; the definitions."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sluice.console import charts
from sluice.console.web import blocking, ctx_of, render

EMAIL_COLUMNS = ("key", "deliveries", "unique_opens", "open_rate", "unique_clicks", "click_rate",
                 "click_to_open_rate", "bot_clicks", "unsubscribes", "unsubscribe_rate", "hard_bounces",
                 "hard_bounce_rate", "complaints", "complaint_rate", "complaint_alert")
ATTRIBUTION_COLUMNS = ("key", "conversions", "revenue", "touches")
RATES = (("open_rate", "Open rate"), ("click_rate", "Click rate"), ("click_to_open_rate", "Click-to-open rate"),
         ("unsubscribe_rate", "Unsubscribe rate"), ("hard_bounce_rate", "Hard bounce rate"),
         ("complaint_rate", "Complaint rate"))
EMAIL_PARAMS = ("source", "by", "since", "until")
ATTRIBUTION_PARAMS = ("source", "since", "until", "conversion", "value", "window", "model")
DEFAULTS = {"since": "30d", "by": "campaign", "conversion": "Order Completed", "value": "revenue", "window": "5d",
            "model": "last"}
DEFINITIONS = Path(__file__).resolve().parents[2] / "docs" / "reports.md"


def _params(request: Request, names: tuple[str, ...], **fixed: str) -> dict[str, str]:
    """The filters as the CLI's options name them; empty ones left out (the report's defaults apply)."""
    out = {n: request.query_params.get(n, DEFAULTS.get(n, "")).strip() for n in names}
    return {k: v for k, v in {**out, **fixed}.items() if v}


def _run(request: Request, kind: str, params: Mapping[str, str]) -> Any:
    reports = ctx_of(request).services.reports
    assert reports is not None
    return blocking(reports, kind, params)


async def _section(request: Request, kind: str, params: Mapping[str, str]) -> tuple[list[dict[str, Any]], str | None]:
    try:
        return await _run(request, kind, params), None
    except ValueError as e:  # ReportError: a bad filter, an unknown source or event; said as the CLI says it
        return [], str(e)
    except Exception as e:  # the warehouse failed: the rest of the page still shows
        return [], f"the report failed: {e}"


def _rate_series(rows: list[dict[str, Any]], names: tuple[tuple[str, str], ...]) -> dict[str, list[Any]]:
    return {label: [r.get(key) for r in rows] for key, label in names}


async def reports_page(request: Request) -> Response:
    ctx = ctx_of(request)
    sources = await blocking(ctx.catalog.list_sources)
    filters = {n: request.query_params.get(n, DEFAULTS.get(n, "")) for n in {*EMAIL_PARAMS, *ATTRIBUTION_PARAMS}}
    if ctx.services.reports is None:
        return render(request, "reports.html", available=False, sources=sources, filters=filters)
    email_params = _params(request, EMAIL_PARAMS)
    email, email_error = await _section(request, "email", email_params)
    by_campaign = email if email_params.get("by") == "campaign" else []
    figures: list[Markup] = []
    if not email_error:
        if email_params.get("by") != "campaign":
            by_campaign, _ = await _section(request, "email", {**email_params, "by": "campaign"})
        by_day, _ = await _section(request, "email", {**email_params, "by": "day"})
        if by_campaign:
            figures.append(charts.bars("Rates by campaign", [str(r["key"]) for r in by_campaign],
                                       _rate_series(by_campaign, RATES)))
        if by_day:
            figures.append(charts.lines("Rates over time (by day of delivery, UTC)", [str(r["key"]) for r in by_day],
                                        _rate_series(by_day, RATES[:3])))
    attribution_params = _params(request, ATTRIBUTION_PARAMS, by="campaign")
    attribution, attribution_error = await _section(request, "attribution", attribution_params)
    attribution_chart = None
    if attribution:
        attribution_chart = charts.bars(
            f"Attribution by campaign: {attribution_params.get('value', 'revenue')}",
            [str(r["key"]) for r in attribution], {"Revenue": [r.get("revenue") for r in attribution],
                                                    "Conversions": [r.get("conversions") for r in attribution]},
            percent=False)
    return render(request, "reports.html", available=True, sources=sources, filters=filters,
                  email=email, email_error=email_error, email_columns=EMAIL_COLUMNS, figures=figures,
                  attribution=attribution, attribution_error=attribution_error,
                  attribution_columns=ATTRIBUTION_COLUMNS, attribution_chart=attribution_chart,
                  email_query=request.url.query, rates={k for k, _ in RATES})


async def report_csv(request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind not in ("email", "attribution") or ctx_of(request).services.reports is None:
        return Response("no such report", 404)
    if kind == "email":
        params, columns = _params(request, EMAIL_PARAMS), EMAIL_COLUMNS
    else:
        params, columns = _params(request, ATTRIBUTION_PARAMS, by="campaign"), ATTRIBUTION_COLUMNS
    try:
        rows = await _run(request, kind, params)
    except ValueError as e:
        return Response(f"error: {e}\n", 400, media_type="text/plain")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([["" if r.get(c) is None else r.get(c) for c in columns] for r in rows])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="sluice-{kind}-report.csv"'})


async def definitions(request: Request) -> Response:
    text = DEFINITIONS.read_text() if DEFINITIONS.exists() else None
    return render(request, "definitions.html", text=text)


ROUTES: list[BaseRoute] = [
    Route("/reports", reports_page, methods=["GET"]),
    Route("/reports/definitions", definitions, methods=["GET"]),
    Route("/reports/{kind:str}.csv", report_csv, methods=["GET"]),
]
