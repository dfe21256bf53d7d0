"""Differential test of the warehouse mapping core: hypothesis generates sequences of batches of
arbitrary Segment messages (all six types; unicode, reserved and colliding names; nesting, arrays,
empty objects; type conflicts across batches; two sources; dead letters re-driven and replays
interleaved with live loads). Each goes through the real loader (ingest's canonicalize, the plan,
both paths of extraction, the engine) and through tests/reference_mapping.py, a slow plain-Python
reading of the docs. Tables, columns, types, rows and discards must be equal, value for value.

The number of examples is fixed and derandomised, so CI runs the same cases every time:
EXAMPLES (100) per engine and extraction path: DuckDB with three splits between the paths and
PostgreSQL with two, so 300 and 200 sequences of batches in all. Run with SLUICE_DIFF_EXAMPLES=2000 to search wider.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from conftest import throwaway_pg_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_mapping import ReferenceWarehouse

from sluice.ingest.canonical import Arrival, Limits, Rejected, canonicalize, iso_ms
from sluice.log.base import Entry
from sluice.warehouse.duckdb_engine import DuckDBWarehouse
from sluice.warehouse.loader import Caps, Warehouse
from sluice.warehouse.plan import Planner
from sluice.warehouse.postgres_engine import PostgresWarehouse
from sluice.warehouse.readonly import QueryLimits
from sluice.warehouse.types import from_sql_type

EXAMPLES = int(os.environ.get("SLUICE_DIFF_EXAMPLES", "100"))
# Small caps, so that batches often reach them: 9 standard + 2 load-time columns leave 5 for properties.
CAPS = Caps(max_columns=16, max_event_tables=3)

# -- strategies ----------------------------------------------------------------------------------

NAMES = [
    "first_name", "firstName", "FirstName", "first-name", "FIRST NAME", "first.name", "first__name",
    "id", "event", "event_text", "received_at", "receivedAt", "loaded_at", "uuid_ts", "name", "user_id",
    "timestamp", "select", "open", "2fa", "•", "", "a" * 70, "a" * 70 + "b", "Ünïcödé", "日本", 'q"uote', "k", "n",
]
_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
names = st.one_of(st.sampled_from(NAMES), st.text(_chars, max_size=6))
STRINGS = [
    "2024-01-05T10:00:00Z", "2024-01-05 10:00", "2024-01-05", "2024-02-30T10:00:00Z",
    "2024-01-05T10:00:00.1234567+05:30", "2024-01-05T23:59:59-0800", "12", "-7.0", "1e3", "1.5", ".5", "0x10",
    "1_000", "true", "FALSE", "yes", "N", "1", "0", "inf", "nan", " 7", "abc", "", "9223372036854775807",
    "9223372036854775808",
]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0.0, -0.0, 1e16, 1e21, 7.0, 1.5]),
    st.sampled_from(STRINGS), st.text(_chars, max_size=5),
)
values = st.recursive(
    st.one_of(scalars, st.lists(scalars, max_size=3)),
    lambda children: st.dictionaries(names, children, max_size=3),
    max_leaves=6,
)
objects = st.dictionaries(names, values, max_size=5)
EVENTS = ["Email Opened", "Order Completed", "email opened", "Tracks", "Users", "select", "Ünïcödé Évent", "•"]


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    mtype = draw(st.sampled_from(["track", "track", "track", "identify", "page", "screen", "group", "alias"]))
    msg: dict[str, Any] = {"type": mtype}
    user = draw(st.sampled_from(["u1", "u2", None]))
    if user or mtype == "alias" or draw(st.booleans()):
        msg["userId"] = user or "u3"
    if "userId" not in msg or draw(st.booleans()):
        msg["anonymousId"] = draw(st.sampled_from(["a1", "a2"]))
    if mtype == "track":
        msg["event"] = draw(st.one_of(st.sampled_from(EVENTS), st.text(_chars, min_size=1, max_size=5)))
    if mtype in ("track", "page", "screen"):
        msg["properties"] = draw(objects)
    if mtype in ("identify", "group"):
        msg["traits"] = draw(objects)
    if mtype in ("page", "screen") and draw(st.booleans()):
        msg["name"] = draw(st.sampled_from(["Home", "Pricing"]))
    if mtype == "group":
        msg["groupId"] = "g1"
    if mtype == "alias":
        msg["previousId"] = "a1"
    if draw(st.booleans()):
        msg["context"] = draw(objects)
    if draw(st.booleans()):
        msg["timestamp"] = draw(st.sampled_from(["2024-01-05T10:00:00Z", "2024-01-05T10:00:00.5+02:00"]))
    return msg


# A step: (kind, source, messages). live: loaded now; dead: dead-lettered now, re-driven by a later
# "redrive" step; replay: a range of what the source has loaded, sent again.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("live"), st.sampled_from("ab"), st.lists(messages(), min_size=1, max_size=6)),
        st.tuples(st.just("dead"), st.sampled_from("ab"), st.lists(messages(), min_size=1, max_size=3)),
        st.tuples(st.just("redrive"), st.sampled_from("ab"), st.just([])),
        st.tuples(st.just("replay"), st.sampled_from("ab"), st.just([])),
    ),
    min_size=1,
    max_size=6,
)

# -- running both --------------------------------------------------------------------------------


def run(steps_: list[tuple[str, str, list[dict[str, Any]]]], wh: Warehouse, ref: ReferenceWarehouse,
        schemas: dict[str, str], consumers: dict[str, str]) -> None:
    seqs = itertools.count(1)
    loaded: dict[str, list[Entry]] = {"a": [], "b": []}
    dead: dict[str, list[Entry]] = {"a": [], "b": []}
    canonical: dict[int, dict[str, Any]] = {}
    limits = Limits(32 * 1024, 100)
    for n, (kind, src, msgs) in enumerate(steps_):
        schema, consumer = schemas[src], consumers[src]
        if kind in ("live", "dead"):
            received = 1_700_000_000_000 + n * 1000
            arrival = Arrival(received, iso_ms(received))
            entries = []
            for i, m in enumerate(msgs):
                try:
                    record = canonicalize({**m, "messageId": f"{src}{n}-{i}"}, None, arrival, limits, 1)
                except Rejected:
                    continue
                seq = next(seqs)
                canonical[seq] = orjson.loads(record.body)
                entries.append(Entry(seq, record.shape, record.received_ms, record.body))
            if not entries:
                continue
            if kind == "live":
                wh.load(consumer, schema, entries)
                ref.load(schema, [(e.seq, canonical[e.seq]) for e in entries])
                loaded[src] += entries
            else:  # the worker dead-letters them and moves its cursor past them
                wh.skip_to(consumer, entries[-1].seq)
                ref.skip(schema, entries[-1].seq)
                dead[src] += entries
        elif kind == "redrive" and dead[src]:
            # Re-driven dead letters come back without their shape (DeliveryState keeps only the body).
            entries = [Entry(e.seq, 0, e.received_ms, e.body) for e in dead[src]]
            wh.load(consumer, schema, entries, replay=True)
            ref.load(schema, [(e.seq, canonical[e.seq]) for e in entries], replay=True)
            loaded[src] += dead[src]
            dead[src] = []
        elif kind == "replay" and loaded[src]:
            entries = sorted(loaded[src][len(loaded[src]) // 2:], key=lambda e: e.seq)
            wh.load(consumer, schema, entries, replay=True)
            ref.load(schema, [(e.seq, canonical[e.seq]) for e in entries], replay=True)


def _norm(v: Any) -> Any:
    if isinstance(v, datetime):
        return ("ts", v.astimezone(UTC).isoformat())
    if isinstance(v, float):
        return ("f", repr(v))
    return (type(v).__name__, v)


def _rows(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(repr(sorted((k, _norm(v)) for k, v in r.items() if k not in ("loaded_at", "uuid_ts"))) for r in rows)


def compare(query: Callable[[str], list[dict[str, Any]]], ref: ReferenceWarehouse, schemas: dict[str, str]) -> None:
    for schema in schemas.values():
        expected = ref.schemas.get(schema)
        cols = query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            f" WHERE table_schema = '{schema}' ORDER BY table_name, ordinal_position"
        )
        actual: dict[str, list[tuple[str, str]]] = {}
        for c in cols:
            actual.setdefault(c["table_name"], []).append((c["column_name"], from_sql_type(c["data_type"]).value))
        tables = {t: v for t, v in actual.items() if t != "discards"}
        want = {t: list(tab.columns.items()) for t, tab in (expected.tables.items() if expected else [])}
        assert tables == want, f"{schema}: tables and columns differ"
        for table, tab in (expected.tables.items() if expected else []):
            got = query(f'SELECT * FROM "{schema}"."{table}"')
            want_rows = [{c: r.get(c) for c in tab.columns if c not in ("loaded_at", "uuid_ts")}
                         for r in tab.rows]  # unset columns are NULL
            assert _rows(got) == _rows(want_rows), f"{schema}.{table}: rows differ"
        got_discards = query(
            f'SELECT table_name, column_name, row_id, value, reason, received_at FROM "{schema}".discards'
        ) if "discards" in actual else []
        want_discards = [dict(zip(("table_name", "column_name", "row_id", "value", "reason", "received_at"), d,
                                  strict=True)) for d in (expected.discards if expected else [])]
        assert _rows(got_discards) == _rows(want_discards), f"{schema}: discards differ"


FAST = "fast"  # the usual split: common narrow shapes through DuckDB, the rest through Python
SLOW = "slow"  # every row through the Python path
MIXED = "mixed"  # per feed, the most frequent shape through DuckDB and every other one through Python


def _force(wh: Warehouse, path: str) -> None:
    if path == SLOW:
        wh.planner = Planner(replace(wh.limits, fast_max_shapes=0))
    elif path == MIXED:
        wh.planner = Planner(replace(wh.limits, fast_max_shapes=1))


_examples = itertools.count(1)
_settings = settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("path", [FAST, SLOW, MIXED])
@_settings
@given(steps_=steps)
def test_duckdb_matches_the_reference(steps_: list[Any], path: str) -> None:
    wh = DuckDBWarehouse(Path(":memory:"), CAPS)
    _force(wh, path)
    ref = ReferenceWarehouse(wh.limits.max_identifier_bytes, CAPS.max_columns, CAPS.max_event_tables)
    schemas, consumers = {"a": "src_a", "b": "src_b"}, {"a": "warehouse-1", "b": "warehouse-2"}
    try:
        run(steps_, wh, ref, schemas, consumers)

        def query(sql: str) -> list[dict[str, Any]]:
            r = wh.query(sql, QueryLimits(600, 10**7))
            return [dict(zip(r["columns"], row, strict=True)) for row in r["rows"]]

        compare(query, ref, schemas)
    finally:
        wh.close()


@pytest.fixture(scope="module")
def pg_db() -> Iterator[str]:
    # One database for the module: hypothesis runs every example in one test call.
    with throwaway_pg_database("sluice_diff") as url:
        yield url


@pytest.mark.parametrize("path", [FAST, SLOW])
@_settings
@given(steps_=steps)
def test_postgres_matches_the_reference(pg_db: str, steps_: list[Any], path: str) -> None:
    n = next(_examples)
    wh = PostgresWarehouse(pg_db, CAPS)
    _force(wh, path)
    ref = ReferenceWarehouse(wh.limits.max_identifier_bytes, CAPS.max_columns, CAPS.max_event_tables)
    schemas, consumers = {"a": f"e{n}_a", "b": f"e{n}_b"}, {"a": f"c{n}-a", "b": f"c{n}-b"}
    try:
        run(steps_, wh, ref, schemas, consumers)
        with psycopg.connect(pg_db, options="-c TimeZone=UTC") as conn:
            def query(sql: str) -> list[dict[str, Any]]:
                cur = conn.execute(sql)
                names_ = [d.name for d in cur.description or []]
                return [dict(zip(names_, row, strict=True)) for row in cur.fetchall()]

            compare(query, ref, schemas)
            for schema in schemas.values():
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute("DELETE FROM _sluice.columns WHERE schema_name = ANY(%s)", [list(schemas.values())])
    finally:
        wh.close()
