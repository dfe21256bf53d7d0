"""The one mapping layer: a batch of canonical messages -> Segment's tables, columns, rows and discards.

The plan is engine-neutral. It runs in DuckDB over `staging(seq, g, body)`, the batch as Arrow:

1. Every message has a *shape* (its exact key structure, sluice/ingest/shape.py). Each shape of the
   batch is analysed once, from its first message (layout.py); the batch is grouped by *feed* (the
   tables a kind of message writes: tracks + its event table, identifies + users, pages, ...).
2. Per feed, one pass extracts every value each message contributes to its tables into *slots*
   (text columns of an Arrow table): DuckDB's json_extract_string for the common shapes, Python
   (flatten.py) for very wide or rare ones. Each body is parsed once for all its tables.
3. New columns get the type of their first value in the batch (by seq); a table takes new columns
   up to its cap, first filled first; an event table is created only while the schema is under its
   cap. What was known comes from the warehouse's stored schema, never from another batch.
4. The engine creates what is new and runs the plan's SELECTs: rows per table, and discards for
   every value that could not be stored, each with its reason.

Everything is linear in the batch: no statement's size grows with the product of rows and columns.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sluice.ingest.shape import SHAPE_BYTES, shape_of
from sluice.log.base import Entry
from sluice.warehouse.flatten import TableValues, leaf_values, table_values
from sluice.warehouse.layout import ShapeInfo, analyse, loser_reason
from sluice.warehouse.naming import sql_string
from sluice.warehouse.tables import DISCARDS, LOAD_TIME, Feed, TableKind
from sluice.warehouse.types import ColType, cast_sql, infer, standard_cast_sql

# Shapes wider than this are flattened in Python: DuckDB looks each path up by walking its object's keys.
FAST_MAX_LEAVES = 64
# Per feed, the most frequent shapes up to this many go through DuckDB, the rarer ones through Python ...
FAST_MAX_SHAPES = 32
# ... as long as their columns and leaves stay within this many: DuckDB plans each expression of a
# SELECT list separately, so a very wide projection costs more to plan than Python costs to flatten.
FAST_MAX_SLOTS = 256
STANDARD_TABLES = frozenset({"tracks", "identifies", "users", "pages", "screens", "groups", "aliases", DISCARDS})

Known = Mapping[str, Mapping[str, ColType]]  # table -> column -> type, for one schema


@dataclass(frozen=True)
class Limits:
    max_identifier_bytes: int
    max_columns: int  # per table, standard and load-time columns included
    max_event_tables: int  # per schema
    fast_max_leaves: int = FAST_MAX_LEAVES
    fast_max_shapes: int = FAST_MAX_SHAPES
    fast_max_slots: int = FAST_MAX_SLOTS


@dataclass
class TableWrite:
    """Rows for one table from one feed: `select` yields `columns` in order (load-time columns are the
    engine's)."""

    table: str
    kind: TableKind
    columns: list[str]
    select: str


@dataclass
class BatchPlan:
    relations: dict[str, pa.Table]  # to register on the connection that runs the SELECTs
    new_tables: dict[str, tuple[TableKind, list[tuple[str, ColType]]]]  # table -> (kind, every column)
    new_columns: dict[str, list[tuple[str, ColType]]]  # existing table -> columns to add
    writes: list[TableWrite]
    discards: list[str]  # SELECTs of (table_name, column_name, row_id, value, reason, received_at)
    tables: list[str] = field(default_factory=list)  # every table written, in order

    def columns_after(self, known: Known) -> dict[str, dict[str, ColType]]:
        """What the stored schema knows of each touched table once this plan has committed."""
        out: dict[str, dict[str, ColType]] = {}
        for table, (_, cols) in self.new_tables.items():
            out[table] = {**dict(cols), **dict(LOAD_TIME)}
        for table, cols in self.new_columns.items():
            out[table] = {**known.get(table, {}), **dict(cols)}
        return out


# -- shapes --------------------------------------------------------------------------------------


class ShapeCache:
    """Shape digest -> its analysis. Shapes are exact and analyses hold no values, so one cache may
    serve every source of a warehouse (the digest decides, not which message came first)."""

    def __init__(self, max_identifier_bytes: int, size: int = 10_000) -> None:
        self.max_identifier_bytes = max_identifier_bytes
        self._size = size
        self._items: OrderedDict[bytes, ShapeInfo] = OrderedDict()

    def get(self, key: bytes, msg: dict[str, Any] | None, body: bytes) -> ShapeInfo:
        info = self._items.get(key)
        if info is not None:
            self._items.move_to_end(key)
            return info
        info = analyse(msg if msg is not None else orjson.loads(body), self.max_identifier_bytes)
        self._items[key] = info
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return info


# -- per feed ------------------------------------------------------------------------------------


@dataclass
class _Candidate:
    """A column a table does not have yet, with the first value (by seq) that would fill it."""

    seq: int
    pos: int  # where its value is in that message (columns first filled by one message keep its order)
    json_text: str  # the value as JSON
    json_type: str | None = None  # DuckDB's json_type() of it, and its text, once settled
    text: str | None = None


# A row flattened in Python: (entry, message, shape, leaf values, per-table values)
_SlowRow = tuple[Entry, dict[str, Any], int, dict[str, Any], dict[str, TableValues]]


@dataclass
class _FeedPlan:
    feed: Feed
    gids: list[int]  # shapes of this feed
    fast: list[int]
    slow: list[int]
    first_seq: int
    std_slots: dict[str, str] = field(default_factory=dict)  # standard pointer -> slot
    col_slots: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, column) -> slot
    # fast-path discard slots: slot -> (table, column label, reason)
    discard_slots: dict[str, tuple[str, str, str]] = field(default_factory=dict)


