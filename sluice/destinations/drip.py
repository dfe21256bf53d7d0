"""The Drip destination: identify -> Drip subscriber, track -> Drip event (Drip REST API v2).

Mapping (Segment's Drip destination, reference/drip.md):
- identify -> `POST /v2/<account>/subscribers`: `email` from traits.email or context.traits.email,
  `user_id` from userId, first_name/last_name/time_zone/ip_address/tags from the traits that name
  them, every other trait in `custom_fields` (Drip stores strings and numbers: booleans become
  "true"/"false", objects and arrays their JSON text, nulls are left out).
- track -> `POST /v2/<account>/events`: `action` = event, `email` from properties.email or
  context.traits.email, `properties` = the properties without email and revenue, revenue (dollars)
  as `properties.value` in integer cents, `occurred_at` = timestamp.
- other types are skipped (count as delivered); the delivery worker applies `integrations`.

More than `batch_threshold` waiting items of one kind go through the /batches endpoints (Drip allows
only 50 batch calls an hour, but 1000 items each; single calls get 3600 an hour).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import httpx
import orjson

from sluice.catalog.models import Destination, Source
from sluice.destinations.base import Failure, Target, TransientError
from sluice.http_util import retry_after, user_agent
from sluice.log.base import Entry
from sluice.sources.drip_api import drip_errors

DEFAULT_BASE_URL = "https://api.getdrip.com"
DEFAULT_BATCH_THRESHOLD = 10  # more waiting items of one kind than this -> batch endpoint
MAX_BATCH_ITEMS = 1000  # Drip's documented maximum per batch
SUBSCRIBER = "subscriber"
EVENT = "event"

# Traits that map to a subscriber attribute rather than a custom field (Segment's names first).
NAMED_TRAITS = {
    "first_name": ("firstName", "first_name"),
    "last_name": ("lastName", "last_name"),
    "time_zone": ("timezone", "time_zone", "timeZone"),
    "ip_address": ("ip_address", "ipAddress"),
}
CONSUMED_TRAITS = {"email", "tags"} | {name for names in NAMED_TRAITS.values() for name in names}


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """The Drip destination's config, normalised; ValueError says what is wrong."""
    account_id = config.get("account_id")
    token = config.get("api_token")
    if account_id in (None, "") or isinstance(account_id, bool):
        raise ValueError("Drip destination needs account_id (the number in your Drip URL, e.g. 9999999)")
    if not isinstance(token, str) or not token.strip():
        raise ValueError("Drip destination needs api_token (Drip: User Settings > API Token)")
    account_id = str(account_id).strip()
    if not account_id.isdigit():
        raise ValueError(f"Drip account_id must be a number, got {account_id!r}")
    base_url = str(config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"Drip base_url must start with http:// or https://, got {base_url!r}")
    threshold = config.get("batch_threshold", DEFAULT_BATCH_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise ValueError(f"Drip batch_threshold must be a whole number >= 0, got {threshold!r}")
    return {"account_id": account_id, "api_token": token.strip(), "base_url": base_url, "batch_threshold": threshold}


@dataclass
class _Item:
    """One mapped message waiting to be sent."""

    kind: str
    entry: Entry
    payload: dict[str, Any]


class _Stop(Exception):
    """Drip cannot take more now; becomes a TransientError with done_through and failures."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _RateLimited(_Stop):
    """A kind of endpoint is out of quota (a 429, or X-RateLimit-Remaining reached 0)."""


def _seconds_to_next_hour() -> float:
    # Drip publishes hourly limits but no reset time; assume windows turn over on the clock hour.
    return max(1.0, 3600 - time.time() % 3600)


def _custom_value(value: Any) -> str | int | float:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return value
    return orjson.dumps(value).decode()


def _cents(revenue: Any) -> int | None:
    if isinstance(revenue, bool):
        return None
    try:
        dollars = Decimal(str(revenue))
    except InvalidOperation:
        return None
    if not dollars.is_finite():
        return None
    return int((dollars * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def map_message(msg: dict[str, Any]) -> tuple[str, dict[str, Any]] | str | None:
    """(kind, Drip payload) for a message Drip takes, a reason string if it cannot, None to skip it."""
    kind = msg.get("type")
    if kind not in ("identify", "track"):
        return None
    context_email = _dict(_dict(msg.get("context")).get("traits")).get("email")
    if kind == "identify":
        traits = _dict(msg.get("traits"))
        email = traits.get("email") or context_email
        if not isinstance(email, str) or not email.strip():
            return "no email: an identify needs traits.email or context.traits.email for Drip"
        subscriber: dict[str, Any] = {"email": email.strip()}
        if msg.get("userId") is not None:
            subscriber["user_id"] = str(msg["userId"])
        for attribute, names in NAMED_TRAITS.items():
            for name in names:
                if traits.get(name) not in (None, ""):
                    subscriber[attribute] = str(traits[name])
                    break
        tags = traits.get("tags")
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",")]
        if isinstance(tags, list):
            subscriber["tags"] = [str(t) for t in tags if t not in (None, "")]
        custom = {k: _custom_value(v) for k, v in traits.items() if k not in CONSUMED_TRAITS and v is not None}
        if custom:
            subscriber["custom_fields"] = custom
        return SUBSCRIBER, subscriber
    props = _dict(msg.get("properties"))
    email = props.get("email") or context_email
    if not isinstance(email, str) or not email.strip():
        return "no email: a track needs properties.email or context.traits.email for Drip"
    action = msg.get("event")
    if not isinstance(action, str) or not action:
        return "a track without an event name cannot become a Drip event"
    properties = {k: v for k, v in props.items() if k not in ("email", "revenue")}
    if "revenue" in props:
        cents = _cents(props["revenue"])
        if cents is None:
            properties["revenue"] = props["revenue"]  # not a number: keep it as Drip would show it, not as value
        else:
            properties["value"] = cents
    event: dict[str, Any] = {"email": email.strip(), "action": action, "properties": properties}
    if msg.get("timestamp"):
        event["occurred_at"] = msg["timestamp"]
    return EVENT, event


def _waves(items: list[_Item]) -> Iterator[list[_Item]]:
    """Split items so that sending a wave's subscribers before its events keeps each user's order.

    A wave ends where an identify follows an event of the same email inside it: that identify must
    not overtake the event. Within a kind, log order is always kept.
    """
    wave: list[_Item] = []
    evented: set[str] = set()
    for item in items:
        email = item.payload["email"].lower()
        if item.kind == SUBSCRIBER and email in evented:
            yield wave
            wave, evented = [], set()
        wave.append(item)
        if item.kind == EVENT:
            evented.add(email)
    if wave:
        yield wave


class DripTarget(Target):
    transactional = False

    def __init__(self, destination: Destination, timeout: float) -> None:
        config = validate_config(destination.config)
        self.label = destination.name
        self.consumer = destination.consumer
        self.account_id: str = config["account_id"]
        self.batch_threshold: int = config["batch_threshold"]
        self.client = httpx.Client(
            base_url=f"{config['base_url']}/v2/{self.account_id}",
            auth=(config["api_token"], ""),
            headers={"User-Agent": user_agent(), "Accept": "application/json", "Content-Type": "application/json"},
            timeout=timeout,
        )
        # Seqs handled by the last call that raised TransientError (delivered, or refused and reported in
        # its `failed`). A wave sends subscribers before events, so some may lie beyond done_through; the
        # next call (the retry) skips them instead of sending or dead-lettering them twice.
        self._handled_before: set[int] = set()
        self._remaining: dict[str, int] = {}  # per endpoint kind, from X-RateLimit-Remaining

    def close(self) -> None:
        self.client.close()

    def deliver(self, source: Source, entries: Sequence[Entry], replay: bool = False) -> list[Failure]:
        # Only the live stream's retry skips what a failed call already handled; a replay or a
        # re-drive in between neither uses nor clears that memory.
        skip: set[int] = set()
        if not replay:
            skip, self._handled_before = self._handled_before, set()
        self._remaining = {}
        handled: set[int] = set()
        failures: list[Failure] = []
        items: list[_Item] = []
        for entry in entries:
            if entry.seq in skip:
                handled.add(entry.seq)
                continue
            try:
                msg = orjson.loads(entry.body)
            except orjson.JSONDecodeError:
                msg = None
            mapped = map_message(msg) if isinstance(msg, dict) else "the log entry is not a JSON object"
            if isinstance(mapped, tuple):
                items.append(_Item(mapped[0], entry, mapped[1]))
                continue
            if isinstance(mapped, str):
                failures.append(Failure(entry, mapped))
            handled.add(entry.seq)
        try:
            for wave in _waves(items):
                for kind in (SUBSCRIBER, EVENT):
                    self._send(kind, [i for i in wave if i.kind == kind], handled, failures)
        except _Stop as stop:
            done_through = None
            for entry in entries:
                if entry.seq not in handled:
                    break
                done_through = entry.seq
            if not replay:
                self._handled_before = handled
            raise TransientError(str(stop), stop.retry_after, done_through, failures) from stop
        return failures

    def _send(self, kind: str, items: list[_Item], handled: set[int], failures: list[Failure]) -> None:
        if len(items) <= self.batch_threshold:
            for item in items:
                self._send_one(item, handled, failures)
            return
        for start in range(0, len(items), MAX_BATCH_ITEMS):
            chunk = items[start : start + MAX_BATCH_ITEMS]
            key = "subscribers" if kind == SUBSCRIBER else "events"
            try:
                response = self._post(f"/{key}/batches", {"batches": [{key: [i.payload for i in chunk]}]}, "batch")
            except _RateLimited:
                # 50 batch calls an hour run out long before 3,600 single ones: carry on one by one.
                self._remaining["batch"] = 0
                for item in chunk:
                    self._send_one(item, handled, failures)
                continue
            if response.is_success:
                handled.update(i.entry.seq for i in chunk)
                continue
            # A refused batch: send its items one by one so one bad item never sinks the rest.
            for item in chunk:
                self._send_one(item, handled, failures)

    def _send_one(self, item: _Item, handled: set[int], failures: list[Failure]) -> None:
        key = "subscribers" if item.kind == SUBSCRIBER else "events"
        response = self._post(f"/{key}", {key: [item.payload]}, "single")
        if not response.is_success:
            failures.append(Failure(item.entry, f"Drip refused the {item.kind}: {drip_errors(response)}"))
        handled.add(item.entry.seq)

    def _post(self, path: str, body: dict[str, Any], limit_kind: str) -> httpx.Response:
        """POST to Drip; returns 2xx and per-item 4xx answers, raises _Stop for everything retryable."""
        if self._remaining.get(limit_kind, 1) <= 0:
            # No reset time is published: back off, and the next attempt's 429 says exactly how long.
            raise _RateLimited(f"Drip {limit_kind}-request rate limit used up (X-RateLimit-Remaining: 0)")
        try:
            response = self.client.post(path, content=orjson.dumps(body))
        except httpx.TimeoutException as e:
            raise _Stop(f"Drip did not answer in time ({type(e).__name__})") from e
        except httpx.TransportError as e:
            raise _Stop(f"cannot reach Drip: {type(e).__name__}: {e}") from e
        remaining = response.headers.get("x-ratelimit-remaining")
        if remaining is not None and remaining.strip().isdigit():
            self._remaining[limit_kind] = int(remaining)
        status = response.status_code
        if status == 429:
            retry = retry_after(response)
            raise _RateLimited(
                f"Drip rate limit exceeded: {drip_errors(response)}",
                _seconds_to_next_hour() if retry is None else retry,
            )
        if status in (401, 403):
            # Every event would fail the same way: retry (and show it) rather than dead-letter them all.
            raise _Stop(
                f"Drip refused the credentials (HTTP {status}: {drip_errors(response)}): "
                f"check the destination's api_token and account_id ({self.account_id})"
            )
        if status == 404:
            # Our paths are fixed, so a 404 means a wrong base_url or account, not a bad event.
            raise _Stop(f"Drip answered 404 for {path}: check the destination's base_url and account_id")
        if status < 200 or 300 <= status < 400:
            raise _Stop(f"Drip answered HTTP {status} for {path}: check the destination's base_url")
        if status == 408 or status >= 500:
            raise _Stop(f"Drip answered HTTP {status}: {drip_errors(response)}", retry_after(response))
        return response
