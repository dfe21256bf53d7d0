"""Drip webhooks -> Segment messages, named exactly as Segment's Drip Source names them.

Drip POSTs `{"event", "data": {"account_id", "subscriber", "properties"}, "occurred_at"}`
(reference/drip.md). The email engagement events become the Email spec tracks the Drip
Source sends; every other documented event becomes a readable track plus an identify
carrying the subscriber's state. Unknown events are kept as `Drip Event` rather than
refused: Drip adds events over time, and a webhook that keeps failing gets disabled.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import orjson

from sluice.ingest.canonical import MAX_NESTING, too_deep

# Drip webhook event -> Segment event, as Segment's Drip Source sends them. Both unsubscribe
# flavours are one Segment event; the campaign one carries campaign_id/campaign_name.
EMAIL_EVENTS: dict[str, str] = {
    "subscriber.received_email": "Email Delivered",
    "subscriber.opened_email": "Email Opened",
    "subscriber.clicked_email": "Email Link Clicked",
    "subscriber.bounced": "Email Bounced",
    "subscriber.complained": "Email Marked as Spam",
    "subscriber.unsubscribed_all": "Email Unsubscribed",
    "subscriber.unsubscribed_from_campaign": "Email Unsubscribed",
}

# Every other documented Drip webhook event -> a readable track name. Each also yields an
# identify, because Drip sends the subscriber's full current state with every webhook.
PROFILE_EVENTS: dict[str, str] = {
    "subscriber.created": "Subscriber Created",
    "subscriber.deleted": "Subscriber Deleted",
    "subscriber.reactivated": "Subscriber Reactivated",
    "subscriber.subscribed_to_email_marketing": "Subscribed to Email Marketing",
    "subscriber.became_non_prospect": "Became Non-Prospect",
    "subscriber.marked_as_deliverable": "Marked as Deliverable",
    "subscriber.marked_as_undeliverable": "Marked as Undeliverable",
    "subscriber.subscribed_to_campaign": "Subscribed to Campaign",
    "subscriber.removed_from_campaign": "Removed from Campaign",
    "subscriber.completed_campaign": "Campaign Completed",
    "subscriber.applied_tag": "Tag Applied",
    "subscriber.removed_tag": "Tag Removed",
    "subscriber.updated_custom_field": "Custom Field Updated",
    "subscriber.updated_email_address": "Email Address Updated",
    "subscriber.updated_lifetime_value": "Lifetime Value Updated",
    "subscriber.updated_time_zone": "Time Zone Updated",
    "subscriber.updated_alias": "Alias Updated",
    "subscriber.clicked_trigger_link": "Trigger Link Clicked",
    "subscriber.visited_page": "Page Visited",
    "subscriber.became_lead": "Became Lead",
    "subscriber.updated_lead_score": "Lead Score Updated",
    # The track is named by the event's `action`; this name is only the fallback when it has none.
    "subscriber.performed_custom_event": "Custom Event Performed",
}

CUSTOM_EVENT = "subscriber.performed_custom_event"
UNKNOWN_EVENT_NAME = "Drip Event"
LIBRARY = {"name": "sluice-drip-webhook", "version": "1"}

# Drip's documented data.properties per event (reference/drip.md); only the docs use it.
DOCUMENTED_PROPERTIES: dict[str, tuple[str, ...]] = {
    "subscriber.received_email": ("delivery_id", "email_id", "email_subject"),
    "subscriber.opened_email": ("delivery_id", "email_id", "email_subject"),
    "subscriber.clicked_email": (
        "delivery_id",
        "email_id",
        "email_subject",
        "url",
        "user_agent",
        "ip_address",
    ),
    "subscriber.bounced": ("delivery_id", "email_id", "email_subject"),
    "subscriber.complained": ("delivery_id", "email_id", "email_subject"),
    "subscriber.unsubscribed_all": (),
    "subscriber.unsubscribed_from_campaign": ("campaign_id", "campaign_name"),
    "subscriber.subscribed_to_campaign": ("campaign_id", "campaign_name"),
    "subscriber.removed_from_campaign": ("campaign_id", "campaign_name"),
    "subscriber.completed_campaign": ("campaign_id", "campaign_name"),
    "subscriber.created": (),
    "subscriber.deleted": (),
    "subscriber.subscribed_to_email_marketing": (),
    "subscriber.reactivated": (),
    "subscriber.became_non_prospect": (),
    "subscriber.marked_as_deliverable": ("source",),
    "subscriber.marked_as_undeliverable": ("source",),
    "subscriber.applied_tag": ("tag",),
    "subscriber.removed_tag": ("tag",),
    "subscriber.updated_custom_field": ("identifier", "value", "previous_value", "source"),
    "subscriber.updated_email_address": ("value", "previous_value", "source"),
    "subscriber.updated_lifetime_value": ("value", "previous_value", "source"),
    "subscriber.updated_time_zone": ("value", "previous_value"),
    "subscriber.updated_alias": ("identifier", "value", "previous_value", "source"),
    "subscriber.clicked_trigger_link": ("url", "ip_address", "trigger_id", "source"),
    "subscriber.visited_page": ("url",),
    "subscriber.became_lead": ("lead_score",),
    "subscriber.updated_lead_score": ("lead_score", "previous_lead_score"),
    "subscriber.performed_custom_event": ("action",),
}

# A clicked link is `link_url` in Segment's Email spec; a visited page's `url` is not a link.
_LINK_EVENTS = frozenset({"subscriber.clicked_email", "subscriber.clicked_trigger_link"})
# Where the click happened belongs in context, as Segment's Email spec puts it.
_CONTEXT_FIELDS = (("ip_address", "ip"), ("user_agent", "userAgent"))
_TRAIT_KEYS = (
    "first_name",
    "last_name",
    "status",
    "tags",
    "custom_fields",
    "time_zone",
    "utc_offset",
    "lifetime_value",
    "lead_score",
    "base_lead_score",
    "prospect",
    "created_at",
    "ip_address",
    "user_agent",
    "original_referrer",
    "landing_url",
)


def without_ip(message: dict[str, Any]) -> dict[str, Any]:
    """A mapped message without the subscriber's `ip_address` trait, for a source that keeps no IPs (context.ip
    is dropped when the message is canonicalised)."""
    traits = message.get("traits")
    if isinstance(traits, dict) and "ip_address" in traits:
        return {**message, "traits": {k: v for k, v in traits.items() if k != "ip_address"}}
    return message


class DripPayloadError(ValueError):
    """A webhook body that cannot be mapped; `reason` is meant for the sender to read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class WebhookMapping:
    messages: list[dict[str, Any]]
    known: bool
    drip_event: str
    # The messageIds these messages had before ids were scoped to the source, one per message: a Drip
    # retry of a webhook stored before the upgrade is recognised by them within the dedup window.
    unscoped_ids: list[str]


