"""Turn one decoded Segment message into the canonical message the log stores.

Canonical = Segment's own message shape with `type`, a `messageId`, the four timestamps
(`timestamp`, `originalTimestamp`, `sentAt`, `receivedAt`, UTC ISO-8601 with milliseconds), the
batch's `context`/`integrations` merged in, and `writeKey` removed. Validation happens here,
in the same pass, so the message is decoded once and serialised once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from sluice.ingest.shape import PAYLOAD_KEY, TooDeep, digest, structure
from sluice.log.base import Record

MESSAGE_TYPES = ("track", "identify", "page", "screen", "group", "alias")
# Keys handled explicitly above the catch-all that keeps any other top-level key a sender adds.
_HANDLED = frozenset(
    ("writeKey", "type", "messageId", "timestamp", "originalTimestamp", "sentAt", "receivedAt", "context",
     "integrations", "userId", "anonymousId", "event", "name", "category", "groupId", "previousId",
     "properties", "traits")
)


# orjson writes at most this many levels of nested arrays and objects (its own limit): a message nested
# deeper cannot be stored, so it is refused with that reason. Not a setting: no larger value could work.
MAX_NESTING = 254


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether `value` nests arrays and objects more than `limit` levels deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def dumps(value: Any, what: str) -> bytes:
    """JSON bytes, or Rejected with a reason the sender can act on (never a 500)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as e:
        if "ecursion" in str(e):
            raise Rejected(f"{what} is nested more than {MAX_NESTING} levels deep", "too_deep") from None
        raise Rejected(f"{what} cannot be stored as JSON: {e}", "bad_json") from None


class Rejected(ValueError):
    """A message that fails validation; `reason` is shown to the sender and counted in metrics."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code  # short, stable label for metrics


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int
    max_message_id_chars: int


@dataclass(frozen=True)
class Arrival:
    """What is shared by every message of one request: when it arrived and the batch envelope."""

    received_ms: int
    received_iso: str
    sent_ms: int | None = None  # the batch's sentAt
    sent_iso: str | None = None
    # Bytes the canonical form may add to a message: fields sluice sets plus the batch context.
    allowance: int = 256
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    # context.ip (issue 10): the client's address, filled into messages that carry none (Tracking API paths
    # only); and whether the source keeps IPs at all (False drops context.ip, even one the sender set).
    ip: str | None = None
    keep_ip: bool = True

    @classmethod
    def now(cls, sent_at: datetime | None = None, **kw: Any) -> Arrival:
        received_ms = time.time_ns() // 1_000_000
        if kw.get("context"):
            kw["allowance"] = 256 + len(dumps(kw["context"], "the batch's context"))
        if sent_at is not None:
            kw["sent_ms"] = epoch_ms(sent_at)
            kw["sent_iso"] = iso_ms(kw["sent_ms"])
        return cls(received_ms=received_ms, received_iso=iso_ms(received_ms), **kw)


def epoch_ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


_SECONDS: dict[int, str] = {}


def iso_ms(ms: int) -> str:
    """UTC ISO-8601 with milliseconds and Z. The date-and-time part is cached per second: events of a
    batch share their seconds, and formatting datetimes was a large share of ingest's CPU."""
    second, millis = divmod(ms, 1000)
    prefix = _SECONDS.get(second)
    if prefix is None:
        if not 0 <= second < 253402300800:  # outside years 1970..9999: the slow, general way
            try:
                return iso(datetime.fromtimestamp(ms / 1000, UTC))
            except (OverflowError, OSError) as e:
                raise ValueError(str(e)) from None
        if len(_SECONDS) > 8192:
            _SECONDS.clear()
        prefix = _SECONDS[second] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{prefix}.{millis:03d}Z"


_EPOCH_SECONDS: dict[str, int] = {}


