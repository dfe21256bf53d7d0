"""Real-shaped Drip webhook payloads (reference/drip.md): envelopes, subscribers, properties."""

from __future__ import annotations

import copy
from typing import Any

ACCOUNT_ID = "9999999"
OCCURRED_AT = "2024-05-14T09:31:58Z"

# data.properties as Drip sends them, one realistic example for every documented webhook event.
_EMAIL = {"delivery_id": "1039857316", "email_id": "88888", "email_subject": "Your May product update"}
_CAMPAIGN = {"campaign_id": "4412387", "campaign_name": "Spring onboarding"}
SAMPLE_PROPERTIES: dict[str, dict[str, Any]] = {
    "subscriber.received_email": dict(_EMAIL),
    "subscriber.opened_email": dict(_EMAIL),
    "subscriber.clicked_email": {
        **_EMAIL,
        "url": "https://www.example.com/blog/may-update?utm_source=drip",
        "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        "ip_address": "203.0.113.42",
    },
    "subscriber.bounced": dict(_EMAIL),
    "subscriber.complained": dict(_EMAIL),
    "subscriber.unsubscribed_all": {},
    "subscriber.unsubscribed_from_campaign": dict(_CAMPAIGN),
    "subscriber.subscribed_to_campaign": dict(_CAMPAIGN),
    "subscriber.removed_from_campaign": dict(_CAMPAIGN),
    "subscriber.completed_campaign": dict(_CAMPAIGN),
    "subscriber.created": {},
    "subscriber.deleted": {},
    "subscriber.subscribed_to_email_marketing": {},
    "subscriber.reactivated": {},
    "subscriber.became_non_prospect": {},
    "subscriber.marked_as_deliverable": {"source": "drip"},
    "subscriber.marked_as_undeliverable": {"source": "drip"},
    "subscriber.applied_tag": {"tag": "Customer"},
    "subscriber.removed_tag": {"tag": "Trial"},
    "subscriber.updated_custom_field": {
        "identifier": "company",
        "value": "Acme Ltd",
        "previous_value": "Acme",
        "source": "api",
    },
    "subscriber.updated_email_address": {
        "value": "jane.doe@acme.example",
        "previous_value": "jane@oldmail.example",
        "source": "drip",
    },
    "subscriber.updated_lifetime_value": {"value": 12900, "previous_value": 4900, "source": "api"},
    "subscriber.updated_time_zone": {"value": "Europe/Berlin", "previous_value": "America/New_York"},
    "subscriber.updated_alias": {
        "identifier": "user_id",
        "value": "u-1001",
        "previous_value": None,
        "source": "api",
    },
    "subscriber.clicked_trigger_link": {
        "url": "https://www.example.com/pricing",
        "ip_address": "198.51.100.7",
        "trigger_id": 223344,
        "source": "drip",
    },
    "subscriber.visited_page": {"url": "https://www.example.com/features/automation"},
    "subscriber.became_lead": {"lead_score": 72},
    "subscriber.updated_lead_score": {"lead_score": 64, "previous_lead_score": 51},
    "subscriber.performed_custom_event": {
        "action": "Upgraded Plan",
        "plan": "pro",
        "value": 4900,
        "occurred_in_app": True,
    },
}


def subscriber(*, user_id: str | None = "u-1001", **overrides: Any) -> dict[str, Any]:
    """A full Drip subscriber object: every documented key, ids as strings."""
    base: dict[str, Any] = {
        "id": "z1togz2hcjrkpp5treip",
        "status": "active",
        "email": "jane.doe@acme.example",
        "first_name": "Jane",
        "last_name": "Doe",
        "custom_fields": {"company": "Acme Ltd", "plan": "starter"},
        "tags": ["Customer", "Newsletter"],
        "time_zone": "America/New_York",
        "utc_offset": -240,
        "created_at": "2023-11-02T15:04:11Z",
        "ip_address": "203.0.113.42",
        "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        "lifetime_value": 12900,
        "original_referrer": "https://www.google.com/",
        "landing_url": "https://www.example.com/pricing",
        "prospect": True,
        "base_lead_score": 30,
        "lead_score": 64,
        "user_id": user_id,
    }
    base.update(overrides)
    return base


def webhook(
    event: str,
    *,
    user_id: str | None = "u-1001",
    properties: dict[str, Any] | None = None,
    **subscriber_overrides: Any,
) -> dict[str, Any]:
    """A full webhook envelope; properties default to SAMPLE_PROPERTIES[event] (or {} if unknown)."""
    props = SAMPLE_PROPERTIES.get(event, {}) if properties is None else properties
    return {
        "event": event,
        "data": {
            "account_id": ACCOUNT_ID,
            "subscriber": subscriber(user_id=user_id, **subscriber_overrides),
            "properties": copy.deepcopy(props),
        },
        "occurred_at": OCCURRED_AT,
    }