def map_webhook(payload: Any, scope: str | None = None) -> WebhookMapping:
    """Map one decoded Drip webhook envelope to Segment messages (identify first, then track).

    messageIds hash the webhook's content, so Drip's retries deduplicate; with `scope` (the source's
    id) they are the source's own, so that two sources fed by one Drip account each store the webhook
    (messageIds are deduplicated across sources, as Segment does)."""
    if not isinstance(payload, dict):
        raise DripPayloadError(f"body must be a JSON object, got {_json_type(payload)}")
    if too_deep(payload):  # deepcopy and hashing below recurse; the message could not be stored anyway
        raise DripPayloadError(f"the webhook is nested more than {MAX_NESTING} levels deep")
    event = payload.get("event")
    if event is None:
        raise DripPayloadError("`event` is missing")
    if not isinstance(event, str):
        raise DripPayloadError(f"`event` must be a string, got {_json_type(event)}")
    if not event.strip():
        raise DripPayloadError("`event` is an empty string")
    data = payload.get("data")
    if not isinstance(data, dict):
        what = "is missing" if data is None else f"must be an object, got {_json_type(data)}"
        raise DripPayloadError(f"`data` {what}")
    subscriber = data.get("subscriber")
    if not isinstance(subscriber, dict):
        what = "is missing" if subscriber is None else f"must be an object, got {_json_type(subscriber)}"
        raise DripPayloadError(f"`data.subscriber` {what}")
    properties = data.get("properties")
    if properties is None:  # events without properties: Drip sends {} or nothing
        properties = {}
    elif not isinstance(properties, dict):
        raise DripPayloadError(f"`data.properties` must be an object, got {_json_type(properties)}")
    occurred_at = payload.get("occurred_at")
    if occurred_at is not None and not isinstance(occurred_at, str):
        raise DripPayloadError(f"`occurred_at` must be an ISO-8601 string, got {_json_type(occurred_at)}")
    identity, email = _identity(subscriber)

    # Copies, so the messages never share mutable objects with the caller's payload.
    props = copy.deepcopy(properties)
    known = event in EMAIL_EVENTS or event in PROFILE_EVENTS
    extra_context: dict[str, Any] = {}
    if not known:
        name = UNKNOWN_EVENT_NAME
        props["drip_event"] = event
    elif event == CUSTOM_EVENT:
        action = props.get("action")
        name = action.strip() if isinstance(action, str) and action.strip() else PROFILE_EVENTS[event]
    else:
        name = EMAIL_EVENTS.get(event) or PROFILE_EVENTS[event]
        if event in _LINK_EVENTS and "url" in props:
            props["link_url"] = props.pop("url")
        for drip_key, context_key in _CONTEXT_FIELDS:
            value = props.pop(drip_key, None)
            if value is not None:
                extra_context[context_key] = value
    account_id = data.get("account_id")
    if known and account_id is not None:
        props.setdefault("account_id", str(account_id) if _is_int(account_id) else account_id)

    digest = _digest(payload)
    unscoped_base = "drip-" + digest
    message_id_base = unscoped_base if scope is None else "drip-" + _scoped(scope, digest)

    def common(suffix: str) -> dict[str, Any]:
        context: dict[str, Any] = {"library": dict(LIBRARY)}
        if email is not None:
            context["traits"] = {"email": email}
        context.update(extra_context)
        message: dict[str, Any] = {**identity, "context": context}
        if occurred_at is not None:
            message["timestamp"] = occurred_at
        message["messageId"] = f"{message_id_base}-{suffix}"
        return message

    messages: list[dict[str, Any]] = []
    if event not in EMAIL_EVENTS:
        messages.append({"type": "identify", "traits": _traits(subscriber, email), **common("i")})
    messages.append({"type": "track", "event": name, "properties": props, **common("t")})
    unscoped = [f"{unscoped_base}-{m['messageId'].rsplit('-', 1)[1]}" for m in messages]
    return WebhookMapping(messages=messages, known=known, drip_event=event, unscoped_ids=unscoped)


