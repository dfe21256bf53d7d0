"""Destination types: how each is configured and built into a delivery target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sluice.catalog.models import Destination
from sluice.delivery.routing import TYPE_NAMES
from sluice.destinations.base import Target
from sluice.settings import Settings

DESTINATION_TYPES = ("postgres", "webhook", "drip")


def validate(type_: str, config: dict[str, Any]) -> dict[str, Any]:
    """A destination's config, checked; ValueError with a message for the user otherwise."""
    if type_ == "webhook":
        from sluice.destinations.webhook import validate_config

        return validate_config(config)
    if type_ == "drip":
        from sluice.destinations.drip import validate_config as drip_config

        return drip_config(config)
    if type_ == "postgres":
        url = config.get("url")
        if not isinstance(url, str) or not url.startswith(("postgres://", "postgresql://")):
            raise ValueError("a postgres destination needs --url postgresql://user@host:port/database")
        return {"url": url}
    raise ValueError(f"unknown destination type {type_!r}: use one of {', '.join(DESTINATION_TYPES)}")


def build(destination: Destination, settings: Settings) -> Target:
    if destination.type == "webhook":
        from sluice.destinations.webhook import WebhookTarget

        return WebhookTarget(destination, settings.delivery_timeout_seconds)
    if destination.type == "drip":
        from sluice.destinations.drip import DripTarget

        return DripTarget(destination, settings.delivery_timeout_seconds)
    if destination.type == "postgres":
        from sluice.destinations.warehouse import WarehouseTarget
        from sluice.warehouse.loader import Caps

        return WarehouseTarget.postgres(destination, Caps.from_settings(settings))
    raise ValueError(f"unknown destination type {destination.type!r}")


def names(destination: Destination) -> tuple[str, ...]:
    """How a message's `integrations` object may refer to this destination."""
    return (destination.name, *TYPE_NAMES.get(destination.type, ()))


Factory = Callable[[], Target]
