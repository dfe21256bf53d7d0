"""A slow, obviously-correct reference of the warehouse mapping, written in plain Python from
../shared/reference/segment-warehouse.md and docs/warehouse-schema.md, one message at a time.

It shares nothing with sluice/warehouse/plan.py, layout.py or flatten.py. It uses sluice's naming
functions (go-snakecase and the reserved-word rules, tested on their own against Segment's vectors
in test_naming.py) and DuckDB for one primitive only: the text of a JSON number or array as DuckDB
renders it (`json_extract_string`), which the docs define a varchar's value to be.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import duckdb
import orjson

from sluice.warehouse.naming import column_name, json_pointer, table_name

STANDARD_TABLES = {"tracks", "identifies", "users", "pages", "screens", "groups", "aliases", "discards"}
LOAD_TIME = ("loaded_at", "uuid_ts")
COMMON = [("id", "messageId", "varchar"), ("anonymous_id", "anonymousId", "varchar"),
          ("user_id", "userId", "varchar"), ("received_at", "receivedAt", "timestamp"),
          ("sent_at", "sentAt", "timestamp"), ("timestamp", "timestamp", "timestamp"),
          ("original_timestamp", "originalTimestamp", "timestamp")]
TRACK_STD = [*COMMON, ("event", None, "varchar"), ("event_text", "event", "varchar")]
PAGE_STD = [*COMMON, ("name", "name", "varchar"), ("category", "category", "varchar")]
# table kind -> (standard columns (name, message key, type), takes context, payload key)
KINDS: dict[str, tuple[list[tuple[str, str | None, str]], bool, str | None]] = {
    "tracks": (TRACK_STD, True, None),
    "event": (TRACK_STD, True, "properties"),
    "identifies": (COMMON, True, "traits"),
    "users": ([("id", "userId", "varchar"), ("received_at", "receivedAt", "timestamp")], False, "traits"),
    "pages": (PAGE_STD, True, "properties"),
    "screens": (PAGE_STD, True, "properties"),
    "groups": ([*COMMON, ("group_id", "groupId", "varchar")], True, "traits"),
    "aliases": ([*COMMON, ("previous_id", "previousId", "varchar")], True, None),
}

# The grammars of docs/warehouse-schema.md#types, written out again here.
DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
DATE = r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
TIME = r"([0-9]{2}):([0-9]{2})(:([0-9]{2})(\.([0-9]{1,9}))?)?"
OFFSET = r"(Z|z|([+-])([0-9]{2})(:?([0-9]{2}))?)"
TS_VALUE = re.compile(f"{DATE}([T ]{TIME}{OFFSET}?)?")
TS_FIRST = re.compile(f"{DATE}[T ]{TIME}{OFFSET}?")
TRUE, FALSE = {"true", "t", "yes", "y", "1"}, {"false", "f", "no", "n", "0"}

_duck = duckdb.connect()


def text_of(value: Any) -> str:
    """A value as text, the way a varchar column stores it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(_duck.execute("SELECT json_extract_string(?, '$')", [orjson.dumps(value).decode()]).fetchone()[0])


def first_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if value <= 2**63 - 1 else "float"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str) and TS_FIRST.fullmatch(value):
        return "timestamp"  # it looks like one: the column is made (the value itself may still not fit)
    return "varchar"


def parse_timestamp(text: str) -> datetime | None:
    m = TS_VALUE.fullmatch(text)
    if not m:
        return None
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    hour = minute = second = micro = 0
    if m.group(4):
        hour, minute = int(m.group(5)), int(m.group(6))
        if m.group(8):
            second = int(m.group(8))
        if m.group(10):
            micro = int((m.group(10) + "000000")[:6])  # truncated to microseconds
    if not (year >= 1 and 1 <= month <= 12 and hour <= 23 and minute <= 59 and second <= 59):
        return None
    try:
        dt = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        return None
    if m.group(11) and m.group(11) not in ("Z", "z"):
        oh, om = int(m.group(13)), int(m.group(15) or 0)
        if oh > 23 or om > 59:
            return None
        delta = timedelta(hours=oh, minutes=om)
        dt = dt - delta if m.group(12) == "+" else dt + delta
    return dt


