"""The one mapping layer: a batch of canonical messages -> Segment's tables, columns and SQL.

The plan is engine-neutral. Its SQL runs in DuckDB over a staging relation `staging(seq, shape,
body)` holding the batch's canonical JSON, so values are parsed and cast by DuckDB's vectorised
JSON reader instead of row by row in Python. The DuckDB warehouse inserts the results directly;
other engines (PostgreSQL) receive the same results as Arrow and copy them in.

Schema discovery is per *shape* (a hash of a message's key structure computed at ingest): only
the first message of a shape not seen before is parsed in Python, to learn its leaf paths.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson

from sluice.log.base import Entry
from sluice.warehouse.naming import column_name, json_pointer, sql_string, table_name
from sluice.warehouse.types import ColType, cast_sql, infer

Path = tuple[str, ...]


@dataclass(frozen=True)
class Dialect:
    """What differs between engines as far as naming goes."""

    name: str
    max_identifier_bytes: int
    max_columns: int


@dataclass(frozen=True)
class Std:
    """A standard column: fixed name, fixed source (a JSON pointer or a constant), fixed type."""

    name: str
    pointer: str | None
    type: ColType
    const: str | None = None


_TS = ColType.TIMESTAMP
_COMMON = (
    Std("id", "/messageId", ColType.VARCHAR),
    Std("anonymous_id", "/anonymousId", ColType.VARCHAR),
    Std("user_id", "/userId", ColType.VARCHAR),
    Std("received_at", "/receivedAt", _TS),
    Std("sent_at", "/sentAt", _TS),
    Std("timestamp", "/timestamp", _TS),
    Std("original_timestamp", "/originalTimestamp", _TS),
)
LOADED_AT = "loaded_at"
DISCARDS = "discards"
DISCARD_COLUMNS = (
    ("table_name", ColType.VARCHAR),
    ("column_name", ColType.VARCHAR),
    ("row_id", ColType.VARCHAR),
    ("value", ColType.VARCHAR),
    ("reason", ColType.VARCHAR),
    ("received_at", _TS),
    (LOADED_AT, _TS),
)


@dataclass(frozen=True)
class TableKind:
    """How one kind of table is fed: its standard columns, and which parts of a message flatten in."""

    standard: tuple[Std, ...]
    context: bool
    payload: str | None  # "properties" / "traits" / None
    upsert: bool = False  # users: one row per id, latest non-null values


def _event_kind(event_table: str) -> TableKind:
    std = (
        *_COMMON,
        Std("event", None, ColType.VARCHAR, const=event_table),
        Std("event_text", "/event", ColType.VARCHAR),
    )
    return TableKind(std, context=True, payload="properties")


_TRACKS_STD = (*_COMMON, Std("event", None, ColType.VARCHAR), Std("event_text", "/event", ColType.VARCHAR))
_PAGE_STD = (*_COMMON, Std("name", "/name", ColType.VARCHAR), Std("category", "/category", ColType.VARCHAR))
KINDS: dict[str, TableKind] = {
    "identifies": TableKind(_COMMON, context=True, payload="traits"),
    "users": TableKind(
        (Std("id", "/userId", ColType.VARCHAR), Std("received_at", "/receivedAt", _TS)),
        context=False,
        payload="traits",
        upsert=True,
    ),
    "pages": TableKind(_PAGE_STD, context=True, payload="properties"),
    "screens": TableKind(_PAGE_STD, context=True, payload="properties"),
    "groups": TableKind((*_COMMON, Std("group_id", "/groupId", ColType.VARCHAR)), context=True, payload="traits"),
    "aliases": TableKind((*_COMMON, Std("previous_id", "/previousId", ColType.VARCHAR)), context=True, payload=None),
}


@dataclass
class _Shape:
    """What one message shape contributes: its tables and the leaf paths of context and payload."""

    tables: list[tuple[str, TableKind]]
    context: list[tuple[Path, Sample]]
    payload: list[tuple[Path, Sample]]


@dataclass
class Column:
    name: str
    type: ColType | None  # None until inferred
    pointers: list[str]
    const: str | None = None
    standard: bool = False
    new: bool = False
    by_shape: dict[int, str] | None = None  # tracks.event: a constant per message shape
    sample: Sample = None  # the first non-null value seen in the first message of a shape


@dataclass
class TablePlan:
    name: str
    kind: TableKind
    shapes: list[int] = field(default_factory=list)
    columns: OrderedDict[str, Column] = field(default_factory=OrderedDict)
    # (pointer, column label, reason, pointer of a standard column whose equal value makes it no loss)
    discards: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    exists: bool = False
    # Shapes in which a payload/context pointer is a leaf. In another shape the same pointer may be
    # an object (flattened into other columns): its JSON text must not land in this column.
    leaf_shapes: dict[str, set[int]] = field(default_factory=dict)

    def raw(self, pointer: str, index: dict[str, int]) -> str:
        x = f"x[{index[pointer]}]"
        shapes = self.leaf_shapes.get(pointer)
        if shapes is None or len(shapes) == len(self.shapes):
            return x
        return f"CASE WHEN shape IN ({', '.join(map(str, sorted(shapes)))}) THEN {x} END"

    @property
    def new_columns(self) -> list[Column]:
        return [c for c in self.columns.values() if c.new]

    def pointers(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in self.columns.values():
            seen.update(dict.fromkeys(c.pointers))
        seen.update(dict.fromkeys(p for p, _, _, _ in self.discards))
        return list(seen)

    def _source(self) -> tuple[str, dict[str, int]]:
        pointers = self.pointers()
        index = {p: i + 1 for i, p in enumerate(pointers)}
        paths = "[" + ", ".join(sql_string(p) for p in pointers) + "]"
        shapes = ", ".join(str(s) for s in self.shapes)
        sub = f"SELECT seq, shape, json_extract_string(body, {paths}) AS x FROM staging WHERE shape IN ({shapes})"
        return sub, index

    def _expr(self, col: Column, index: dict[str, int]) -> str:
        if col.const is not None:
            return sql_string(col.const)
        if col.by_shape is not None:
            cases = " ".join(f"WHEN {shape} THEN {sql_string(v)}" for shape, v in col.by_shape.items())
            return f"CASE shape {cases} END"
        raw = _coalesce([self.raw(p, index) for p in col.pointers])
        assert col.type is not None
        return cast_sql(raw, col.type)

    def select_sql(self) -> str:
        """Rows for this table, one per message, columns in self.columns order."""
        sub, index = self._source()
        if self.kind.upsert:
            # One row per user: the latest non-null value of every column (Segment's users table).
            id_expr = self._expr(self.columns["id"], index)
            parts = [f"{id_expr} AS c0"]
            for i, col in enumerate(list(self.columns.values())[1:], start=1):
                e = self._expr(col, index)
                parts.append(f"arg_max({e}, seq) FILTER (WHERE {e} IS NOT NULL) AS c{i}")
            return f"SELECT {', '.join(parts)} FROM ({sub}) AS s WHERE {id_expr} IS NOT NULL GROUP BY 1"
        parts = [f"{self._expr(col, index)} AS c{i}" for i, col in enumerate(self.columns.values())]
        return f"SELECT {', '.join(parts)} FROM ({sub}) AS s"

    def discards_sql(self) -> str | None:
        """Values that could not be stored: (table_name, column_name, row_id, value, reason, received_at)."""
        if self.kind.upsert:
            return None  # the same values are recorded once, against identifies
        sub, index = self._source()
        id_x = f"x[{index['/messageId']}]"
        recv = f"TRY_CAST(x[{index['/receivedAt']}] AS TIMESTAMPTZ)"
        table = sql_string(self.name)
        selects = []
        for col in self.columns.values():
            if col.standard or col.type in (None, ColType.VARCHAR):
                continue
            for p in col.pointers:
                raw = self.raw(p, index)
                reason = sql_string(f"{p} cannot be stored in the {col.type} column {col.name}")
                selects.append(
                    f"SELECT {table} AS table_name, {sql_string(col.name)} AS column_name, {id_x} AS row_id,"
                    f" {raw} AS value, {reason} AS reason, {recv} AS received_at FROM s"
                    f" WHERE {raw} IS NOT NULL AND {cast_sql(raw, col.type)} IS NULL"
                )
        for pointer, label, reason, same_as in self.discards:
            raw = self.raw(pointer, index)
            # analytics.js repeats a page's name in properties.name: the same value is no loss.
            differs = f" AND {raw} IS DISTINCT FROM x[{index[same_as]}]" if same_as else ""
            selects.append(
                f"SELECT {table} AS table_name, {sql_string(label)} AS column_name, {id_x} AS row_id,"
                f" {raw} AS value, {sql_string(reason)} AS reason, {recv} AS received_at FROM s"
                f" WHERE {raw} IS NOT NULL{differs}"
            )
        if not selects:
            return None
        return f"WITH s AS ({sub}) " + " UNION ALL ".join(selects)


def _coalesce(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"COALESCE({', '.join(items)})"


# A leaf's value as DuckDB's json_type() and json_extract_string() would describe it, so a column's
# type is decided by the one rule in types.infer whether the value came from Python or DuckDB.
Sample = tuple[str, str | None] | None
_JSON_TYPES: dict[type, str] = {bool: "BOOLEAN", int: "BIGINT", float: "DOUBLE", str: "VARCHAR", list: "ARRAY"}


def _sample(value: Any) -> Sample:
    if value is None:
        return None
    json_type = _JSON_TYPES.get(type(value), "OBJECT")
    return (json_type, value if json_type == "VARCHAR" else str(value) if json_type == "BIGINT" else None)


def _leaves(obj: dict[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, Sample]]:
    for key, value in obj.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), _sample(value)


class Planner:
    """Plans batches for one warehouse; remembers shapes it has already parsed."""

    _MAX_SHAPES = 10_000

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._shapes: OrderedDict[int, _Shape] = OrderedDict()

    def _shape(self, entry: Entry) -> _Shape:
        known = self._shapes.get(entry.shape)
        if known is not None:
            self._shapes.move_to_end(entry.shape)
            return known
        msg = orjson.loads(entry.body)
        mtype = msg["type"]
        limit = self.dialect.max_identifier_bytes
        if mtype == "track":
            event_table = table_name(msg["event"], limit)
            tables = [
                ("tracks", TableKind(_TRACKS_STD, context=True, payload=None)),
                (event_table, _event_kind(event_table)),
            ]
        elif mtype == "identify":
            tables = [("identifies", KINDS["identifies"]), ("users", KINDS["users"])]
        else:
            name = {"page": "pages", "screen": "screens", "group": "groups", "alias": "aliases"}[mtype]
            tables = [(name, KINDS[name])]
        payload_key = {
            "track": "properties",
            "page": "properties",
            "screen": "properties",
            "identify": "traits",
            "group": "traits",
        }.get(mtype)
        payload = msg.get(payload_key) if payload_key else None
        shape = _Shape(
            tables=tables,
            context=list(_leaves(msg.get("context") or {})),
            payload=list(_leaves(payload)) if isinstance(payload, dict) else [],
        )
        self._shapes[entry.shape] = shape
        if len(self._shapes) > self._MAX_SHAPES:
            self._shapes.popitem(last=False)
        return shape

    def plan(
        self,
        entries: Sequence[Entry],
        existing: Callable[[str], dict[str, ColType] | None],
        staging: duckdb.DuckDBPyConnection,
    ) -> list[TablePlan]:
        """Plans for every table the batch touches, column types settled (inferring new ones)."""
        firsts: dict[int, Entry] = {}
        for e in entries:
            if e.shape not in firsts:
                firsts[e.shape] = e
        tables: dict[str, TablePlan] = {}
        payload_prefix = {"properties": "/properties", "traits": "/traits"}
        for shape_id, entry in firsts.items():
            shape = self._shape(entry)
            for name, kind in shape.tables:
                plan = tables.get(name)
                if plan is None:
                    plan = tables[name] = TablePlan(name, kind)
                    for std in kind.standard:
                        plan.columns[std.name] = Column(
                            std.name, std.type, [std.pointer] if std.pointer else [], std.const, standard=True
                        )
                    if name == "tracks":  # tracks.event holds each row's event table name
                        plan.columns["event"] = Column("event", ColType.VARCHAR, [], standard=True, by_shape={})
                plan.shapes.append(shape_id)
                if name == "tracks":
                    by_shape = plan.columns["event"].by_shape
                    assert by_shape is not None
                    by_shape[shape_id] = shape.tables[1][0]
                if kind.context:
                    for path, sample in shape.context:
                        self._add(plan, shape_id, ("context", *path), "/context" + json_pointer(path), sample)
                if kind.payload is not None:
                    for path, sample in shape.payload:
                        pointer = payload_prefix[kind.payload] + json_pointer(path)
                        self._add(plan, shape_id, path, pointer, sample)
        plans = list(tables.values())
        for plan in plans:
            self._settle_types(plan, existing(plan.name), staging)
        return plans

    def _add(self, plan: TablePlan, shape_id: int, path: Path, pointer: str, sample: Sample = None) -> None:
        plan.leaf_shapes.setdefault(pointer, set()).add(shape_id)
        name = column_name(path, self.dialect.max_identifier_bytes)
        if name is None:
            plan.discards.append((pointer, pointer, f"{pointer} has no letters or digits to name a column", None))
            return
        col = plan.columns.get(name)
        if name == LOADED_AT or (col is not None and col.standard):
            if pointer not in (p for p, _, _, _ in plan.discards):
                same_as = col.pointers[0] if col is not None and col.pointers else None
                plan.discards.append((pointer, name, f"{pointer} collides with the standard column {name}", same_as))
        elif col is None:
            plan.columns[name] = Column(name, None, [pointer], sample=sample)
        else:
            if pointer not in col.pointers:
                col.pointers.append(pointer)  # two keys with one snake_case name share the column
            if col.sample is None:
                col.sample = sample

    def _settle_types(
        self, plan: TablePlan, existing: dict[str, ColType] | None, staging: duckdb.DuckDBPyConnection
    ) -> None:
        plan.exists = existing is not None
        existing = existing or {}
        unknown = [c for c in plan.columns.values() if not c.standard and c.name not in existing]
        for col in plan.columns.values():
            if not col.standard and col.name in existing:
                col.type = existing[col.name]
        if not unknown:
            return
        # New columns take the type of their first value. The first message of each shape (already
        # parsed) usually has one; only columns null there need a scan of the batch.
        found: dict[str, tuple[str | None, str | None]] = {c.name: c.sample for c in unknown if c.sample}
        scan = [c for c in unknown if c.name not in found]
        if scan:
            found.update(self._first_values(plan, scan, staging))
        used = len(existing) if plan.exists else len(plan.kind.standard) + 1  # + loaded_at
        room = self.dialect.max_columns - used
        for col in unknown:
            json_t, text = found.get(col.name, (None, None))
            if json_t is None:
                del plan.columns[col.name]  # a column is created only when a non-null value arrives
                continue
            if room <= 0:
                del plan.columns[col.name]
                reason = f"{plan.name} has reached the column limit of {self.dialect.max_columns}"
                plan.discards.extend((p, col.name, reason, None) for p in col.pointers)
                continue
            room -= 1
            col.type = infer(json_t, text)
            col.new = True

    @staticmethod
    def _first_values(
        plan: TablePlan, columns: list[Column], staging: duckdb.DuckDBPyConnection
    ) -> dict[str, tuple[str | None, str | None]]:
        """(json_type, text) of each column's first non-null value in the batch, by scanning it."""
        shapes = ", ".join(str(s) for s in plan.shapes)
        parts = []
        for col in columns:
            p = sql_string(col.pointers[0])
            leaf = plan.leaf_shapes.get(col.pointers[0])
            only = f" AND shape IN ({', '.join(map(str, sorted(leaf)))})" if leaf else ""
            keep = f"FILTER (WHERE json_type(body, {p}) <> 'NULL'{only})"
            parts += [
                f"arg_min(json_type(body, {p}), seq) {keep}",
                f"arg_min(json_extract_string(body, {p}), seq) {keep}",
            ]
        row = staging.execute(f"SELECT {', '.join(parts)} FROM staging WHERE shape IN ({shapes})").fetchall()[0]
        return {col.name: (row[2 * i], row[2 * i + 1]) for i, col in enumerate(columns)}
