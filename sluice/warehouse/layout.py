"""What one message shape contributes to each table it feeds: which leaf goes to which column, and
which leaves cannot be stored (and why). Pure structure, no values: the same for every message of
the shape, so it is worked out once per shape (from its first message) and cached by the shape's
digest. Nothing here depends on a source, a batch or a warehouse's state.

The rules (docs/warehouse-schema.md):
- leaves are the values that are not non-empty objects, walked in the message's key order:
  properties (or traits) first, then context; null values and empty objects are no value at all;
- each leaf's column is `column_name(path)`; a leaf whose name has no letter or digit, or that names
  a standard or load-time column, is discarded (a standard column's own value repeated is no loss);
- leaves that share a column name: the first one with a value wins, every later one with a value
  is discarded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sluice.ingest.shape import PAYLOAD_KEY
from sluice.warehouse.naming import column_name, json_pointer
from sluice.warehouse.tables import Feed, TableKind, feed_for

Path = tuple[str, ...]


@dataclass(frozen=True)
class Leaf:
    pointer: str  # RFC 6901 pointer into the canonical message
    path: Path  # the names that make the column: ("address", "street"), ("context", "ip")
    payload: bool  # from properties/traits (True) or context (False)


@dataclass(frozen=True)
class Rule:
    """A leaf that never becomes a column value; when it has a value, the value goes to discards."""

    pointer: str
    label: str  # discards.column_name: the column it would take, or its pointer when it has no name
    reason: str
    same_as: str | None = None  # a standard column's pointer: an equal value is no loss
    payload: bool = True


@dataclass(frozen=True)
class Layout:
    """One shape's contribution to one table."""

    columns: dict[str, tuple[str, ...]]  # column -> its leaves' pointers, in message order
    rules: tuple[Rule, ...]  # unnamed leaves and standard-column collisions
    leaves: tuple[tuple[Leaf, str], ...]  # every leaf with its discards label, in message order

    def losers(self) -> Iterator[tuple[str, str, tuple[str, ...]]]:
        """(column, pointer, earlier pointers): a leaf discarded when it and an earlier one have values."""
        for col, pointers in self.columns.items():
            for i in range(1, len(pointers)):
                yield col, pointers[i], pointers[:i]


@dataclass(frozen=True)
class ShapeInfo:
    feed: Feed
    leaves: tuple[Leaf, ...]
    layouts: dict[str, Layout]  # table -> layout

    @property
    def width(self) -> int:
        return len(self.leaves)


def _leaves(obj: dict[str, Any], prefix: Path, base: str, payload: bool) -> Iterator[Leaf]:
    for key, value in obj.items():
        path = (*prefix, key)
        if type(value) is dict:
            if value:  # an empty object is no value: no column, nothing to discard
                yield from _leaves(value, path, base, payload)
            continue
        yield Leaf(base + json_pointer(path), path, payload)


def leaves_of(msg: dict[str, Any]) -> tuple[Leaf, ...]:
    """Every leaf of a canonical message, payload first, then context, each in key order."""
    out: list[Leaf] = []
    key = PAYLOAD_KEY.get(msg["type"])
    payload = msg.get(key) if key else None
    if isinstance(payload, dict):
        out.extend(_leaves(payload, (), "/" + key, True))  # type: ignore[operator]
    context = msg.get("context")
    if isinstance(context, dict):
        out.extend(
            Leaf(leaf.pointer, ("context", *leaf.path), False) for leaf in _leaves(context, (), "/context", False)
        )
    return tuple(out)


def layout(kind: TableKind, leaves: tuple[Leaf, ...], max_identifier_bytes: int) -> Layout:
    reserved = kind.reserved
    std_pointer = {s.name: s.pointer for s in kind.standard}
    columns: dict[str, list[str]] = {}
    rules: list[Rule] = []
    labelled: list[tuple[Leaf, str]] = []
    for leaf in leaves:
        if (leaf.payload and kind.payload is None) or (not leaf.payload and not kind.context):
            continue
        name = column_name(leaf.path, max_identifier_bytes)
        if name is None:
            rules.append(Rule(leaf.pointer, leaf.pointer, f"{leaf.pointer} has no letters or digits to name a column",
                              payload=leaf.payload))
            labelled.append((leaf, leaf.pointer))
            continue
        labelled.append((leaf, name))
        if name in reserved:
            rules.append(Rule(leaf.pointer, name, f"{leaf.pointer} collides with the standard column {name}",
                              std_pointer.get(name), leaf.payload))
            continue
        columns.setdefault(name, []).append(leaf.pointer)
    return Layout({c: tuple(p) for c, p in columns.items()}, tuple(rules), tuple(labelled))


def analyse(msg: dict[str, Any], max_identifier_bytes: int) -> ShapeInfo:
    """The shape of a parsed canonical message (any message of the shape gives the same result)."""
    feed = feed_for(msg["type"], msg.get("event"), max_identifier_bytes)
    leaves = leaves_of(msg)
    return ShapeInfo(feed, leaves, {name: layout(kind, leaves, max_identifier_bytes) for name, kind in feed.tables})


def loser_reason(pointer: str, column: str) -> str:
    return f"{pointer} has the same column name {column} as an earlier key of the message"