def cast(value: Any, type_: str) -> Any:
    """The value stored in a column of `type_`, or None when it does not fit."""
    text = text_of(value)
    if type_ == "varchar":
        return text
    if type_ == "boolean":
        low = text.lower()
        return True if low in TRUE else False if low in FALSE else None
    if type_ == "timestamp":
        return parse_timestamp(text)
    if not DECIMAL.fullmatch(text):
        return None
    f = float(text)
    if not math.isfinite(f):
        return None
    if type_ == "float":
        return f
    if not f.is_integer():
        return None
    n = int(Decimal(text).to_integral_value(ROUND_HALF_UP))
    return n if -(2**63) <= n <= 2**63 - 1 and float(n) == f else None


def std_value(msg: dict[str, Any], key: str | None, type_: str, event_table: str | None) -> Any:
    if key is None:
        return event_table
    v = msg.get(key)
    if v is None:
        return None
    return datetime.fromisoformat(v).astimezone(UTC) if type_ == "timestamp" else str(v)


def leaves(msg: dict[str, Any], kind: str) -> list[tuple[tuple[str, ...], str, Any, bool]]:
    """(naming path, pointer, value, from payload) for every value of the message this table takes."""
    _, context, payload = KINDS[kind]
    out = []

    def walk(obj: dict[str, Any], path: tuple[str, ...], base: str, naming: tuple[str, ...], is_payload: bool) -> None:
        for k, v in obj.items():
            if isinstance(v, dict):
                walk(v, (*path, k), base, naming, is_payload)
            elif v is not None:
                out.append(((*naming, *path, k), base + json_pointer((*path, k)), v, is_payload))

    if payload and isinstance(msg.get(payload), dict):
        walk(msg[payload], (), "/" + payload, (), True)
    if context and isinstance(msg.get("context"), dict):
        walk(msg["context"], (), "/context", ("context",), False)
    return out


@dataclass
class Table:
    kind: str
    columns: dict[str, str]  # in table order
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Schema:
    tables: dict[str, Table] = field(default_factory=dict)
    discards: list[tuple[Any, ...]] = field(default_factory=list)
    high_seq: int = 0