class Planner:
    """Plans batches for one warehouse (one dialect's identifier limit and caps)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.shapes = ShapeCache(limits.max_identifier_bytes)

    def plan(self, entries: Sequence[Entry], known: Known, stage: duckdb.DuckDBPyConnection, tag: str) -> BatchPlan:
        """Plan one source's batch. `known`: the schema's tables as stored. `stage`: a DuckDB connection for
        the extraction queries (nothing is written through it here). `tag` names this plan's relations."""
        return _BatchPlanner(self, entries, known, stage, tag).run()


class _BatchPlanner:
    @functools.cached_property
    def gids(self) -> list[int]:
        """Each entry's shape number (the Python path and first values need them; most batches do not)."""
        return self.gid_array.to_pylist()  # type: ignore[no-any-return]

    @functools.cached_property
    def index_of_seq(self) -> dict[int, int]:
        return {e.seq: i for i, e in enumerate(self.entries)}

    def __init__(
        self, planner: Planner, entries: Sequence[Entry], known: Known, stage: duckdb.DuckDBPyConnection, tag: str
    ) -> None:
        self.limits = planner.limits
        self.cache = planner.shapes
        self.entries = entries
        self.known = known
        self.stage = stage
        self.tag = tag
        self.relations: dict[str, pa.Table] = {}

    # -- 1. shapes and feeds ---------------------------------------------------------------------

    def _group(self) -> None:
        entries = self.entries
        seqs = [e.seq for e in entries]  # three comprehensions: half the time of zip(*entries)
        shapes = [e.shape for e in entries]
        bodies = [e.body for e in entries]
        parsed: dict[int, dict[str, Any]] = {}
        try:  # the common case, all in C: every record carries its 16-byte digest
            keys = pa.array(shapes, pa.binary(SHAPE_BYTES))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            fixed = shapes
            for i, key in enumerate(fixed):
                if not (isinstance(key, bytes) and len(key) == SHAPE_BYTES):
                    # A re-driven dead letter, or a log written before shapes were digests: from the body.
                    parsed[i] = orjson.loads(bodies[i])
                    fixed[i] = shape_of(parsed[i])
            keys = pa.array(fixed, pa.binary(SHAPE_BYTES))
        # Number the batch's shapes in C: most batches are thousands of rows and a handful of shapes.
        encoded = keys.dictionary_encode()
        gids = encoded.indices
        n_shapes = len(encoded.dictionary)
        self.shape_rows = [0] * n_shapes
        for item in gids.value_counts():
            self.shape_rows[item["values"].as_py()] = item["counts"].as_py()
        self.shape_first = [pc.index(gids, g).as_py() for g in range(n_shapes)]
        self.shapes = [
            self.cache.get(key.as_py(), parsed.get(self.shape_first[g]), bodies[self.shape_first[g]])
            for g, key in enumerate(encoded.dictionary)
        ]
        self.gid_array = gids
        self.staging = pa.table({
            "seq": pa.array(seqs, pa.int64()),
            "g": gids.cast(pa.int32()),
            # The log's bodies are orjson's output, always valid UTF-8: reinterpreted as text without the
            # validating copy a cast would make.
            "body": pa.array(bodies, pa.binary()).view(pa.string()),
        })
        self.staging_name = f"staging_{self.tag}"
        self.relations[self.staging_name] = self.staging
        self.stage.register(self.staging_name, self.staging)
        feeds: dict[tuple[str, str | None], list[int]] = {}
        for g, shape in enumerate(self.shapes):
            feeds.setdefault((shape.feed.mtype, shape.feed.event_table), []).append(g)
        self.feeds: list[_FeedPlan] = []
        for gs in feeds.values():
            by_rows = sorted(gs, key=lambda g: (-self.shape_rows[g], self.shape_first[g]))
            fast, keys = [], set()
            for g in by_rows:  # the most frequent narrow shapes, while their columns fit the budget
                shape = self.shapes[g]
                more = {(t, c) for t, lay in shape.layouts.items() for c in lay.columns} | {
                    (t, leaf.pointer) for t, lay in shape.layouts.items() for leaf, _ in lay.leaves}
                if (shape.width > self.limits.fast_max_leaves or len(fast) >= self.limits.fast_max_shapes
                        or len(keys | more) > self.limits.fast_max_slots):
                    continue
                fast.append(g)
                keys |= more
            fast.sort()
            slow = sorted(set(gs) - set(fast))
            first = min(self.entries[self.shape_first[g]].seq for g in gs)
            self.feeds.append(_FeedPlan(self.shapes[gs[0]].feed, sorted(gs), fast, slow, first))
        self.feeds.sort(key=lambda f: f.first_seq)

    def _admit_tables(self) -> None:
        """Event tables beyond the schema's cap are not created (their properties go to discards)."""
        have = sum(1 for t in self.known if t not in STANDARD_TABLES)
        self.refused_tables: set[str] = set()
        for fp in self.feeds:  # in order of first message
            table = fp.feed.event_table
            if table is None or table in self.known:
                continue
            if have >= self.limits.max_event_tables:
                self.refused_tables.add(table)
            else:
                have += 1

    def _tables(self, fp: _FeedPlan) -> list[tuple[str, TableKind]]:
        return [(t, k) for t, k in fp.feed.tables if t not in self.refused_tables]

    # -- 2. extraction -------------------------------------------------------------------------------

    def _slots(self, fp: _FeedPlan) -> None:
        """Name a slot for every standard pointer and every (table, column) of the feed's shapes."""
        n = 0
        for _, kind in fp.feed.tables:
            for std in kind.standard:
                if std.pointer and std.pointer not in fp.std_slots:
                    fp.std_slots[std.pointer] = f"s{len(fp.std_slots)}"
        for table, _ in self._tables(fp):
            for g in fp.gids:
                for col in self.shapes[g].layouts[table].columns:
                    if (table, col) not in fp.col_slots:
                        fp.col_slots[(table, col)] = f"c{n}"
                        n += 1

    def _lists(self, fp: _FeedPlan) -> tuple[dict[int, list[str]], dict[int, dict[str, int]]]:
        """Per fast shape: the pointers its rows extract (standard ones first, at the same places in
        every list) and each pointer's 1-based place in its list."""
        std = list(fp.std_slots)
        lists: dict[int, list[str]] = {}
        for g in fp.fast:
            leaves = [leaf.pointer for leaf in self.shapes[g].leaves]
            lists[g] = std + [p for p in leaves if p not in fp.std_slots]
        return lists, {g: {p: i + 1 for i, p in enumerate(ptrs)} for g, ptrs in lists.items()}

    def _per_shape(self, fp: _FeedPlan, exprs: dict[int, str]) -> str | None:
        """One expression from per-shape ones: shapes with the same expression share a branch."""
        if not exprs:
            return None
        by_expr: dict[str, list[int]] = {}
        for g, e in exprs.items():
            by_expr.setdefault(e, []).append(g)
        if len(by_expr) == 1 and len(exprs) == len(fp.fast):
            return next(iter(by_expr))
        branches = " ".join(f"WHEN g IN ({', '.join(map(str, gs))}) THEN {e}" for e, gs in by_expr.items())
        return f"CASE {branches} END"

    def _extract_sql(self, fp: _FeedPlan, function: str) -> str:
        lists, _ = self._lists(fp)
        x = self._per_shape(fp, {g: f"{function}(body, [" + ", ".join(map(sql_string, ptrs)) + "])"
                                 for g, ptrs in lists.items()})
        return f"SELECT seq, g, {x} AS x FROM {self.staging_name} WHERE g IN ({', '.join(map(str, fp.fast))})"

    def _fast_extract(self, fp: _FeedPlan) -> pa.Table | None:
        if not fp.fast:
            return None
        _, index = self._lists(fp)
        per_shape = lambda exprs: self._per_shape(fp, exprs)  # noqa: E731
        cols = ["seq"] + [f"x[{i + 1}] AS {slot}" for i, slot in enumerate(fp.std_slots.values())]

        def coalesce(g: int, pointers: Sequence[str]) -> str:
            items = [f"x[{index[g][p]}]" for p in pointers]
            return items[0] if len(items) == 1 else f"COALESCE({', '.join(items)})"

        for (table, col), slot in fp.col_slots.items():
            exprs = {}
            for g in fp.fast:
                pointers = self.shapes[g].layouts[table].columns.get(col)
                if pointers:
                    exprs[g] = coalesce(g, pointers)
            e = per_shape(exprs)
            if e is not None:
                cols.append(f"{e} AS {slot}")
        # Values that are discarded whatever their type: unnamed leaves, standard-column collisions,
        # collision losers, and every property of an event table the schema has no room for.
        # Keyed by (table, pointer, label, reason): two leaves can share a label (`receivedAt`, `received_at`).
        discards: dict[tuple[str, str, str, str], dict[int, str]] = {}
        for g in fp.fast:
            shape = self.shapes[g]
            for table, _ in fp.feed.tables:
                lay = shape.layouts[table]
                if table in self.refused_tables:
                    reason = self._table_cap_reason(table)
                    for leaf, label in lay.leaves:
                        if leaf.payload:
                            discards.setdefault((table, leaf.pointer, label, reason), {})[g] = (
                                f"x[{index[g][leaf.pointer]}]"
                            )
                    continue
                for rule in lay.rules:
                    v = f"x[{index[g][rule.pointer]}]"
                    if rule.same_as:
                        v = f"CASE WHEN {v} IS DISTINCT FROM x[{index[g][rule.same_as]}] THEN {v} END"
                    discards.setdefault((table, rule.pointer, rule.label, rule.reason), {})[g] = v
                for col, pointer, earlier in lay.losers():
                    v = f"CASE WHEN {coalesce(g, earlier)} IS NOT NULL THEN x[{index[g][pointer]}] END"
                    discards.setdefault((table, pointer, col, loser_reason(pointer, col)), {})[g] = v
        for key, exprs in discards.items():
            slot = f"d{len(fp.discard_slots)}"
            fp.discard_slots[slot] = (key[0], key[2], key[3])  # one slot per leaf: labels can repeat
            cols.append(f"{per_shape(exprs)} AS {slot}")
        sql = f"SELECT {', '.join(cols)} FROM ({self._extract_sql(fp, 'json_extract_string')})"
        return self.stage.sql(sql).to_arrow_table()

    def _position(self, g: int, pointer: str) -> int:
        """Where a leaf is in its message: new columns first filled by one message are added in this order."""
        return next(i for i, leaf in enumerate(self.shapes[g].leaves) if leaf.pointer == pointer)

    def _fast_firsts(self, fp: _FeedPlan, fast: pa.Table | None, new: dict[str, set[str]]) -> None:
        """First value (by seq) of each new column among the fast shapes' rows. The extraction says which
        row holds it; that one row is read again in Python, as the general path reads every row, so the
        first value's JSON type comes out the same whichever path found it."""
        if fast is None:
            return
        seqs = fast.column("seq")
        user = fast.column(fp.std_slots["/userId"]) if "/userId" in fp.std_slots else None
        rows: dict[int, tuple[dict[str, Any], int, dict[str, Any]]] = {}
        for (table, col), slot in fp.col_slots.items():
            if col not in new.get(table, ()) or slot not in fast.column_names:
                continue
            valid = pc.is_valid(fast.column(slot))
            if table == "users" and user is not None:
                valid = pc.and_(valid, pc.is_valid(user))
            first = pc.min(pc.filter(seqs, valid)).as_py()
            if first is None:
                continue
            known = self.firsts.get((table, col))
            if known is not None and known.seq <= first:
                continue
            if first not in rows:
                i = self.index_of_seq[first]  # built only when a batch has new columns
                msg = orjson.loads(self.entries[i].body)
                rows[first] = (msg, self.gids[i], leaf_values(msg, self.shapes[self.gids[i]]))
            msg, g, values = rows[first]
            tv = table_values(msg, values, self.shapes[g].layouts[table])
            self.firsts[(table, col)] = _Candidate(first, self._position(g, tv.sources[col]),
                                                   json_text=orjson.dumps(tv.winners[col]).decode())

    def _slow_pass(self, fp: _FeedPlan, new: dict[str, set[str]]) -> list[_SlowRow]:
        """Parse and flatten the rare and wide shapes' rows; note the first value of every new column."""
        out = []
        if not fp.slow:
            return out
        slow = set(fp.slow)
        for entry, g in zip(self.entries, self.gids, strict=True):
            if g not in slow:
                continue
            msg = orjson.loads(entry.body)
            shape = self.shapes[g]
            values = leaf_values(msg, shape)
            per_table = {}
            for table, _ in fp.feed.tables:
                tv = table_values(msg, values, shape.layouts[table])
                per_table[table] = tv
                if table in self.refused_tables or (table == "users" and msg.get("userId") is None):
                    continue
                for col, value in tv.winners.items():
                    if col not in new.get(table, ()):
                        continue
                    first = self.firsts.get((table, col))
                    if first is None or first.seq > entry.seq:
                        pos = self._position(g, tv.sources[col])
                        self.firsts[(table, col)] = _Candidate(entry.seq, pos, json_text=orjson.dumps(value).decode())
            out.append((entry, msg, g, values, per_table))
        return out

    def _slow_relation(self, fp: _FeedPlan, rows: list[_SlowRow], name: str) -> tuple[pa.Table | None, pa.Table | None]:
        """The slow rows' slots and their discards. A slot holds a value's text as the fast path extracts it:
        strings and booleans are written here; numbers and arrays are rendered by DuckDB's own
        json_extract_string, all in one statement (DuckDB and Python write numbers differently)."""
        if not rows:
            return None, None
        slots: dict[str, list[Any]] = {"seq": []}
        keep = {key: slot for key, slot in fp.col_slots.items() if key[1] in self.columns_of.get(key[0], {})}
        for slot in (*fp.std_slots.values(), *keep.values()):
            slots[slot] = []
        disc: dict[str, list[Any]] = {k: [] for k in ("seq", "table_name", "column_name", "value", "reason", "same")}

        def discard(seq: int, table: str, label: str, value: Any, reason: str, same: Any = None) -> None:
            for k, v in (("seq", seq), ("table_name", table), ("column_name", label),
                         ("value", orjson.dumps(value).decode()), ("reason", reason),
                         ("same", None if same is None else orjson.dumps(same).decode())):
                disc[k].append(v)

        pending: list[tuple[list[Any], int, str]] = []  # (slot list, index, JSON) rendered by DuckDB below

        def text(column: list[Any], value: Any) -> None:
            if value is None or isinstance(value, str):
                column.append(value)
            elif isinstance(value, bool):
                column.append("true" if value else "false")
            else:
                pending.append((column, len(column), orjson.dumps(value).decode()))
                column.append(None)

        for entry, msg, g, values, per_table in rows:
            slots["seq"].append(entry.seq)
            for pointer, slot in fp.std_slots.items():
                text(slots[slot], msg.get(pointer[1:]))
            for table, tv in per_table.items():
                if table in self.refused_tables:
                    for leaf, label in self.shapes[g].layouts[table].leaves:
                        value = values[leaf.pointer]
                        if leaf.payload and value is not None:
                            discard(entry.seq, table, label, value, self._table_cap_reason(table))
                    continue
                if table == "users" or table not in self.columns_of:
                    continue  # what users cannot store is recorded once, against identifies
                for label, _, value, reason, same in tv.discards:
                    discard(entry.seq, table, label, value, reason, same)
                for col, value in tv.winners.items():
                    if col not in self.columns_of[table]:
                        discard(entry.seq, table, col, value, self._column_cap_reason(table))
            for (table, col), slot in keep.items():
                text(slots[slot], per_table[table].winners.get(col))
        if pending:
            rendered = pa.table({"v": pa.array([j for _, _, j in pending], pa.string())})
            self.stage.register(f"{name}_json", rendered)
            try:
                texts = self.stage.execute(f"SELECT json_extract_string(v, '$') FROM {name}_json").fetchall()
            finally:
                self.stage.unregister(f"{name}_json")
            for (column, i, _), (t,) in zip(pending, texts, strict=True):
                column[i] = t
        table = pa.table({k: pa.array(v, pa.int64() if k == "seq" else pa.string()) for k, v in slots.items()})
        long = None
        if disc["seq"]:
            long = pa.table({k: pa.array(v, pa.int64() if k == "seq" else pa.string()) for k, v in disc.items()})
        return table, long

    # -- 3. columns: types and caps ------------------------------------------------------------------

    def _column_cap_reason(self, table: str) -> str:
        return f"{table} has reached the column limit of {self.limits.max_columns}"

    def _table_cap_reason(self, table: str) -> str:
        limit = self.limits.max_event_tables
        return f"the schema has reached the limit of {limit} event tables, so {table} was not created"

    def _settle(self) -> None:
        """Existing columns keep their types; new ones take their first value's, first filled first, up to
        the table's cap."""
        by_table: dict[str, list[tuple[int, int, str, _Candidate]]] = {}
        for (table, col), cand in self.firsts.items():
            by_table.setdefault(table, []).append((cand.seq, cand.pos, col, cand))
        # JSON types of the Python path's first values, the way DuckDB sees them.
        pending = [c for cands in by_table.values() for *_, c in cands]
        if pending:
            rel = pa.table({"v": pa.array([c.json_text for c in pending], pa.string())})
            self.stage.register(f"firsts_{self.tag}", rel)
            try:
                typed = self.stage.execute(
                    f"SELECT json_type(v::JSON), json_extract_string(v, '$') FROM firsts_{self.tag}"
                ).fetchall()
            finally:
                self.stage.unregister(f"firsts_{self.tag}")
            for c, (t, text) in zip(pending, typed, strict=True):
                c.json_type, c.text = t, text
        self.new_tables: dict[str, tuple[TableKind, list[tuple[str, ColType]]]] = {}
        self.new_columns: dict[str, list[tuple[str, ColType]]] = {}
        self.columns_of: dict[str, dict[str, ColType]] = {}
        for fp in self.feeds:
            for table, kind in self._tables(fp):
                if table in self.columns_of or (table == "users" and not self.has_users):
                    continue
                existing = self.known.get(table)
                cols: dict[str, ColType] = {}
                if existing is None:
                    cols.update({s.name: s.type for s in kind.standard})
                    used = len(cols) + len(LOAD_TIME)
                else:
                    cols.update(existing)
                    used = len(existing) + sum(1 for n, _ in LOAD_TIME if n not in existing)
                added = [(n, t) for n, t in LOAD_TIME if existing is not None and n not in existing]
                room = self.limits.max_columns - used
                for _, _, col, cand in sorted(by_table.get(table, []), key=lambda c: c[:3]):
                    if room <= 0:
                        break
                    assert cand.json_type is not None
                    cols[col] = infer(cand.json_type, cand.text)
                    added.append((col, cols[col]))
                    room -= 1
                self.columns_of[table] = cols
                if existing is None:
                    self.new_tables[table] = (kind, [(n, t) for n, t in cols.items()])
                elif added:
                    self.new_columns[table] = added

    # -- 4. SQL --------------------------------------------------------------------------------------

    def _writes(self, fp: _FeedPlan, rel: str, has: set[str]) -> tuple[list[TableWrite], list[str]]:
        """The SELECTs of one feed: rows per table, and discards.

        DuckDB plans each expression of a SELECT list at a cost of its own (about a millisecond for a
        guarded cast), so a table's typed columns are cast through one lambda per type over a list of
        their slots, not one expression per column: a 500-column table plans in a fraction of a second."""
        writes, discards = [], []
        rid = fp.std_slots["/messageId"]
        received = standard_cast_sql(fp.std_slots["/receivedAt"], ColType.TIMESTAMP)
        for table, kind in self._tables(fp):
            if table not in self.columns_of:
                continue  # users, when no identify of the batch has a userId
            known = self.columns_of[table]
            names, exprs = [], []
            for std in kind.standard:
                names.append(std.name)
                if std.pointer is None:  # tracks.event: the event's table name
                    assert fp.feed.event_table is not None
                    exprs.append(sql_string(fp.feed.event_table))
                else:
                    exprs.append(standard_cast_sql(fp.std_slots[std.pointer], std.type))
            typed: dict[ColType, list[tuple[str, str]]] = {}
            over_cap: list[tuple[str, str]] = []
            for (t, col), slot in fp.col_slots.items():
                if t != table or slot not in has:
                    continue
                if col in known:
                    typed.setdefault(known[col], []).append((col, slot))
                else:
                    over_cap.append((col, slot))
            lists, bads, items = [], [], []
            for typ, cols in typed.items():
                names += [c for c, _ in cols]
                slots = ", ".join(s for _, s in cols)
                if typ is ColType.VARCHAR:
                    exprs += [s for _, s in cols]
                    continue
                lists.append(f"list_transform([{slots}], lambda x: {cast_sql('x', typ)}) AS l_{typ}")
                exprs += [f"l_{typ}[{i + 1}]" for i in range(len(cols))]
                bad = f"CASE WHEN x IS NOT NULL AND ({cast_sql('x', typ)}) IS NULL THEN x END"
                bads.append(f"list_transform([{slots}], lambda x: {bad}) AS b_{typ}")
                labels = ", ".join(sql_string(c) for c, _ in cols)
                reason = sql_string(f"cannot be stored in the {typ} column ")
                items.append(f"list_transform(list_zip([{labels}], b_{typ}), lambda p: {{'c': p[1], 'v': p[2],"
                             f" 'r': {reason} || p[1]}})")
            source = f"(SELECT *, {', '.join(lists)} FROM {rel})" if lists else rel
            if kind.upsert:
                user = fp.std_slots["/userId"]
                inner = ", ".join(["seq", *(f"{e} AS v{i}" for i, e in enumerate(exprs))])
                aggs = ["v0"] + [f"arg_max(v{i}, seq) FILTER (WHERE v{i} IS NOT NULL)" for i in range(1, len(exprs))]
                select = (f"SELECT {', '.join(aggs)} FROM (SELECT {inner} FROM {source} WHERE {user} IS NOT NULL)"
                          " GROUP BY v0")
                writes.append(TableWrite(table, kind, names, select))
                continue  # what users cannot store is recorded once, against identifies
            writes.append(TableWrite(table, kind, names, f"SELECT {', '.join(exprs)} FROM {source}"))
            if over_cap:
                labels = ", ".join(sql_string(c) for c, _ in over_cap)
                reason = sql_string(self._column_cap_reason(table))
                items.append(f"list_transform(list_zip([{labels}], [{', '.join(s for _, s in over_cap)}]),"
                             f" lambda p: {{'c': p[1], 'v': p[2], 'r': {reason}}})")
            discards += self._discards_sql(fp, table, rel, bads, items, rid, received, has)
        # Tables refused by the cap write nothing; their properties are discard slots like the others.
        for table in sorted({t for t, _ in fp.feed.tables} & self.refused_tables):
            discards += self._discards_sql(fp, table, rel, [], [], rid, received, has)
        return writes, discards

    @staticmethod
    def _discards_sql(fp: _FeedPlan, table: str, rel: str, bads: list[str], items: list[str], rid: str,
                      received: str, has: set[str]) -> list[str]:
        """One SELECT of (table_name, column_name, row_id, value, reason, received_at) for a table, from
        lists of candidate discards (a NULL value means nothing to discard)."""
        fixed = [f"{{'c': {sql_string(label)}, 'v': {slot}, 'r': {sql_string(reason)}}}"
                 for slot, (t, label, reason) in fp.discard_slots.items() if t == table and slot in has]
        if fixed:
            items = [*items, f"[{', '.join(fixed)}]"]
        if not items:
            return []
        every = items[0] if len(items) == 1 else f"list_concat({', '.join(items)})"
        source = f"(SELECT *, {', '.join(bads)} FROM {rel})" if bads else rel
        return [
            f"SELECT {sql_string(table)}, d.c, row_id, d.v, d.r, received_at FROM"
            f" (SELECT {rid} AS row_id, {received} AS received_at,"
            f" unnest(list_filter({every}, lambda d: d.v IS NOT NULL)) AS d FROM {source})"
        ]

    def run(self) -> BatchPlan:
        self._group()
        self._admit_tables()
        new: dict[str, set[str]] = {}
        for fp in self.feeds:
            self._slots(fp)
            for table, col in fp.col_slots:
                if col not in self.known.get(table, {}):
                    new.setdefault(table, set()).add(col)
        self.firsts: dict[tuple[str, str], _Candidate] = {}
        fast_tables: list[pa.Table | None] = []
        slow_rows = []
        try:
            for fp in self.feeds:
                fast = self._fast_extract(fp)
                fast_tables.append(fast)
                slow_rows.append(self._slow_pass(fp, new))
                self._fast_firsts(fp, fast, new)
            self.has_users = any(
                fp.feed.mtype == "identify" and (
                    (fast is not None and pc.any(pc.is_valid(fast.column(fp.std_slots["/userId"]))).as_py())
                    or any(msg.get("userId") is not None for _, msg, *_ in slow)
                )
                for fp, fast, slow in zip(self.feeds, fast_tables, slow_rows, strict=True)
            )
            self._settle()
            writes: list[TableWrite] = []
            discards: list[str] = []
            for n, fp in enumerate(self.feeds):
                rel = f"rows_{self.tag}_{n}"
                slow, long = self._slow_relation(fp, slow_rows[n], rel)
                parts = [t for t in (fast_tables[n], slow) if t is not None]
                rows = parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="default")
                self.relations[rel] = rows
                w, d = self._writes(fp, rel, set(rows.column_names))
                writes += w
                discards += d
                if long is not None:
                    lrel = f"discards_{self.tag}_{n}"
                    self.relations[lrel] = long
                    rid, rcv = fp.std_slots["/messageId"], fp.std_slots["/receivedAt"]
                    discards.append(
                        f"SELECT d.table_name, d.column_name, r.{rid}, json_extract_string(d.value, '$'), d.reason,"
                        f" {standard_cast_sql('r.' + rcv, ColType.TIMESTAMP)}"
                        f" FROM {lrel} AS d JOIN {rel} AS r USING (seq) WHERE d.same IS NULL"
                        " OR json_extract_string(d.value, '$') IS DISTINCT FROM json_extract_string(d.same, '$')"
                    )
        finally:
            self.stage.unregister(self.staging_name)
        del self.relations[self.staging_name]
        tables = []
        for w in writes:
            if w.table not in tables:
                tables.append(w.table)
        return BatchPlan(self.relations, self.new_tables, self.new_columns, writes, discards, tables)
