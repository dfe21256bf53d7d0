"""The HTTP face of sluice: Segment's Tracking API (and analytics.js's short paths, settings and CORS), Drip
webhooks, Segment's Webhooks destination, health and metrics (the admin API has a listener of its own: sluice/api)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from sluice.catalog.models import Source
from sluice.ingest.auth import SourceRegistry, basic_username
from sluice.ingest.body import BadRequest, decode_json, read_body
from sluice.ingest.browser import analytics_settings, api_host
from sluice.ingest.canonical import MESSAGE_TYPES, Arrival, Limits, Rejected, canonicalize, parse_time
from sluice.ingest.cors import Cors, origin_refusal
from sluice.log.base import Log, LogError, Record
from sluice.metrics import Metrics
from sluice.settings import Settings
from sluice.sources import segment_webhooks
from sluice.sources.drip import DripPayloadError, map_webhook, without_ip

_OK = b'{"success":true}'
# analytics.js posts each call to the first letter of its type; /v1/b is its batch.
SHORT_PATHS = {"t": "track", "p": "page", "i": "identify", "g": "group", "a": "alias", "s": "screen"}


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


@dataclass
class Services:
    """What the endpoints need; the server assembles it."""

    settings: Settings
    registry: SourceRegistry
    log: Log
    metrics: Metrics
    # Refreshes the lag gauges from what the workers last knew: never waits on a destination.
    status: Callable[[], Any]
    # Destinations that cannot make progress, for /health: [{"source", "destination", "failing_since", "error"}].
    problems: Callable[[], list[dict[str, Any]]]
    # Why the machine cannot take more events now (pressure.py), or None.
    pressure: Callable[[], str | None] = lambda: None
    # Keeps a refusal for the console's live view (sluice/ingest/refusals.py): (endpoint, status, code, reason,
    # the source's id when known).
    refused: Callable[[str, int, str, str, int | None], None] = lambda *_: None


def _refuse(services: Services, endpoint: str, error: BadRequest, source_id: int | None = None) -> Response:
    services.metrics.requests_refused.labels(endpoint, error.code).inc()
    services.refused(endpoint, error.status, error.code, error.message, source_id)
    return json_response({"success": False, "error": error.message}, error.status)


def _source_id(request: Request) -> int | None:
    """The source a refused request was for, when it got that far (set where a source is found)."""
    return request.scope.get("state", {}).get("source_id")


def _authenticate(services: Services, request: Request, payload: Any) -> Source:
    problem = None
    try:
        key = basic_username(request.headers.get("authorization"))
    except ValueError as e:  # a Basic header that is not base64 of UTF-8 text
        key, problem = None, str(e)
    if key is None and isinstance(payload, dict) and isinstance(payload.get("writeKey"), str):
        key = payload["writeKey"]
    if not key:
        if problem is not None:
            raise BadRequest(problem, "bad_authorization", 401)
        raise BadRequest(
            "missing write key: send it as the HTTP Basic username or as writeKey in the body",
            "missing_write_key", 401,
        )
    source = services.registry.by_write_key(key)
    if source is None:
        raise BadRequest("unknown write key", "unknown_write_key", 401)
    request.scope.setdefault("state", {})["source_id"] = source.id
    refusal = origin_refusal(source, request.headers)
    if refusal is not None:
        raise BadRequest(refusal, "origin_not_allowed", 403)
    return source


def _peer(request: Request, source: Source) -> dict[str, Any]:
    """Arrival's IP fields for a Tracking API request: the client's address (after trusted proxies, see
    IngestApp) fills context.ip where a message has none, unless the source keeps no IPs."""
    if not source.store_ips:
        return {"keep_ip": False}
    return {"ip": request.client.host if request.client else None}


def _object_or_none(payload: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, dict):
        raise BadRequest(f"{key} must be an object", f"bad_{key}")
    return value


async def _store(services: Services, source: Source, records: list[Record]) -> tuple[int, int]:
    flags = await services.log.append(records)
    stored = sum(flags)
    if stored:
        services.metrics.accepted_for(source.schema).inc(stored)
    if stored < len(flags):
        services.metrics.duplicates_for(source.schema).inc(len(flags) - stored)
    return stored, len(flags) - stored


def _backpressure(services: Services, endpoint: str, reason: str) -> Response:
    """503 for Segment's clients, 429 for Drip (which retries rate limits for days), with Retry-After."""
    services.metrics.requests_refused.labels(endpoint, "backpressure").inc()
    services.refused(endpoint, 429 if endpoint == "drip_webhook" else 503, "backpressure", reason, None)
    response = json_response({"success": False, "error": f"sluice cannot take events now: {reason}; retry later"},
                             429 if endpoint == "drip_webhook" else 503)
    response.headers["Retry-After"] = str(services.settings.retry_after_seconds)
    return response


