"""Deliveries: which cursor a destination name means, dead letters, re-drives and replays by time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from sluice.catalog.models import Source
from sluice.catalog.store import Catalog, CatalogError
from sluice.delivery.state import DeliveryState
from sluice.destinations.warehouse import warehouse_consumer
from sluice.log.base import Log
from sluice.services.sources import DeliveryWrite


@dataclass(frozen=True)
class Ref:
    """A destination as a user names it: a catalog destination, or a source's embedded warehouse."""

    source: Source
    consumer: str
    label: str
    transactional: bool
    dest_id: int | None = None


def resolve(cat: Catalog, ref: str, source_ref: str | None) -> Ref:
    """Raises CatalogError when there is no such destination."""
    if ref == "warehouse":
        sources = cat.list_sources()
        if source_ref:
            source = cat.get_source(source_ref)
        elif len(sources) == 1:
            source = sources[0]
        else:
            raise CatalogError("several sources load the warehouse: say which with --source")
        return Ref(source, warehouse_consumer(source), "warehouse", True)
    dest = cat.get_destination(ref)
    return Ref(cat.get_source(str(dest.source_id)), dest.consumer, dest.name, dest.type == "postgres", dest.id)


def ms_iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else None


def parse_when(text: str) -> datetime:
    """ISO-8601 (UTC when it has no offset), or a duration ago: 30m, 2h, 7d. ValueError otherwise."""
    m = re.fullmatch(r"(\d+)\s*([smhd])", text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(m.group(1))})
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither ISO-8601 nor a duration like 2h or 7d") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def dead_letters(state: DeliveryState, consumer: str, limit: int) -> list[dict[str, Any]]:
    """The events a destination refused for good, with the reason, newest first as the state keeps them."""
    return describe_dead_letters(state.dead_letters(consumer, limit))


def describe_dead_letters(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dead letters as the delivery state keeps them (either backend) -> what a user reads: the message's id,
    type and event instead of its body, times as ISO-8601."""
    for item in items:
        message = orjson.loads(item.pop("body"))
        item["message_id"] = message.get("messageId")
        item["type"] = message.get("type")
        item["event"] = message.get("event")
        item["failed_at"] = ms_iso(item["failed_at"])
        item["received_at"] = ms_iso(item["received_at"])
    return items


def retry(write: DeliveryWrite, consumer: str, ids: list[int] | None) -> int:
    """Re-drive dead letters (None: all of them); the destination's worker sends them again. How many."""
    return int(write("request_retry", consumer=consumer, ids=ids))


def replay(log: Log, write: DeliveryWrite, ref: Ref, start: datetime, end: datetime) -> int:
    """Send `ref` again every event of its source received in [start, end]; how many (0: nothing to do)."""
    if end <= start:
        raise ValueError("the end of the range must be after its start")
    after = log.seq_before(ref.source.id, int(start.timestamp() * 1000))
    last = log.last_seq(ref.source.id, int(end.timestamp() * 1000))
    count = log.depth(ref.source.id, after) - log.depth(ref.source.id, last)
    if count > 0:
        write("add_replay", consumer=ref.consumer, after_seq=after, end_seq=last)
    return max(count, 0)


def resolve_consumer(cat: Catalog, consumer: str) -> Ref:
    """The destination a cursor name (`dest-3`, `warehouse-1`, as status rows carry) belongs to."""
    kind, _, number = consumer.rpartition("-")
    if not number.isdigit() or kind not in ("dest", "warehouse"):
        raise CatalogError(f"no destination {consumer!r}")
    if kind == "warehouse":
        return resolve(cat, "warehouse", number)
    return resolve(cat, number, None)
