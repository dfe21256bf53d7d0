"""A fake of Drip's REST API v2 that enforces the documented contract (reference/drip.md).

It runs for real over HTTP (uvicorn in a background thread) so the Drip destination is tested with
its own httpx client, auth, headers and timeouts. What Drip leaves unsaid, the fake decides strictly,
so a destination that passes here is safe against the real thing:

- batches are all-or-nothing: one invalid item refuses the whole batch (422) and stores nothing,
  so a client that falls back to singles never duplicates the valid items;
- rate limits are fixed windows per kind ("single" = /subscribers and /events, "batch" = the
  /batches endpoints) that start at the first counted request; requests refused before the limit
  check (401, 403, 404, 405, missing User-Agent) and 429s do not count;
- custom field values must be strings or numbers (or null), `properties.value` an integer,
  `occurred_at` ISO-8601, emails must contain "@";
- subscriber keys Drip does not document are ignored (not stored), as Drip ignores them;
- webhooks (`GET/POST /webhooks`, `GET/DELETE /webhooks/:id`) hold the documented fields only, and a
  webhook's `events` must be documented webhook events;
- broadcasts, campaigns and workflows are listed in pages (`page`, `per_page` up to 100, `meta.page`,
  `total_pages`, `total_count`) from what a test puts in `broadcasts`/`campaigns`/`workflows`;
- `GET /metrics/email` answers `email_metrics` (a test's `summary` and `emails`), limited to the emails
  whose sends fall in `start_date`..`end_date` when they say when they were sent, at most 10 of them, and
  rate limited at 20 requests per window of its own.
"""

from __future__ import annotations

import base64
import math
import socket
import threading
import time
from datetime import datetime
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SINGLE = "single"
BATCH = "batch"
METRICS = "metrics"  # the email metrics endpoint's own limit: 20 an hour
READ_PATHS = ("webhooks", "broadcasts", "campaigns", "workflows", "metrics/email")
PER_PAGE_MAX = 100
METRICS_EMAILS_MAX = 10
WEBHOOK_EVENTS = {
    "subscriber.created", "subscriber.deleted", "subscriber.marked_as_deliverable",
    "subscriber.marked_as_undeliverable", "subscriber.subscribed_to_campaign", "subscriber.removed_from_campaign",
    "subscriber.unsubscribed_from_campaign", "subscriber.unsubscribed_all", "subscriber.reactivated",
    "subscriber.completed_campaign", "subscriber.applied_tag", "subscriber.removed_tag",
    "subscriber.updated_custom_field", "subscriber.updated_email_address", "subscriber.updated_lifetime_value",
    "subscriber.updated_time_zone", "subscriber.updated_alias", "subscriber.performed_custom_event",
    "subscriber.received_email", "subscriber.opened_email", "subscriber.clicked_email",
    "subscriber.clicked_trigger_link", "subscriber.bounced", "subscriber.complained", "subscriber.visited_page",
    "subscriber.became_lead", "subscriber.updated_lead_score", "subscriber.subscribed_to_email_marketing",
    "subscriber.became_non_prospect",
}
MAX_BATCH_ITEMS = 1000
RATE_LIMIT_BODY = {"message": "API rate limit exceeded. Please try again in an hour."}

# Subscriber attributes Drip's create/update call documents; others are dropped like Drip does.
SUBSCRIBER_KEYS = {
    "email",
    "id",
    "new_email",
    "user_id",
    "first_name",
    "last_name",
    "address1",
    "address2",
    "city",
    "state",
    "zip",
    "country",
    "phone",
    "sms_number",
    "sms_consent",
    "time_zone",
    "ip_address",
    "user_agent",
    "lifetime_value",
    "custom_fields",
    "tags",
    "remove_tags",
    "prospect",
    "base_lead_score",
    "eu_consent",
    "eu_consent_message",
    "status",
    "initial_status",
    "status_updated_at",
}
STRING_KEYS = {"email", "new_email", "user_id", "first_name", "last_name", "time_zone", "ip_address", "user_agent"}

Errors = list[dict[str, Any]]