def canonical_ms(value: Any) -> int | None:
    """Epoch milliseconds of a time already in the canonical form `YYYY-MM-DDTHH:MM:SS.mmmZ` (what every
    Segment library sends, and what sluice writes), in integers, with the date-and-time part cached per
    second; None for anything else, which takes the general path (parse_time). Most events of a batch
    share their seconds, and parsing datetimes per event was a large share of ingest's CPU."""
    if type(value) is not str or len(value) != 24 or value[19] != "." or value[23] != "Z" or value[10] != "T":
        return None
    millis = value[20:23]
    if not (millis.isascii() and millis.isdigit()):
        return None
    prefix = value[:19]
    second = _EPOCH_SECONDS.get(prefix)
    if second is None:
        try:
            dt = datetime.fromisoformat(prefix)
        except ValueError:
            return None  # the general path says what is wrong with it
        if len(_EPOCH_SECONDS) > 8192:
            _EPOCH_SECONDS.clear()
        second = _EPOCH_SECONDS[prefix] = int(dt.replace(tzinfo=UTC).timestamp())
    return second * 1000 + int(millis)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _as_sent(value: str, dt: datetime) -> str:
    """The client's own string when it is already an extended-format UTC ISO-8601 time (what every
    Segment library sends), else the normalised form. Formatting dates is a large share of ingest."""
    if len(value) >= 20 and value[10] == "T" and (value[-1] == "Z" or value.endswith("+00:00")):
        return value
    return iso(dt)