class ReferenceWarehouse:
    def __init__(self, max_identifier_bytes: int, max_columns: int, max_event_tables: int) -> None:
        self.max_ident = max_identifier_bytes
        self.max_columns = max_columns
        self.max_event_tables = max_event_tables
        self.schemas: dict[str, Schema] = {}

    def _tables_of(self, msg: dict[str, Any]) -> list[tuple[str, str]]:
        t = msg["type"]
        if t == "track":
            return [("tracks", "tracks"), (table_name(msg["event"], self.max_ident), "event")]
        if t == "identify":
            return [("identifies", "identifies"), ("users", "users")]
        return [({"page": "pages", "screen": "screens", "group": "groups", "alias": "aliases"}[t],) * 2]

    def _contribution(self, msg: dict[str, Any], kind: str, table: str) -> tuple[dict[str, tuple[Any, int]], list]:
        """Winning value per column (with its place in the message) and what is discarded, for one message."""
        std = {name: key for name, key, _ in KINDS[kind][0]}
        reserved = set(std) | set(LOAD_TIME)
        winners: dict[str, tuple[Any, int]] = {}
        discards = []
        for i, (path, pointer, value, _) in enumerate(leaves(msg, kind)):
            name = column_name(path, self.max_ident)
            if name is None:
                discards.append((pointer, value, f"{pointer} has no letters or digits to name a column"))
            elif name in reserved:
                key = std.get(name)
                if key is not None and msg.get(key) is not None and text_of(msg[key]) == text_of(value):
                    continue  # the standard column holds the same value: nothing is lost
                discards.append((name, value, f"{pointer} collides with the standard column {name}"))
            elif name in winners:
                reason = f"{pointer} has the same column name {name} as an earlier key of the message"
                discards.append((name, value, reason))
            else:
                winners[name] = (value, i)
        return winners, discards

    def skip(self, schema: str, seq: int) -> None:
        """Dead-lettered entries: not loaded, but the cursor has moved past them."""
        sch = self.schemas.setdefault(schema, Schema())
        sch.high_seq = max(sch.high_seq, seq)

    def load(self, schema: str, batch: list[tuple[int, dict[str, Any]]], replay: bool = False) -> None:
        """`batch`: (seq, canonical message) in seq order."""
        sch = self.schemas.setdefault(schema, Schema())
        dedupe = replay or batch[0][0] <= sch.high_seq
        # Which event tables the schema takes: new ones in the order their first message arrives.
        event_tables = sum(1 for t in sch.tables if t not in STANDARD_TABLES)
        refused: set[str] = set()
        admitted: list[str] = []
        for _, msg in batch:
            for table, kind in self._tables_of(msg):
                if kind == "event" and table not in sch.tables and table not in admitted and table not in refused:
                    if event_tables >= self.max_event_tables:
                        refused.add(table)
                    else:
                        admitted.append(table)
                        event_tables += 1
        # Every message's contribution to every table.
        contrib = []
        for seq, msg in batch:
            for table, kind in self._tables_of(msg):
                if kind == "users" and msg.get("userId") is None:
                    continue
                winners, discards = self._contribution(msg, kind, table)
                contrib.append((seq, msg, table, kind, winners, discards))
        # New columns: first filled first (by message, then place in it), up to the cap.
        firsts: dict[str, dict[str, tuple[int, int, Any]]] = {}
        for seq, _, table, _, winners, _ in contrib:
            if table in refused:
                continue
            known = sch.tables[table].columns if table in sch.tables else {}
            for col, (value, pos) in winners.items():
                if col not in known and col not in firsts.setdefault(table, {}):
                    firsts[table][col] = (seq, pos, value)
        tables_before = set(sch.tables)
        for _, _, table, kind, _, _ in contrib:
            if table in refused or table in sch.tables:
                continue
            cols = {name: t for name, _, t in KINDS[kind][0]}
            sch.tables[table] = Table(kind, cols)
        for table, cands in firsts.items():
            t = sch.tables[table]
            new = table not in tables_before
            cols = {**t.columns}
            used = len(cols) + (len(LOAD_TIME) if new else 0)
            for col, (_, _, value) in sorted(cands.items(), key=lambda c: (c[1][0], c[1][1], c[0])):
                if used >= self.max_columns:
                    break
                cols[col] = first_type(value)
                used += 1
            t.columns = cols
        for table in set(sch.tables) - tables_before:  # a new table: its load-time columns come last
            sch.tables[table].columns.update(dict.fromkeys(LOAD_TIME, "timestamp"))
        # Rows and discards; sent-again rows and discards are compared with what was there before the batch.
        rows_before = {name: list(t.rows) for name, t in sch.tables.items()}
        discards_before = list(sch.discards)
        new_discards = []
        users: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for seq, msg, table, kind, winners, discards in contrib:
            received = std_value(msg, "receivedAt", "timestamp", None)
            if table in refused:
                for path, pointer, value, payload in leaves(msg, kind):
                    if payload:
                        label = column_name(path, self.max_ident) or pointer
                        reason = (f"the schema has reached the limit of {self.max_event_tables} event tables,"
                                  f" so {table} was not created")
                        new_discards.append((table, label, msg["messageId"], text_of(value), reason, received))
                continue
            t = sch.tables[table]
            row = {name: std_value(msg, key, typ, table if kind == "event" else None)
                   for name, key, typ in KINDS[kind][0]}
            if kind == "tracks":
                row["event"] = table_name(msg["event"], self.max_ident)
            for col, (value, _) in winners.items():
                if col not in t.columns or col in LOAD_TIME:
                    if kind != "users":
                        new_discards.append((table, col, msg["messageId"], text_of(value),
                                             f"{table} has reached the column limit of {self.max_columns}", received))
                    continue
                stored = cast(value, t.columns[col])
                row[col] = stored
                if stored is None and kind != "users":
                    new_discards.append((table, col, msg["messageId"], text_of(value),
                                         f"cannot be stored in the {t.columns[col]} column {col}", received))
            if kind != "users":
                for label, value, reason in discards:
                    new_discards.append((table, label, msg["messageId"], text_of(value), reason, received))
            if kind == "users":
                users.setdefault(msg["userId"], []).append((seq, row))
                continue
            before = rows_before.get(table, [])
            if dedupe and any(r["id"] == row["id"] and r["received_at"] == row["received_at"] for r in before):
                continue
            t.rows.append(row)
        for uid, rows in users.items():
            t = sch.tables["users"]
            latest: dict[str, Any] = {"id": uid}
            for col in t.columns:
                if col == "id":
                    continue
                values = [r.get(col) for _, r in sorted(rows, key=lambda x: x[0]) if r.get(col) is not None]
                latest[col] = values[-1] if values else None
            existing = next((r for r in t.rows if r["id"] == uid), None)
            if existing is None:
                t.rows.append(latest)
            elif latest["received_at"] >= existing["received_at"]:
                for col, v in latest.items():
                    if v is not None:
                        existing[col] = v
        for d in new_discards:
            if dedupe and any(o[2] == d[2] and o[0] == d[0] and o[1] == d[1] for o in discards_before):
                continue
            sch.discards.append(d)
        if not replay:
            sch.high_seq = max(sch.high_seq, batch[-1][0])