def _timed(endpoint: str, handler: Callable[[Services, Request], Awaitable[Response]]):
    async def endpoint_fn(request: Request) -> Response:
        services: Services = request.app.state.services
        started = time.perf_counter()
        try:
            if (full := services.pressure()) is not None:
                return _backpressure(services, endpoint, full)
            return await handler(services, request)
        except BadRequest as e:
            return _refuse(services, endpoint, e, _source_id(request))
        except LogError as e:
            return _refuse(services, endpoint, BadRequest(f"{e}; retry later", "log_unavailable", 503),
                           _source_id(request))
        except ClientDisconnect:  # the client went away (or the edge cut a body that never came)
            return Response(status_code=400)  # never sent
        finally:
            services.metrics.latency_for(endpoint).observe(time.perf_counter() - started)

    return endpoint_fn


def _limits(settings: Settings) -> Limits:
    return Limits(settings.max_message_bytes, settings.max_message_id_chars)


def single_handler(mtype: str):
    async def handle(services: Services, request: Request) -> Response:
        settings = services.settings
        body = await read_body(request, settings.max_message_bytes)
        payload = decode_json(body)
        source = _authenticate(services, request, payload)
        try:
            record = canonicalize(payload, mtype, Arrival.now(**_peer(request, source)), _limits(settings), source.id)
        except Rejected as r:
            services.metrics.rejected.labels(source.schema, r.code).inc()
            return json_response({"success": False, "error": r.reason}, 400)
        await _store(services, source, [record])
        return Response(_OK, media_type="application/json")

    return handle


async def batch_handler(services: Services, request: Request) -> Response:
    settings = services.settings
    body = await read_body(request, settings.max_request_bytes)
    payload = decode_json(body)
    if not isinstance(payload, dict):
        raise BadRequest('body must be a JSON object like {"batch": [...]}', "bad_batch")
    source = _authenticate(services, request, payload)
    batch = payload.get("batch")
    if not isinstance(batch, list):
        raise BadRequest("batch must be an array of messages", "bad_batch")
    if len(batch) > settings.max_batch_events:
        raise BadRequest(
            f"batch has {len(batch):,} messages; the limit is {settings.max_batch_events:,} per request",
            "too_many_events",
        )
    sent_at = None
    if payload.get("sentAt") is not None:
        try:
            sent_at = parse_time(payload["sentAt"], "sentAt")
        except Rejected as r:
            raise BadRequest(r.reason, "bad_timestamp") from None
    try:
        arrival = Arrival.now(
            sent_at=sent_at,
            context=_object_or_none(payload, "context"),
            integrations=_object_or_none(payload, "integrations"),
            **_peer(request, source),
        )
    except Rejected as r:  # a batch context nested too deeply: every message would carry it
        raise BadRequest(r.reason, r.code) from None
    except ValueError:  # a sentAt at the very edge of year 9999, rounded past it
        raise BadRequest("sentAt is outside the years 1 to 9999", "bad_timestamp") from None
    limits = _limits(settings)
    records: list[Record] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(batch):
        try:
            records.append(canonicalize(item, None, arrival, limits, source.id))
        except Rejected as r:
            rejected.append({"index": index, "reason": r.reason})
            services.metrics.rejected.labels(source.schema, r.code).inc()
            services.refused("batch", 200, r.code, f"message {index} of the batch: {r.reason}", source.id)
    return await _stored_answer(services, source, records, rejected)


async def _stored_answer(services: Services, source: Source, records: list[Record],
                         rejected: list[dict[str, Any]]) -> Response:
    """Store what was accepted; the answer says how many were stored, how many were duplicates, and which
    messages were rejected and why."""
    stored, duplicates = await _store(services, source, records) if records else (0, 0)
    answer: dict[str, Any] = {"success": True, "stored": stored, "duplicates": duplicates}
    if rejected:
        answer["rejected"] = rejected
    return json_response(answer)


