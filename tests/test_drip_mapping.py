"""Drip webhook -> Segment message mapping (sluice.sources.drip) and the demo traffic generator."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from drip_payloads import ACCOUNT_ID, OCCURRED_AT, SAMPLE_PROPERTIES, subscriber, webhook

from sluice.demo_traffic import DUPLICATES_KEY, generate
from sluice.sources.drip import (
    DOCUMENTED_PROPERTIES,
    EMAIL_EVENTS,
    PROFILE_EVENTS,
    DripPayloadError,
    map_webhook,
    mapping_table_markdown,
)

EMAIL = "jane.doe@acme.example"
LIBRARY = {"name": "sluice-drip-webhook", "version": "1"}

# The names the Drip Source uses (reference/drip.md), written out here rather than read from the code.
EXPECTED_EMAIL_NAMES = {
    "subscriber.received_email": "Email Delivered",
    "subscriber.opened_email": "Email Opened",
    "subscriber.clicked_email": "Email Link Clicked",
    "subscriber.bounced": "Email Bounced",
    "subscriber.complained": "Email Marked as Spam",
    "subscriber.unsubscribed_all": "Email Unsubscribed",
    "subscriber.unsubscribed_from_campaign": "Email Unsubscribed",
}
EXPECTED_PROFILE_NAMES = {
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
    "subscriber.performed_custom_event": "Upgraded Plan",  # the sample's `action`
}
EXPECTED_NAMES = {**EXPECTED_EMAIL_NAMES, **EXPECTED_PROFILE_NAMES}
ALL_EVENTS = sorted(EXPECTED_NAMES)
# Keys that leave properties: renamed (url on clicks) or moved into context.
MOVED = {
    "subscriber.clicked_email": {"url", "ip_address", "user_agent"},
    "subscriber.clicked_trigger_link": {"url", "ip_address"},
}


def _track(payload: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in map_webhook(payload).messages if m["type"] == "track")


def _ids(payload: dict[str, Any]) -> list[str]:
    return [m["messageId"] for m in map_webhook(payload).messages]


def test_tables_cover_exactly_the_documented_events() -> None:
    assert set(EMAIL_EVENTS).isdisjoint(PROFILE_EVENTS)
    assert set(EMAIL_EVENTS) | set(PROFILE_EVENTS) == set(EXPECTED_NAMES)
    assert set(SAMPLE_PROPERTIES) == set(EXPECTED_NAMES)
    assert set(DOCUMENTED_PROPERTIES) == set(EXPECTED_NAMES)
    # The fixtures send what Drip documents for each event (plus the custom event's own properties).
    for event, keys in DOCUMENTED_PROPERTIES.items():
        assert set(keys) <= set(SAMPLE_PROPERTIES[event]), event


@pytest.mark.parametrize("user_id", ["u-1001", None], ids=["user_id", "email-only"])
@pytest.mark.parametrize("event", ALL_EVENTS)
def test_every_documented_event(event: str, user_id: str | None) -> None:
    mapping = map_webhook(webhook(event, user_id=user_id))
    assert mapping.known is True
    assert mapping.drip_event == event

    is_email_event = event in EXPECTED_EMAIL_NAMES
    assert [m["type"] for m in mapping.messages] == (["track"] if is_email_event else ["identify", "track"])
    track = mapping.messages[-1]
    assert track["event"] == EXPECTED_NAMES[event]

    for message in mapping.messages:
        if user_id:
            assert message["userId"] == user_id
            assert "anonymousId" not in message
        else:
            assert message["anonymousId"] == EMAIL
            assert "userId" not in message
        assert message["context"]["traits"] == {"email": EMAIL}
        assert message["context"]["library"] == LIBRARY
        assert message["timestamp"] == OCCURRED_AT
        assert len(message["messageId"]) <= 100
        for key in ("receivedAt", "sentAt", "originalTimestamp"):
            assert key not in message

    # Every property Drip sent survives (under its Segment name when renamed), plus account_id.
    props = track["properties"]
    assert props["account_id"] == ACCOUNT_ID
    for key, value in SAMPLE_PROPERTIES[event].items():
        if key not in MOVED.get(event, set()):
            assert props[key] == value, key
    assert set(props) == set(SAMPLE_PROPERTIES[event]) - MOVED.get(event, set()) | {"account_id"} | (
        {"link_url"} if event in MOVED else set()
    )

    if not is_email_event:
        identify = mapping.messages[0]
        assert identify["traits"]["email"] == EMAIL
        assert identify["traits"]["drip_subscriber_id"] == "z1togz2hcjrkpp5treip"
        assert identify["messageId"] != track["messageId"]


def test_clicked_email_follows_the_email_spec() -> None:
    track = _track(webhook("subscriber.clicked_email"))
    click = SAMPLE_PROPERTIES["subscriber.clicked_email"]
    assert track["properties"] == {
        "delivery_id": "1039857316",
        "email_id": "88888",
        "email_subject": "Your May product update",
        "link_url": "https://www.example.com/blog/may-update?utm_source=drip",
        "account_id": ACCOUNT_ID,
    }
    assert track["context"]["ip"] == "203.0.113.42"
    assert track["context"]["userAgent"] == click["user_agent"]


def test_delivered_has_email_properties_and_no_request_context() -> None:
    track = _track(webhook("subscriber.received_email"))
    assert track["properties"] == {
        "delivery_id": "1039857316",
        "email_id": "88888",
        "email_subject": "Your May product update",
        "account_id": ACCOUNT_ID,
    }
    assert set(track["context"]) == {"library", "traits"}


def test_unsubscribes() -> None:
    assert _track(webhook("subscriber.unsubscribed_all"))["properties"] == {"account_id": ACCOUNT_ID}
    campaign = _track(webhook("subscriber.unsubscribed_from_campaign"))
    assert campaign["event"] == "Email Unsubscribed"
    assert campaign["properties"] == {
        "campaign_id": "4412387",
        "campaign_name": "Spring onboarding",
        "account_id": ACCOUNT_ID,
    }


def test_trigger_link_click_moves_link_and_ip() -> None:
    track = _track(webhook("subscriber.clicked_trigger_link"))
    assert track["properties"] == {
        "link_url": "https://www.example.com/pricing",
        "trigger_id": 223344,  # a number in Drip's payload, kept as one
        "source": "drip",
        "account_id": ACCOUNT_ID,
    }
    assert track["context"]["ip"] == "198.51.100.7"
    assert "userAgent" not in track["context"]


def test_visited_page_keeps_url_as_url() -> None:
    track = _track(webhook("subscriber.visited_page"))
    assert track["properties"] == {
        "url": "https://www.example.com/features/automation",
        "account_id": ACCOUNT_ID,
    }
    assert "ip" not in track["context"]


def test_tag_and_custom_field_events() -> None:
    tag = _track(webhook("subscriber.applied_tag"))
    assert (tag["event"], tag["properties"]) == ("Tag Applied", {"tag": "Customer", "account_id": ACCOUNT_ID})
    field = _track(webhook("subscriber.updated_custom_field"))
    assert field["properties"] == {
        "identifier": "company",
        "value": "Acme Ltd",
        "previous_value": "Acme",
        "source": "api",
        "account_id": ACCOUNT_ID,
    }


def test_custom_event_is_named_by_its_action() -> None:
    track = _track(webhook("subscriber.performed_custom_event"))
    assert track["event"] == "Upgraded Plan"
    assert track["properties"] == {
        "action": "Upgraded Plan",
        "plan": "pro",
        "value": 4900,
        "occurred_in_app": True,
        "account_id": ACCOUNT_ID,
    }
    # Custom properties are the user's own: an ip_address there is data, not request context.
    own = {"action": "Signed In", "ip_address": "1.2.3.4"}
    track = _track(webhook("subscriber.performed_custom_event", properties=own))
    assert track["properties"]["ip_address"] == "1.2.3.4"
    assert "ip" not in track["context"]


@pytest.mark.parametrize("action", [None, "", "   ", 42])
def test_custom_event_without_usable_action_still_maps(action: Any) -> None:
    props = {"plan": "pro"} if action is None else {"action": action, "plan": "pro"}
    mapping = map_webhook(webhook("subscriber.performed_custom_event", properties=props))
    assert mapping.known is True
    assert mapping.messages[-1]["event"] == "Custom Event Performed"
    assert mapping.messages[-1]["properties"]["plan"] == "pro"


def test_identify_traits_carry_subscriber_state() -> None:
    identify = map_webhook(webhook("subscriber.updated_lead_score")).messages[0]
    sub = subscriber()
    assert identify["type"] == "identify"
    assert identify["traits"] == {
        "email": EMAIL,
        "first_name": "Jane",
        "last_name": "Doe",
        "status": "active",
        "tags": ["Customer", "Newsletter"],
        "custom_fields": {"company": "Acme Ltd", "plan": "starter"},
        "time_zone": "America/New_York",
        "utc_offset": -240,
        "lifetime_value": 12900,
        "lead_score": 64,
        "base_lead_score": 30,
        "prospect": True,
        "created_at": "2023-11-02T15:04:11Z",
        "ip_address": "203.0.113.42",
        "user_agent": sub["user_agent"],
        "original_referrer": "https://www.google.com/",
        "landing_url": "https://www.example.com/pricing",
        "drip_subscriber_id": "z1togz2hcjrkpp5treip",
    }
    assert "properties" not in identify and "event" not in identify


def test_identify_omits_absent_and_null_keys() -> None:
    payload = webhook("subscriber.created", original_referrer=None, first_name=None, prospect=False)
    del payload["data"]["subscriber"]["lead_score"]
    traits = map_webhook(payload).messages[0]["traits"]
    assert "original_referrer" not in traits and "first_name" not in traits and "lead_score" not in traits
    assert traits["prospect"] is False  # falsy but present: kept


def test_messages_do_not_share_objects_with_the_payload() -> None:
    payload = webhook("subscriber.applied_tag")
    before = copy.deepcopy(payload)
    identify, track = map_webhook(payload).messages
    identify["traits"]["tags"].append("Mutated")
    identify["traits"]["custom_fields"]["plan"] = "mutated"
    track["properties"]["tag"] = "mutated"
    assert payload == before


@pytest.mark.parametrize("user_id", ["", "   "])
def test_empty_user_id_falls_back_to_email(user_id: str) -> None:
    track = _track(webhook("subscriber.opened_email", user_id=user_id))
    assert track["anonymousId"] == EMAIL
    assert "userId" not in track


def test_user_id_without_email() -> None:
    mapping = map_webhook(webhook("subscriber.created", email=None))
    for message in mapping.messages:
        assert message["userId"] == "u-1001"
        assert "anonymousId" not in message
        assert "traits" not in message["context"]
    assert "email" not in mapping.messages[0]["traits"]


def test_numeric_ids_become_strings() -> None:
    payload = webhook("subscriber.opened_email", user_id=None)
    payload["data"]["subscriber"]["user_id"] = 1001
    payload["data"]["account_id"] = 9999999
    track = _track(payload)
    assert track["userId"] == "1001"
    assert track["properties"]["account_id"] == "9999999"


def test_missing_optional_parts() -> None:
    payload = webhook("subscriber.created")
    del payload["occurred_at"]
    del payload["data"]["properties"]
    del payload["data"]["account_id"]
    for message in map_webhook(payload).messages:
        assert "timestamp" not in message
    assert _track(payload)["properties"] == {}
    payload["data"]["properties"] = None
    payload["occurred_at"] = None
    assert _track(payload)["properties"] == {}


def test_retried_webhook_maps_to_the_same_message_ids() -> None:
    first = webhook("subscriber.applied_tag")
    retry = copy.deepcopy(first)
    # A retry may serialise its keys in another order; the content is what counts.
    retry["data"] = dict(reversed(list(retry["data"].items())))
    retry = dict(reversed(list(retry.items())))
    assert _ids(first) == _ids(retry)
    identify_id, track_id = _ids(first)
    assert identify_id.startswith("drip-") and identify_id.endswith("-i")
    assert track_id.startswith("drip-") and track_id.endswith("-t")
    assert identify_id[:-2] == track_id[:-2]


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.update(occurred_at="2024-05-14T09:31:59Z"),
        lambda p: p.update(event="subscriber.removed_tag"),
        lambda p: p["data"]["properties"].update(tag="Trial"),
        lambda p: p["data"]["subscriber"].update(email="other@acme.example"),
        lambda p: p["data"]["subscriber"]["tags"].append("VIP"),
        lambda p: p["data"].update(account_id="1234567"),
    ],
    ids=["occurred_at", "event", "property", "email", "subscriber-state", "account"],
)
def test_different_webhooks_get_different_message_ids(change: Any) -> None:
    original = webhook("subscriber.applied_tag")
    other = copy.deepcopy(original)
    change(other)
    assert set(_ids(original)).isdisjoint(_ids(other))


def test_all_documented_events_get_distinct_message_ids() -> None:
    ids = [mid for event in ALL_EVENTS for mid in _ids(webhook(event))]
    assert len(ids) == len(set(ids))


def test_huge_integer_does_not_break_message_ids() -> None:
    payload = webhook("subscriber.performed_custom_event", properties={"action": "Big", "n": 10**30})
    assert _ids(payload) == _ids(copy.deepcopy(payload))


@pytest.mark.parametrize("event", ["subscriber.something_new", "account.updated"])
def test_unknown_event_is_kept_as_drip_event(event: str) -> None:
    payload = webhook(event, properties={"foo": "bar", "count": 3})
    mapping = map_webhook(payload)
    assert mapping.known is False
    assert mapping.drip_event == event
    track = mapping.messages[-1]
    assert track["event"] == "Drip Event"
    assert track["properties"] == {"foo": "bar", "count": 3, "drip_event": event}
    assert track["userId"] == "u-1001"
    assert track["timestamp"] == OCCURRED_AT
    # The subscriber object is still the subscriber's state, so the profile is updated too.
    assert mapping.messages[0]["type"] == "identify"
    assert _ids(payload) == _ids(copy.deepcopy(payload))


def _with(change: Any) -> dict[str, Any]:
    payload = webhook("subscriber.opened_email")
    change(payload)
    return payload


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "JSON object"),
        ("subscriber.opened_email", "JSON object"),
        (None, "JSON object"),
        (42, "JSON object"),
        (_with(lambda p: p.pop("event")), "`event`"),
        (_with(lambda p: p.update(event=7)), "`event`"),
        (_with(lambda p: p.update(event=None)), "`event`"),
        (_with(lambda p: p.update(event="")), "`event`"),
        (_with(lambda p: p.pop("data")), "`data`"),
        (_with(lambda p: p.update(data=[])), "`data`"),
        (_with(lambda p: p.update(data="x")), "`data`"),
        (_with(lambda p: p["data"].pop("subscriber")), "`data.subscriber`"),
        (_with(lambda p: p["data"].update(subscriber=["jane"])), "`data.subscriber`"),
        (_with(lambda p: p["data"].update(subscriber={"id": "1"})), "`email`"),
        (_with(lambda p: p["data"]["subscriber"].update(email="", user_id=None)), "`user_id`"),
        (_with(lambda p: p["data"]["subscriber"].update(email="  ", user_id="")), "`email`"),
        (_with(lambda p: p["data"]["subscriber"].update(email=42)), "`data.subscriber.email`"),
        (_with(lambda p: p["data"]["subscriber"].update(user_id=["u"])), "`data.subscriber.user_id`"),
        (_with(lambda p: p.update(occurred_at=1715679118)), "`occurred_at`"),
        (_with(lambda p: p.update(occurred_at={"at": "now"})), "`occurred_at`"),
        (_with(lambda p: p["data"].update(properties=[])), "`data.properties`"),
        (_with(lambda p: p["data"].update(properties="url=x")), "`data.properties`"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(payload: Any, field: str) -> None:
    with pytest.raises(DripPayloadError) as caught:
        map_webhook(payload)
    assert isinstance(caught.value, ValueError)
    assert field in caught.value.reason
    assert str(caught.value) == caught.value.reason


def test_mapping_table_markdown() -> None:
    table = mapping_table_markdown()
    lines = table.strip().splitlines()
    assert lines[0] == "| Drip webhook event | Segment event | properties |"
    rows = {line.split(" | ")[0].strip("| `"): line for line in lines[2:]}
    assert set(EXPECTED_NAMES) <= set(rows)
    for event, name in EXPECTED_NAMES.items():
        if event != "subscriber.performed_custom_event":
            assert f"`{name}`" in rows[event]
    assert "`link_url`" in rows["subscriber.clicked_email"]
    assert "`context.ip`" in rows["subscriber.clicked_email"]
    assert "`url`" not in rows["subscriber.clicked_email"]
    assert "`tag`" in rows["subscriber.applied_tag"]
    assert "action" in rows["subscriber.performed_custom_event"]
    assert "identify" in rows["subscriber.created"]
    assert "identify" not in rows["subscriber.opened_email"]
    assert any("Drip Event" in line and "drip_event" in line for line in lines)


NOW = datetime(2024, 5, 20, 12, 0, tzinfo=UTC)


def test_demo_traffic_is_deterministic() -> None:
    first, again = generate(seed=11, now=NOW), generate(seed=11, now=NOW)
    assert first.webhooks == again.webhooks
    assert first.tracks == again.tracks
    assert first.summary() == again.summary()
    assert first.product == again.product
    other = generate(seed=12, now=NOW)
    assert other.webhooks != first.webhooks


def test_demo_traffic_shows_every_email_event_kind() -> None:
    traffic = generate(now=NOW)
    drip_events = {w["event"] for w in traffic.webhooks}
    assert set(EXPECTED_EMAIL_NAMES) <= drip_events
    assert {"subscriber.created", "subscriber.applied_tag"} <= drip_events
    assert set(EXPECTED_EMAIL_NAMES.values()) <= {t["event"] for t in traffic.tracks}
    summary = traffic.summary()
    assert summary["Subscriber Created"] == 60
    assert summary[DUPLICATES_KEY] >= 1
    assert sum(summary.values()) == len(traffic.webhooks) + len(traffic.tracks) + len(traffic.product)
    assert summary["Order Completed"] >= 1 and summary["Signed Up"] >= 1  # attribution has something to show


def test_demo_webhooks_are_realistic() -> None:
    traffic = generate(now=NOW)
    window = (NOW - timedelta(days=4), NOW)
    seen: dict[str, list[str]] = {}
    opened: set[str] = set()
    previous = None
    for envelope in traffic.webhooks:
        ids = _ids(envelope)  # every envelope maps without error
        if ids[-1] in seen:
            assert seen[ids[-1]] == ids  # a retry maps to exactly the same messages
            continue
        seen[ids[-1]] = ids
        at = datetime.fromisoformat(envelope["occurred_at"])
        assert window[0] <= at <= window[1]
        assert previous is None or at >= previous  # first deliveries arrive in time order
        previous = at
        props, sub = envelope["data"]["properties"], envelope["data"]["subscriber"]
        assert isinstance(sub["id"], str) and isinstance(envelope["data"]["account_id"], str)
        if envelope["event"] == "subscriber.opened_email":
            opened.add(props["delivery_id"])
        if envelope["event"] == "subscriber.clicked_email":
            assert props["delivery_id"] in opened  # clicks only after an open
    duplicates = len(traffic.webhooks) - len(seen)
    assert duplicates == traffic.summary()[DUPLICATES_KEY]
    assert 0.01 <= duplicates / len(traffic.webhooks) <= 0.06
    created = [w["data"]["subscriber"] for w in traffic.webhooks if w["event"] == "subscriber.created"]
    assert any(s["user_id"] for s in created) and any(s["user_id"] is None for s in created)
    delivered = sum(w["event"] == "subscriber.received_email" for w in traffic.webhooks)
    opens = sum(w["event"] == "subscriber.opened_email" for w in traffic.webhooks)
    assert 0.25 <= opens / delivered <= 0.55


def test_demo_tracks_have_segment_email_shape() -> None:
    traffic = generate(now=NOW)
    message_ids = [t["messageId"] for t in traffic.tracks]
    assert len(message_ids) == len(set(message_ids))
    for track in traffic.tracks:
        assert track["type"] == "track"
        assert ("userId" in track) != ("anonymousId" in track)
        email = track["context"]["traits"]["email"]
        assert track.get("anonymousId", email) == email
        assert NOW - timedelta(days=4) <= datetime.fromisoformat(track["timestamp"]) <= NOW
        props = track["properties"]
        assert {"campaign_id", "campaign_name"} <= set(props)
        if track["event"] != "Email Unsubscribed":
            assert {"email_id", "email_subject"} <= set(props)
        assert ("link_url" in props) == (track["event"] == "Email Link Clicked")
    # The Segment-integration half uses its own campaigns, not the webhook ones.
    webhook_campaigns = {
        w["data"]["properties"]["campaign_id"]
        for w in traffic.webhooks
        if w["event"] == "subscriber.unsubscribed_from_campaign"
    }
    assert webhook_campaigns.isdisjoint({t["properties"]["campaign_id"] for t in traffic.tracks})