def mapping_table_markdown() -> str:
    """The mapping as a markdown table, produced by running map_webhook on documented payloads."""
    rows = [
        "| Drip webhook event | Segment event | properties |",
        "|---|---|---|",
    ]
    for event in (*EMAIL_EVENTS, *PROFILE_EVENTS):
        sample = {
            "event": event,
            "data": {
                "account_id": "9999999",
                "subscriber": {"email": "a@example.com"},
                "properties": {key: "x" for key in DOCUMENTED_PROPERTIES[event]},
            },
        }
        mapping = map_webhook(sample)
        track = mapping.messages[-1]
        name = "the event's `action`" if event == CUSTOM_EVENT else f"`{track['event']}`"
        if event not in EMAIL_EVENTS:
            name += " + identify"
        cells = [f"`{key}`" for key in track["properties"]]
        if event == CUSTOM_EVENT:
            cells.insert(1, "the event's own properties")
        cells += [f"`context.{key}`" for key in track["context"] if key not in ("library", "traits")]
        rows.append(f"| `{event}` | {name} | {', '.join(cells)} |")
    rows.append(f"| any other event | `{UNKNOWN_EVENT_NAME}` + identify | the raw properties, `drip_event` |")
    return "\n".join(rows) + "\n"


def _identity(subscriber: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """userId = Drip's user_id when it has one, else anonymousId = the email (the Drip Source rule)."""
    email = subscriber.get("email")
    if email is not None and not isinstance(email, str):
        raise DripPayloadError(f"`data.subscriber.email` must be a string, got {_json_type(email)}")
    user_id = subscriber.get("user_id")
    if _is_int(user_id):
        user_id = str(user_id)
    elif user_id is not None and not isinstance(user_id, str):
        raise DripPayloadError(f"`data.subscriber.user_id` must be a string, got {_json_type(user_id)}")
    email = (email or "").strip() or None
    user_id = (user_id or "").strip() or None
    if user_id is not None:
        return {"userId": user_id}, email
    if email is not None:
        return {"anonymousId": email}, email
    raise DripPayloadError(
        "`data.subscriber` has neither a non-empty `email` nor a non-empty `user_id`, "
        "so the message would have no userId or anonymousId"
    )


def _traits(subscriber: dict[str, Any], email: str | None) -> dict[str, Any]:
    traits: dict[str, Any] = {} if email is None else {"email": email}
    for key in _TRAIT_KEYS:
        value = subscriber.get(key)
        if value is not None:
            traits[key] = copy.deepcopy(value)
    if subscriber.get("id") is not None:
        traits["drip_subscriber_id"] = subscriber["id"]
    return traits


def _digest(payload: dict[str, Any]) -> str:
    """A hash of the envelope's content, so a retried webhook maps to the same messageIds."""
    try:
        canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        # orjson refuses integers wider than 64 bits, which json.loads decodes happily.
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(canonical).hexdigest()[:32]


def _scoped(scope: str, digest: str) -> str:
    return hashlib.sha256(f"{scope}:{digest}".encode()).hexdigest()[:32]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