async def drip_webhook_handler(services: Services, request: Request) -> Response:
    source = services.registry.by_webhook_token(request.path_params["token"])
    if source is None or source.type != "drip":
        # Same answer as any unknown path: a wrong token learns nothing.
        raise BadRequest("not found", "unknown_webhook_token", 404)
    request.scope.setdefault("state", {})["source_id"] = source.id
    body = await read_body(request, services.settings.max_request_bytes)
    payload = decode_json(body)
    try:
        mapping = map_webhook(payload, scope=str(source.id))
    except DripPayloadError as e:
        services.metrics.rejected.labels(source.schema, "bad_drip_webhook").inc()
        raise BadRequest(f"not a Drip webhook: {e.reason}", "bad_drip_webhook") from None
    if not mapping.known:
        services.metrics.drip_unknown.labels(source.schema).inc()
    arrival = Arrival.now(keep_ip=source.store_ips)  # never the peer's address: that is Drip's server
    messages = mapping.messages if source.store_ips else [without_ip(m) for m in mapping.messages]
    limits = _limits(services.settings)
    try:  # all of a webhook's messages or none: never half-store a request
        records = [
            canonicalize(m, None, arrival, limits, source.id)._replace(also_seen_as=older)
            for m, older in zip(messages, mapping.unscoped_ids, strict=True)
        ]
    except Rejected as r:
        services.metrics.rejected.labels(source.schema, r.code).inc()
        raise BadRequest(f"webhook cannot be stored: {r.reason}", r.code) from None
    stored, duplicates = await _store(services, source, records)
    return json_response({"success": True, "stored": stored, "duplicates": duplicates})


async def segment_webhook_handler(services: Services, request: Request) -> Response:
    """What Segment's Webhooks destinations POST (sluice/sources/segment_webhooks.py): one event, or an array of
    them, signed with the source's shared secret; stored as the source's own events, Segment's times kept."""
    source = services.registry.by_segment_token(request.path_params["token"])
    if source is None:
        raise BadRequest("not found", "unknown_webhook_token", 404)  # as any unknown path
    settings = services.settings
    body = await read_body(request, settings.max_segment_webhook_bytes)
    signature = request.headers.get(segment_webhooks.SIGNATURE_HEADER)
    if not segment_webhooks.signature_ok(body, signature, source.segment_secret):
        raise BadRequest(
            "X-Signature is missing or is not the HMAC-SHA1 of this body with the source's shared secret: set the"
            " Webhooks destination's shared secret to the one `sluice sources show` prints",
            "bad_signature", 401,
        )
    try:
        events, batched = segment_webhooks.events_of(decode_json(body))
    except ValueError as e:
        raise BadRequest(str(e), "bad_segment_webhook") from None
    if len(events) > settings.max_segment_webhook_events:
        raise BadRequest(
            f"batch has {len(events):,} events; the limit is {settings.max_segment_webhook_events:,} per request"
            " (lower the batch size in the Webhooks (Actions) mapping)",
            "too_many_events",
        )
    limits = _limits(settings)
    now_ms = time.time_ns() // 1_000_000  # the log orders by sluice's own clock (replay --since), whatever Segment's
    records: list[Record] = []
    rejected: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        try:
            msg, arrival = segment_webhooks.as_received(event, source.store_ips)
            records.append(canonicalize(msg, None, arrival, limits, source.id)._replace(received_ms=now_ms))
        except Rejected as r:
            services.metrics.rejected.labels(source.schema, r.code).inc()
            if not batched:
                return json_response({"success": False, "error": r.reason}, 400)
            rejected.append({"index": index, "reason": r.reason})
    return await _stored_answer(services, source, records, rejected)


async def analytics_metrics_handler(services: Services, request: Request) -> Response:
    """analytics.js's own usage metrics (`/v1/m`): read within the limit, answered 200, not kept."""
    await read_body(request, services.settings.max_message_bytes)
    return Response(_OK, media_type="application/json")


