"""Segment's `integrations` object: which destinations a message may go to."""

from __future__ import annotations

from typing import Any

import orjson

# The names a sender may use for each destination type, besides the destination's own name.
TYPE_NAMES = {
    "webhook": ("Webhook", "Webhooks"),
    "drip": ("Drip",),
    "postgres": ("Postgres", "PostgreSQL"),
}


def wanted(body: bytes, names: tuple[str, ...]) -> bool:
    """True if the message's integrations allow a destination known by any of `names`."""
    if b'"integrations"' not in body:  # most messages: no parse needed
        return True
    integrations: Any = orjson.loads(body).get("integrations")
    if not isinstance(integrations, dict):
        return True
    for name in names:  # Segment's names are case-sensitive
        if name in integrations:
            return integrations[name] is not False
    return integrations.get("All", True) is not False
