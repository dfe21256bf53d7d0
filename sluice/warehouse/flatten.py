"""The general path: one message's values per table, worked out in Python.

The loader extracts most messages with DuckDB's vectorised JSON functions (plan.py). That costs each
row one lookup per column path, and a lookup walks its object's keys, so a message with thousands of
keys would cost millions of comparisons; and one SQL branch per shape makes a batch of thousands of
distinct shapes slow to plan and run. Those messages come here instead: parsed once, walked once,
linear in their size. Values leave as JSON text (`orjson.dumps`), and the plan turns them into text
with the same DuckDB function that extracts the others, so both paths store identical values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sluice.ingest.shape import PAYLOAD_KEY
from sluice.warehouse.layout import Layout, ShapeInfo, loser_reason


@dataclass
class TableValues:
    """One message's contribution to one table: winning value per column, and what is discarded."""

    winners: dict[str, Any] = field(default_factory=dict)  # column -> value (never None)
    sources: dict[str, str] = field(default_factory=dict)  # column -> the pointer of the winning leaf
    # (column label, pointer, value, reason, value of the standard column it repeats, if any)
    discards: list[tuple[str, str, Any, str, Any]] = field(default_factory=list)


def leaf_values(msg: dict[str, Any], shape: ShapeInfo) -> dict[str, Any]:
    """pointer -> value for every leaf of the shape (None where the message has null)."""
    key = PAYLOAD_KEY.get(msg["type"])
    payload = msg.get(key) if key else None
    out: dict[str, Any] = {}
    for leaf in shape.leaves:
        node: Any = payload if leaf.payload else msg
        for part in leaf.path:
            node = node[part]
        out[leaf.pointer] = node
    return out


def standard_value(msg: dict[str, Any], pointer: str) -> Any:
    return msg.get(pointer[1:])  # standard pointers are top-level keys (/messageId, /name, ...)


def table_values(msg: dict[str, Any], values: dict[str, Any], lay: Layout) -> TableValues:
    out = TableValues()
    for col, pointers in lay.columns.items():
        winner = None
        for pointer in pointers:
            value = values[pointer]
            if value is None:
                continue
            if winner is None:
                winner = pointer
                out.winners[col] = value
                out.sources[col] = pointer
            else:
                out.discards.append((col, pointer, value, loser_reason(pointer, col), None))
    for rule in lay.rules:
        value = values[rule.pointer]
        if value is not None:
            same = standard_value(msg, rule.same_as) if rule.same_as else None
            out.discards.append((rule.label, rule.pointer, value, rule.reason, same))
    return out