async def analytics_settings_handler(services: Services, request: Request) -> Response:
    """The settings analytics.js loads from its cdnURL (sluice/ingest/browser.py)."""
    source = services.registry.by_write_key(request.path_params["write_key"])
    if source is None:
        raise BadRequest("unknown write key", "unknown_write_key", 404)
    refusal = origin_refusal(source, request.headers)
    if refusal is not None:  # analytics.js prints this answer's body in the console
        raise BadRequest(refusal, "origin_not_allowed", 403)
    where = api_host(services.settings.public_url, request.url.scheme, request.headers.get("host"))
    if where is None:
        raise BadRequest("no Host header, and SLUICE_PUBLIC_URL is not set: the API host is unknown", "no_host")
    return json_response(analytics_settings(source.write_key, *where))


async def noop_handler(services: Services, request: Request) -> Response:
    """Benchmark baseline: same server stack, no work. Only routed when settings.bench_endpoints."""
    return Response(_OK, media_type="application/json")


async def health(request: Request) -> Response:
    """200 while ingest works. "degraded" names the destinations that cannot make progress: events
    are still acknowledged and kept, but they are not reaching those destinations."""
    services: Services = request.app.state.services
    problems = services.problems()
    answer: dict[str, Any] = {"status": "degraded" if problems else "ok", "log_head": services.log.head()}
    if problems:
        answer["problems"] = problems
    return json_response(answer)


async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    services.metrics.log_head.set(services.log.head())
    await run_in_threadpool(services.status)  # refreshes lag gauges (from known positions: never blocks)
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4")


async def not_found(request: Request, exc: Exception) -> Response:
    return json_response({"success": False, "error": "not found"}, 404)


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    allowed = getattr(exc, "headers", None) or {}
    methods = allowed.get("Allow", "POST")
    return json_response({"success": False, "error": f"{request.method} is not allowed here; use {methods}"}, 405)


async def server_error(request: Request, exc: Exception) -> Response:
    """Every error answer is JSON, even for a bug; a client that went away gets nothing."""
    if isinstance(exc, ClientDisconnect):
        return Response(status_code=400)  # never sent: the connection is gone
    return json_response({"success": False, "error": f"internal error ({type(exc).__name__}); retry later"}, 500)


def error_handlers() -> dict[Any, Any]:
    """JSON answers for unknown paths, wrong methods and bugs, shared by the ingest and admin apps."""
    return {404: not_found, 405: method_not_allowed, Exception: server_error}


class IngestApp(Starlette):
    """Starlette with two layers outside even its error handling, so that every answer, a 500 too, passes them:
    trusted proxies' X-Forwarded-For/-Proto (uvicorn's middleware; only when some are configured, so that no
    client can choose its own address) and CORS on `/v1` paths."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self._settings = settings
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = Cors(super().build_middleware_stack(), self._settings.cors_max_age_seconds)
        trusted = self._settings.trusted_proxy_list
        return ProxyHeadersMiddleware(app, trusted_hosts=trusted) if trusted else app  # type: ignore[arg-type]


def create_app(services: Services, lifespan: Any = None) -> Starlette:
    routes = [Route(f"/v1/{t}", _timed(t, single_handler(t)), methods=["POST"]) for t in MESSAGE_TYPES]
    routes += [Route(f"/v1/{s}", _timed(t, single_handler(t)), methods=["POST"]) for s, t in SHORT_PATHS.items()]
    routes += [
        Route("/v1/batch", _timed("batch", batch_handler), methods=["POST"]),
        Route("/v1/import", _timed("import", batch_handler), methods=["POST"]),
        Route("/v1/b", _timed("batch", batch_handler), methods=["POST"]),
        Route("/v1/m", _timed("analytics_metrics", analytics_metrics_handler), methods=["POST"]),
        Route("/v1/projects/{write_key}/settings", _timed("analytics_settings", analytics_settings_handler),
              methods=["GET"]),
        Route("/webhooks/drip/{token}", _timed("drip_webhook", drip_webhook_handler), methods=["POST"]),
        Route("/webhooks/segment/{token}", _timed("segment_webhook", segment_webhook_handler), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if services.settings.bench_endpoints:
        routes.append(Route("/bench/noop", _timed("noop", noop_handler), methods=["POST"]))
    app = IngestApp(
        services.settings,
        routes=routes,
        exception_handlers=error_handlers(),
        lifespan=lifespan,
    )
    app.state.services = services
    return app
