"""Segment's `integrations` object decides which destinations get a message."""

import orjson

from sluice.delivery.routing import wanted


def body(integrations: object = None) -> bytes:
    msg = {"type": "track", "event": "E", "userId": "u"}
    if integrations is not None:
        msg["integrations"] = integrations
    return orjson.dumps(msg)


def test_no_integrations_goes_everywhere() -> None:
    assert wanted(body(), ("hook", "Webhook"))


def test_all_false_with_named_destination_on() -> None:
    b = body({"All": False, "Webhook": True})
    assert wanted(b, ("my-hook", "Webhook", "Webhooks"))
    assert not wanted(b, ("drip-prod", "Drip"))


def test_destination_name_turns_one_off() -> None:
    b = body({"my-hook": False})
    assert not wanted(b, ("my-hook", "Webhook"))
    assert wanted(b, ("other-hook", "Webhook"))


def test_names_are_case_sensitive_like_segment() -> None:
    assert wanted(body({"All": False, "webhook": True}), ("hook", "Webhook")) is False


def test_object_settings_count_as_on() -> None:
    assert wanted(body({"All": False, "Drip": {"some": "option"}}), ("d", "Drip"))