def _error(code: str, message: str, attribute: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if attribute is not None:
        err["attribute"] = attribute
    return err


def _valid_email(value: Any) -> bool:
    return isinstance(value, str) and "@" in value.strip("@")


def _subscriber_errors(sub: Any) -> Errors:
    if not isinstance(sub, dict):
        return [_error("validation_error", "Subscriber must be an object", "subscribers")]
    errors: Errors = []
    if sub.get("email") in (None, "") and sub.get("id") in (None, ""):
        errors.append(_error("presence_error", "Email is required", "email"))
    for key in STRING_KEYS & sub.keys():
        if sub[key] is not None and not isinstance(sub[key], str):
            errors.append(_error("validation_error", f"{key} must be a string", key))
    for key in ("email", "new_email"):
        if isinstance(sub.get(key), str) and sub[key] and not _valid_email(sub[key]):
            errors.append(_error("email_error", "Email is invalid", key))
    fields = sub.get("custom_fields")
    if fields is not None:
        if not isinstance(fields, dict):
            errors.append(_error("validation_error", "custom_fields must be an object", "custom_fields"))
        else:
            for name, value in fields.items():
                if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
                    errors.append(
                        _error("validation_error", f"custom field {name} must be a string or number", "custom_fields")
                    )
    for key in ("tags", "remove_tags"):
        tags = sub.get(key)
        if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            errors.append(_error("validation_error", f"{key} must be an array of strings", key))
    return errors


def _event_errors(event: Any) -> Errors:
    if not isinstance(event, dict):
        return [_error("validation_error", "Event must be an object", "events")]
    errors: Errors = []
    if event.get("email") in (None, "") and event.get("id") in (None, ""):
        errors.append(_error("presence_error", "Email is required", "email"))
    elif event.get("email") not in (None, "") and not _valid_email(event["email"]):
        errors.append(_error("email_error", "Email is invalid", "email"))
    if not isinstance(event.get("action"), str) or not event["action"]:
        errors.append(_error("presence_error", "Action is required", "action"))
    props = event.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            errors.append(_error("validation_error", "properties must be an object", "properties"))
        elif "value" in props and type(props["value"]) is not int:
            errors.append(_error("validation_error", "Value must be an integer (cents)", "value"))
    occurred_at = event.get("occurred_at")
    if occurred_at is not None:
        try:
            datetime.fromisoformat(occurred_at)
        except (TypeError, ValueError):
            errors.append(_error("validation_error", "occurred_at must be an ISO-8601 timestamp", "occurred_at"))
    return errors


class _Window:
    """A fixed rate-limit window for one kind of endpoint."""

    def __init__(self) -> None:
        self.started = 0.0
        self.used = 0

    def roll(self, now: float, length: float) -> None:
        if now >= self.started + length:
            self.started, self.used = now, 0


class FakeDrip:
    def __init__(
        self,
        api_token: str = "drip-test-token",
        account_id: str = "9999999",
        single_limit_per_hour: int = 3600,
        batch_limit_per_hour: int = 50,
        window_seconds: float = 3600.0,
    ) -> None:
        self.api_token = api_token
        self.account_id = account_id
        self.single_limit_per_hour = single_limit_per_hour
        self.batch_limit_per_hour = batch_limit_per_hour
        self.window_seconds = window_seconds
        self.subscribers: dict[str, dict[str, Any]] = {}  # lower-cased email -> merged subscriber
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, int]] = []
        self.user_agents: list[str | None] = []
        self._windows = {SINGLE: _Window(), BATCH: _Window(), METRICS: _Window()}
        self.metrics_limit_per_hour = 20
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.broadcasts: list[dict[str, Any]] = []
        self.campaigns: list[dict[str, Any]] = []
        self.workflows: list[dict[str, Any]] = []
        # `summary` and `emails` as Drip's metrics endpoint answers them; an email may carry `sent_at`
        # (a date, this fake's own knob, never answered) to be left out of ranges it is not in.
        self.email_metrics: dict[str, Any] = {"summary": {}, "emails": []}
        self._failures: list[tuple[int, float | None]] = []
        self._next_id = 1
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE"])])

    # --- knobs -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_limits(
        self, single: int | None = None, batch: int | None = None, window_seconds: float | None = None
    ) -> None:
        """Lower the limits (and shorten the window) for a test; starts fresh windows."""
        with self._lock:
            if single is not None:
                self.single_limit_per_hour = single
            if batch is not None:
                self.batch_limit_per_hour = batch
            if window_seconds is not None:
                self.window_seconds = window_seconds
            self._windows = {SINGLE: _Window(), BATCH: _Window(), METRICS: _Window()}

    def exhaust(self, kind: str) -> None:
        """Use up the current window of `kind` ("single" or "batch"), as another client of the account would."""
        with self._lock:
            window = self._windows[kind]
            window.roll(time.monotonic(), self.window_seconds)
            window.used = self._limit(kind)

    def fail_next(self, n: int, status: int = 500, retry_after: float | None = None) -> None:
        """Answer the next n requests with `status` (e.g. 500, 503), touching nothing else."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * n)

    def paths(self, method: str = "POST") -> list[str]:
        """Paths of the requests received with `method`, in order (without the /v2/<account_id> prefix)."""
        prefix = f"/v2/{self.account_id}"
        return [p.removeprefix(prefix) for m, p, _ in self.requests if m == method]

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> FakeDrip:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, lifespan="off", access_log=False, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake Drip did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeDrip:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the API -----------------------------------------------------------------------------------

    def _limit(self, kind: str) -> int:
        return {SINGLE: self.single_limit_per_hour, BATCH: self.batch_limit_per_hour,
                METRICS: self.metrics_limit_per_hour}[kind]

    def _rate_headers(self, kind: str) -> dict[str, str]:
        window = self._windows[kind]
        window.roll(time.monotonic(), self.window_seconds)
        limit = self._limit(kind)
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(0, limit - window.used))}

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            status, payload, headers = self._answer(request, body)
            self.requests.append((request.method, request.url.path, status))
            self.user_agents.append(request.headers.get("user-agent"))
        content = b"" if payload is None else orjson.dumps(payload)
        media_type = None if payload is None else "application/json"
        return Response(content, status_code=status, headers=headers, media_type=media_type)

    def _answer(self, request: Request, body: bytes) -> tuple[int, Any, dict[str, str]]:
        parts = request.url.path.strip("/").split("/")
        rest = "/".join(parts[2:])
        kind = BATCH if rest.endswith("/batches") else METRICS if rest == "metrics/email" else SINGLE
        headers = self._rate_headers(kind)

        if self._failures:
            status, retry_after = self._failures.pop(0)
            if retry_after is not None:
                headers["Retry-After"] = str(math.ceil(retry_after))
            return status, {"errors": [_error("server_error", "Something went wrong")]}, headers

        if not self._authenticated(request.headers.get("authorization", "")):
            headers["WWW-Authenticate"] = 'Basic realm="Drip"'
            message = "You must authenticate with your API token as the Basic auth username"
            return 401, {"errors": [_error("authentication_error", message)]}, headers
        if len(parts) < 3 or parts[0] != "v2":
            return 404, {"errors": [_error("not_found_error", "The requested resource was not found")]}, headers
        if parts[1] != self.account_id:
            message = "You are not authorized to access this resource"
            return 403, {"errors": [_error("authorization_error", message)]}, headers
        if rest in READ_PATHS or rest.startswith("webhooks/"):
            return self._read_api(request, rest, body, kind, headers)
        routes = {
            "subscribers": self._subscriber,
            "subscribers/batches": self._subscriber_batch,
            "events": self._event,
            "events/batches": self._event_batch,
        }
        handler = routes.get(rest)
        if handler is None:
            return 404, {"errors": [_error("not_found_error", "The requested resource was not found")]}, headers
        if request.method != "POST":
            return 405, {"errors": [_error("method_not_allowed", f"{request.method} is not allowed here")]}, headers
        if not request.headers.get("user-agent"):
            message = "A User-Agent header naming your application is required"
            return 400, {"errors": [_error("bad_request", message)]}, headers

        limited = self._counted(kind, headers)
        if limited is not None:
            return limited

        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/json", "application/vnd.api+json"):
            message = "Content-Type must be application/json"
            return 415, {"errors": [_error("unsupported_media_type", message)]}, headers
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, {"errors": [_error("bad_request", "The request body is not valid JSON")]}, headers
        if not isinstance(data, dict):
            return 400, {"errors": [_error("bad_request", "The request body must be a JSON object")]}, headers
        status, payload = handler(data)
        return status, payload, headers

    def _counted(self, kind: str, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]] | None:
        """Count a request against its window; the 429 when the window is used up."""
        window = self._windows[kind]
        now = time.monotonic()
        window.roll(now, self.window_seconds)
        if window.used >= self._limit(kind):
            headers["Retry-After"] = str(max(1, math.ceil(window.started + self.window_seconds - now)))
            return 429, RATE_LIMIT_BODY, headers
        window.used += 1
        headers["X-RateLimit-Remaining"] = str(self._limit(kind) - window.used)
        return None

    def _read_api(self, request: Request, rest: str, body: bytes, kind: str,
                  headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """Webhooks, the listings and the email metrics: what the Drip source reads and sets up."""
        method = request.method
        one_webhook = rest.startswith("webhooks/")
        allowed = ("GET", "POST") if rest == "webhooks" else ("GET", "DELETE") if one_webhook else ("GET",)
        if method not in allowed:
            return 405, {"errors": [_error("method_not_allowed", f"{method} is not allowed here")]}, headers
        if not request.headers.get("user-agent"):
            message = "A User-Agent header naming your application is required"
            return 400, {"errors": [_error("bad_request", message)]}, headers
        limited = self._counted(kind, headers)
        if limited is not None:
            return limited
        links = {f"{rest.split('/')[0]}.account": "https://api.getdrip.com/v2/accounts/{" + rest.split("/")[0]
                 + ".account}"}
        if rest == "webhooks" and method == "GET":
            return 200, {"links": links, "webhooks": list(self.webhooks.values())}, headers
        if rest == "webhooks":
            return self._create_webhook(body, links, headers)
        if rest.startswith("webhooks/"):
            hook = self.webhooks.get(rest.split("/", 1)[1])
            if hook is None:
                return 404, {"errors": [_error("not_found_error", "The requested resource was not found")]}, headers
            if method == "DELETE":
                del self.webhooks[hook["id"]]
                return 204, None, headers
            return 200, {"links": links, "webhooks": [hook]}, headers
        if rest == "metrics/email":
            return self._metrics(request, headers)
        return self._page(request, rest, getattr(self, rest), links, headers)

    def _create_webhook(self, body: bytes, links: dict[str, str],
                        headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, {"errors": [_error("bad_request", "The request body is not valid JSON")]}, headers
        hooks, errors = self._items(data if isinstance(data, dict) else {}, "webhooks", 1, 1)
        if hooks is None or not isinstance(hooks[0], dict):
            return 422, {"errors": errors or [_error("validation_error", "webhooks[0] must be an object")]}, headers
        hook = hooks[0]
        post_url = hook.get("post_url")
        if not isinstance(post_url, str) or not post_url.startswith(("http://", "https://")):
            return 422, {"errors": [_error("presence_error", "Post url is required", "post_url")]}, headers
        events = hook.get("events")
        if events is None:  # Drip's default: every event but received_email
            events = sorted(WEBHOOK_EVENTS - {"subscriber.received_email"})
        if not isinstance(events, list) or not set(events) <= WEBHOOK_EVENTS:
            unknown = sorted(set(events) - WEBHOOK_EVENTS) if isinstance(events, list) else events
            return 422, {"errors": [_error("validation_error", f"Events are invalid: {unknown}", "events")]}, headers
        include = hook.get("include_received_email", False)
        if not isinstance(include, bool):
            return 422, {"errors": [_error("validation_error", "include_received_email must be a boolean",
                                           "include_received_email")]}, headers
        hook_id = str(77777 + len(self.webhooks) + self._next_id)
        self._next_id += 1
        stored = {
            "id": hook_id, "href": f"https://api.getdrip.com/v2/{self.account_id}/webhooks/{hook_id}",
            "post_url": post_url, "version": "1", "include_received_email": include, "events": events,
            "created_at": datetime.now().astimezone().isoformat(timespec="seconds"),
            "links": {"account": self.account_id},
        }
        self.webhooks[hook_id] = stored
        return 201, {"links": links, "webhooks": [stored]}, headers

    def _page(self, request: Request, key: str, items: list[dict[str, Any]], links: dict[str, str],
              headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        try:
            page = int(request.query_params.get("page", "1"))
            per_page = int(request.query_params.get("per_page", str(PER_PAGE_MAX)))
        except ValueError:
            return 422, {"errors": [_error("validation_error", "page and per_page must be numbers")]}, headers
        if page < 1 or not 1 <= per_page <= PER_PAGE_MAX:
            message = f"page must be at least 1 and per_page between 1 and {PER_PAGE_MAX}"
            return 422, {"errors": [_error("validation_error", message)]}, headers
        total_pages = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        meta = {"page": page, "sort": "created_at", "direction": "asc", "count": len(chunk),
                "total_pages": total_pages, "total_count": len(items)}
        return 200, {"links": links, "meta": meta, key: chunk}, headers

    def _metrics(self, request: Request, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        start, end = request.query_params.get("start_date"), request.query_params.get("end_date")
        for name, value in (("start_date", start), ("end_date", end)):
            if value is not None:
                try:
                    datetime.strptime(value, "%Y-%m-%d")
                except ValueError:
                    message = f"{name} must be a date (YYYY-MM-DD)"
                    return 422, {"errors": [_error("validation_error", message, name)]}, headers
        emails = [
            {k: v for k, v in e.items() if k != "sent_at"} for e in self.email_metrics["emails"]
            if (start is None or e.get("sent_at", start) >= start) and (end is None or e.get("sent_at", end) <= end)
        ]
        return 200, {"summary": self.email_metrics["summary"], "emails": emails[-METRICS_EMAILS_MAX:]}, headers

    def _authenticated(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except ValueError:
            return False
        return decoded == f"{self.api_token}:"

    @staticmethod
    def _items(data: dict[str, Any], key: str, low: int, high: int) -> tuple[list[Any] | None, Errors]:
        items = data.get(key)
        if not isinstance(items, list):
            return None, [_error("validation_error", f"{key} must be an array", key)]
        if not low <= len(items) <= high:
            count = "exactly one" if low == high else f"between {low} and {high}"
            return None, [_error("validation_error", f"{key} must hold {count} items (got {len(items)})", key)]
        return items, []

    def _batch_items(self, data: dict[str, Any], key: str) -> tuple[list[Any] | None, Errors]:
        batches, errors = self._items(data, "batches", 1, 1)
        if batches is None:
            return None, errors
        if not isinstance(batches[0], dict):
            return None, [_error("validation_error", "batches[0] must be an object", "batches")]
        return self._items(batches[0], key, 1, MAX_BATCH_ITEMS)

    def _subscriber(self, data: dict[str, Any]) -> tuple[int, Any]:
        subs, errors = self._items(data, "subscribers", 1, 1)
        if subs is None:
            return 422, {"errors": errors}
        errors = _subscriber_errors(subs[0])
        if errors:
            return 422, {"errors": errors}
        stored = self._upsert(subs[0])
        if stored is None:
            return 404, {"errors": [_error("not_found_error", "Subscriber not found")]}
        links = {"subscribers.account": "https://api.getdrip.com/v2/accounts/{subscribers.account}"}
        return 200, {"links": links, "subscribers": [stored]}

    def _subscriber_batch(self, data: dict[str, Any]) -> tuple[int, Any]:
        subs, errors = self._batch_items(data, "subscribers")
        if subs is None:
            return 422, {"errors": errors}
        for index, sub in enumerate(subs):
            errors += [{**err, "index": index} for err in _subscriber_errors(sub)]
        if errors:
            return 422, {"errors": errors}  # all-or-nothing: see the module docstring
        for sub in subs:
            self._upsert(sub)
        return 201, {}

    def _event(self, data: dict[str, Any]) -> tuple[int, Any]:
        events, errors = self._items(data, "events", 1, 1)
        if events is None:
            return 422, {"errors": errors}
        errors = _event_errors(events[0])
        if errors:
            return 422, {"errors": errors}
        self._record_event(events[0])
        return 204, None

    def _event_batch(self, data: dict[str, Any]) -> tuple[int, Any]:
        events, errors = self._batch_items(data, "events")
        if events is None:
            return 422, {"errors": errors}
        for index, event in enumerate(events):
            errors += [{**err, "index": index} for err in _event_errors(event)]
        if errors:
            return 422, {"errors": errors}
        for event in events:
            self._record_event(event)
        return 201, {}

    def _find(self, sub: dict[str, Any]) -> str | None:
        """The stored key of the subscriber `sub` names (by email, else by id)."""
        if sub.get("email"):
            return str(sub["email"]).lower()
        for key, stored in self.subscribers.items():
            if stored["id"] == str(sub.get("id")):
                return key
        return None

    def _upsert(self, sub: dict[str, Any]) -> dict[str, Any] | None:
        """Create or update like Drip: fields overwrite, custom fields merge, tags accumulate."""
        key = self._find(sub)
        if key is None:
            return None
        stored = self.subscribers.get(key)
        if stored is None:
            stored = {
                "id": str(self._next_id),
                "status": "active",
                "email": sub["email"],
                "custom_fields": {},
                "tags": [],
                "created_at": datetime.now().astimezone().isoformat(timespec="seconds"),
            }
            self._next_id += 1
        for name, value in sub.items():
            if name not in SUBSCRIBER_KEYS or name in ("id", "new_email", "remove_tags"):
                continue
            if name == "custom_fields":
                stored["custom_fields"].update(value)
            elif name == "tags":
                stored["tags"] += [t for t in value if t not in stored["tags"]]
            else:
                stored[name] = value
        stored["tags"] = [t for t in stored["tags"] if t not in (sub.get("remove_tags") or [])]
        self.subscribers.pop(key, None)
        if sub.get("new_email"):
            stored["email"] = sub["new_email"]
        self.subscribers[stored["email"].lower()] = stored
        return stored

    def _record_event(self, event: dict[str, Any]) -> None:
        # Drip creates the subscriber an event names when it does not exist yet.
        if event.get("email") and event["email"].lower() not in self.subscribers:
            self._upsert({"email": event["email"]})
        self.events.append(event)
