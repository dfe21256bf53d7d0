"""Catalog records: what a source and a destination are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SOURCE_TYPES = ("http", "drip")


@dataclass(frozen=True)
class Source:
    id: int
    type: str
    name: str
    schema: str
    write_key: str
    webhook_token: str | None
    created_at: str
    # Browser origins (`https://shop.example.com`) that may send this source events; empty: any origin.
    allowed_origins: tuple[str, ...] = ()
    # False: context.ip is never stored for this source, neither filled from the request nor as sent.
    store_ips: bool = True
    # Segment's Webhooks destination posts to /webhooks/segment/<segment_token>, signed with segment_secret.
    segment_token: str | None = None
    segment_secret: str | None = None

    def webhook_url(self, base_url: str) -> str | None:
        if self.webhook_token is None:
            return None
        return f"{base_url}/webhooks/drip/{self.webhook_token}"

    def segment_webhook_url(self, base_url: str) -> str | None:
        if self.segment_token is None:
            return None
        return f"{base_url}/webhooks/segment/{self.segment_token}"

    def public(self, base_url: str) -> dict[str, Any]:
        """The object `sources create --json` prints (DESIGN contract)."""
        return {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "schema": self.schema,
            "write_key": self.write_key,
            "webhook_url": self.webhook_url(base_url),
            "allowed_origins": list(self.allowed_origins),
            "store_ips": self.store_ips,
            "segment_webhook_url": self.segment_webhook_url(base_url),
            "segment_shared_secret": self.segment_secret,
        }


@dataclass(frozen=True)
class Destination:
    id: int
    source_id: int
    type: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    created_at: str = ""

    @property
    def consumer(self) -> str:
        """Name of this destination's cursor over the log."""
        return f"dest-{self.id}"
