"""Live events (Segment calls it the debugger): a source's events as they reach the log, each as received and
as the warehouse loader maps it, and refused requests with their reasons, streamed as server-sent events.

Events come from the log (this process reads it anyway); refusals from the ingest processes' rings
(sluice/ingest/refusals.py). Each event carries its log seq as the SSE id, so a browser that reconnects
resumes after the last one it showed (Last-Event-ID) and misses none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from sluice.catalog.models import Source
from sluice.catalog.store import CatalogError
from sluice.console.web import blocking, ctx_of, render, session_of
from sluice.ingest.refusals import read_refusals
from sluice.log.base import Entry
from sluice.warehouse.duckdb_engine import DuckDBWarehouse
from sluice.warehouse.flatten import leaf_values, standard_value, table_values
from sluice.warehouse.layout import analyse

POLL_SECONDS = 0.3
BATCH = 200
KEEPALIVE_SECONDS = 15.0
RECENT_REFUSALS_MS = 15 * 60 * 1000  # refusals shown on opening the page: the last 15 minutes'


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def as_loaded(message: dict[str, Any], max_identifier_bytes: int) -> dict[str, dict[str, Any]]:
    """The rows the loader writes for one message: table -> {column: value} (standard columns, then the
    flattened ones; a value that loses to another for the same column is left out, as in the warehouse)."""
    shape = analyse(message, max_identifier_bytes)
    values = leaf_values(message, shape)
    out: dict[str, dict[str, Any]] = {}
    for table, kind in shape.feed.tables:
        row: dict[str, Any] = {}
        for std in kind.standard:
            value = standard_value(message, std.pointer) if std.pointer else shape.feed.event_table
            if value is not None:
                row[std.name] = value
        row.update(table_values(message, values, shape.layouts[table]).winners)
        out[table] = row
    return out


def event_item(source: Source, entry: Entry) -> dict[str, Any]:
    message = orjson.loads(entry.body)
    return {
        "kind": "event", "seq": entry.seq, "received_at": _iso(entry.received_ms), "type": message.get("type"),
        "event": message.get("event"), "message_id": message.get("messageId"), "schema": source.schema,
        "raw": message, "loaded": as_loaded(message, DuckDBWarehouse.dialect.max_identifier_bytes),
    }


def refusal_item(entry: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "refused", "at": _iso(entry["at_ms"]), "endpoint": entry["endpoint"], "status": entry["status"],
            "code": entry["code"], "reason": entry["reason"]}


def _sse(data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n".encode() if event_id is not None else b""
    return head + b"data: " + orjson.dumps(data, default=str) + b"\n\n"


async def live_page(request: Request) -> Response:
    ctx = ctx_of(request)
    sources = await blocking(ctx.catalog.list_sources)
    chosen = request.query_params.get("source")
    source = next((s for s in sources if str(s.id) == chosen), sources[0] if sources else None)
    return render(request, "live.html", sources=sources, source=source)


async def stream(request: Request) -> Response:
    ctx = ctx_of(request)
    try:
        source = await blocking(ctx.catalog.get_source, request.query_params.get("source", ""))
    except CatalogError:
        return Response("no such source", 404)
    session = session_of(request)
    if session is None:  # the guard lets no request without one through; never stream to nobody
        return Response("sign in first", 401)
    last_id = request.headers.get("last-event-id", "")
    after = int(last_id) if last_id.isdigit() else await blocking(ctx.log.last_seq, source.id)

    def mine(entry: dict[str, Any]) -> bool:
        return entry["source_id"] in (None, source.id)  # an unknown write key belongs to no source: shown to all

    async def events() -> AsyncIterator[bytes]:
        nonlocal after
        seen: dict[str, int] = {}
        recent = int(time.time() * 1000) - RECENT_REFUSALS_MS
        yield b"retry: 1000\n\n"
        for entry in await blocking(read_refusals, ctx.run_dir, seen):
            if entry["at_ms"] >= recent and mine(entry):
                yield _sse(refusal_item(entry))
        quiet_since = time.monotonic()
        while ctx.store.get(session.id) is not None:  # signing out (or expiry) ends the stream too
            entries = await blocking(ctx.log.read, source.id, after, BATCH)
            refusals = [e for e in await blocking(read_refusals, ctx.run_dir, seen) if mine(e)]
            for entry in entries:
                after = entry.seq
                yield _sse(event_item(source, entry), entry.seq)
            for refusal in refusals:
                yield _sse(refusal_item(refusal))
            if entries or refusals:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                yield b": still here\n\n"  # keeps proxies from closing an idle stream
                quiet_since = time.monotonic()
            if len(entries) < BATCH:
                await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})


ROUTES: list[BaseRoute] = [
    Route("/live", live_page, methods=["GET"]),
    Route("/live/stream", stream, methods=["GET"]),
]