def parse_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise Rejected(f"{field} must be an ISO-8601 string, got {_kind(value)}", "bad_timestamp")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(f"{field} is not an ISO-8601 date-time: {value[:64]!r}", "bad_timestamp") from None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    try:  # an offset can push a date past year 1 or 9999
        return dt.astimezone(UTC)
    except (OverflowError, ValueError):
        raise Rejected(f"{field} is outside the years 1 to 9999 in UTC: {value[:64]!r}", "bad_timestamp") from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _identity(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # Segment's libraries accept numeric ids and send them as strings
    raise Rejected(f"{field} must be a string, got {_kind(value)}", "bad_identity")


def _object(msg: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Rejected(f"{key} must be an object, got {_kind(value)}", f"bad_{key}")
    return value


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(v) for v in value)
    return False


def _structure(obj: dict[str, Any]) -> tuple[Any, ...]:
    try:
        return structure(obj)
    except TooDeep as e:
        raise Rejected(str(e), "too_deep") from None


def _with_ip(context: dict[str, Any] | None, arrival: Arrival) -> dict[str, Any] | None:
    """The context with context.ip filled from the request when it has none, or without it when the source keeps
    no IPs. A new dict when it changes: the batch's context is shared by every message of the batch."""
    if not arrival.keep_ip:
        return {k: v for k, v in context.items() if k != "ip"} if context and "ip" in context else context
    if not context:
        return {"ip": arrival.ip}
    if context.get("ip") in (None, ""):
        return {**context, "ip": arrival.ip}
    return context


def canonicalize(msg: Any, type_: str | None, arrival: Arrival, limits: Limits, source_id: int) -> Record:
    """Validate and normalise one message; raise Rejected with the reason if it is not acceptable."""
    if not isinstance(msg, dict):
        raise Rejected(f"a message must be a JSON object, got {_kind(msg)}", "not_object")
    mtype = type_ or msg.get("type")
    if mtype not in MESSAGE_TYPES:
        raise Rejected(
            f"type must be one of {', '.join(MESSAGE_TYPES)}; got {str(mtype)[:40]!r}", "bad_type"
        )

    out: dict[str, Any] = {"type": mtype}
    user_id = _identity(msg.get("userId"), "userId")
    anonymous_id = _identity(msg.get("anonymousId"), "anonymousId")
    if user_id is None and anonymous_id is None:
        raise Rejected("every message needs a userId or an anonymousId", "missing_identity")

    message_id = msg.get("messageId")
    if message_id is None or message_id == "":
        message_id = str(uuid.uuid4())
    elif not isinstance(message_id, str):
        raise Rejected(f"messageId must be a string, got {_kind(message_id)}", "bad_message_id")
    elif len(message_id) > limits.max_message_id_chars:
        raise Rejected(
            f"messageId is {len(message_id)} characters; the limit is {limits.max_message_id_chars}",
            "bad_message_id",
        )
    out["messageId"] = message_id
    if user_id is not None:
        out["userId"] = user_id
    if anonymous_id is not None:
        out["anonymousId"] = anonymous_id

    if mtype == "track":
        event = msg.get("event")
        if not isinstance(event, str) or not event.strip():
            raise Rejected("a track call needs an event name (a non-empty string)", "missing_event")
        out["event"] = event
    elif mtype in ("page", "screen"):
        name = msg.get("name")
        if name is not None and not isinstance(name, str):
            raise Rejected(f"name must be a string, got {_kind(name)}", "bad_name")
        if name is not None:
            out["name"] = name
        category = msg.get("category")
        if category is not None and not isinstance(category, str):
            raise Rejected(f"category must be a string, got {_kind(category)}", "bad_category")
        if category is not None:
            out["category"] = category
    elif mtype == "group":
        group_id = _identity(msg.get("groupId"), "groupId")
        if group_id is None:
            raise Rejected("a group call needs a groupId", "missing_group_id")
        out["groupId"] = group_id
    elif mtype == "alias":
        previous_id = _identity(msg.get("previousId"), "previousId")
        if previous_id is None or user_id is None:
            raise Rejected("an alias call needs both previousId and userId", "missing_alias_ids")
        out["previousId"] = previous_id

    payload_key = PAYLOAD_KEY[mtype]
    payload_shape: tuple[Any, ...] = ()
    if payload_key is not None:
        payload = _object(msg, payload_key) or {}
        out[payload_key] = payload
        payload_shape = _structure(payload)

    context = _object(msg, "context")
    if arrival.context:
        context = {**arrival.context, **context} if context else arrival.context
    if arrival.ip is not None or not arrival.keep_ip:  # before the shape: it must describe the stored body
        context = _with_ip(context, arrival)
    context_shape: tuple[Any, ...] = ()
    if context:
        out["context"] = context
        context_shape = _structure(context)
    integrations = _object(msg, "integrations")
    if arrival.integrations:
        integrations = {**arrival.integrations, **integrations} if integrations else arrival.integrations
    if integrations:
        out["integrations"] = integrations

    # Timestamps (reference: timestamp = receivedAt - (sentAt - originalTimestamp)).
    sent_ms, sent_iso = arrival.sent_ms, arrival.sent_iso
    if msg.get("sentAt") is not None:
        sent = parse_time(msg["sentAt"], "sentAt")
        try:
            sent_ms, sent_iso = epoch_ms(sent), _as_sent(msg["sentAt"], sent)
        except ValueError:
            raise Rejected("sentAt is outside the years 1 to 9999", "bad_timestamp") from None
    original_iso = None
    timestamp = msg.get("timestamp")
    if timestamp is not None:
        original_ms = canonical_ms(timestamp)
        if original_ms is not None:  # already canonical: kept as sent, skew in integer milliseconds
            original_iso = timestamp
        else:
            original = parse_time(timestamp, "timestamp")
            original_iso = _as_sent(timestamp, original)
        if sent_ms is not None:
            try:
                if original_ms is None:
                    original_ms = epoch_ms(original)
                out["timestamp"] = iso_ms(arrival.received_ms - (sent_ms - original_ms))
            except ValueError:
                raise Rejected("timestamp minus sentAt is outside the years 1 to 9999", "bad_timestamp") from None
        else:
            out["timestamp"] = original_iso
    else:
        out["timestamp"] = arrival.received_iso
    if original_iso is not None:
        out["originalTimestamp"] = original_iso
    if sent_iso is not None:
        out["sentAt"] = sent_iso
    out["receivedAt"] = arrival.received_iso

    for key, value in msg.items():  # anything else the sender added is kept, never silently dropped
        if key not in _HANDLED:
            out[key] = value

    body = dumps(out, "message")
    # The limit is on the message as sent; the canonical form also carries what sluice added (the
    # merged batch context, the timestamps, a messageId), so that much more is allowed here.
    if len(body) > limits.max_message_bytes + arrival.allowance:
        raise Rejected(
            f"message is about {len(body) - arrival.allowance:,} bytes; the limit is"
            f" {limits.max_message_bytes:,} bytes per message",
            "too_large",
        )
    # PostgreSQL text cannot hold NUL, and no column can be named with one. The byte search is the
    # cheap test; the walk rules out a literal backslash-u0000 written by the sender.
    if b"\\u0000" in body and _contains_nul(out):
        raise Rejected("message contains a NUL character (\\u0000), which warehouses cannot store", "nul_character")
    shape = digest(mtype, out.get("event"), payload_shape, context_shape)
    return Record(source_id, message_id, arrival.received_ms, shape, body)
