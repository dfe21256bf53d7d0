"""The mapping core in-process: canonical shapes, the plan, the loader and both engines, and each bug of
issue 8 reproduced (every test here fails on sluice 0.1's loader).

Messages go through ingest's real `canonicalize` and into a real warehouse (DuckDB in memory, or a
throwaway PostgreSQL database); no server process.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from sluice.ingest.canonical import Arrival, Limits, canonicalize, iso_ms
from sluice.ingest.shape import shape_of
from sluice.log.base import Entry
from sluice.warehouse.duckdb_engine import DuckDBWarehouse
from sluice.warehouse.loader import Caps, Warehouse
from sluice.warehouse.postgres_engine import PostgresWarehouse
from sluice.warehouse.readonly import QueryLimits
from sluice.warehouse.types import ColType

_seq = itertools.count(1)


def entries(*messages: dict[str, Any], received_ms: int = 1_700_000_000_000) -> list[Entry]:
    """Messages as the log hands them to a loader (canonical body, shape digest, a fresh seq each)."""
    arrival = Arrival(received_ms, iso_ms(received_ms))
    out = []
    for m in messages:
        record = canonicalize({"messageId": str(uuid.uuid4()), **m}, None, arrival, Limits(32 * 1024, 100), 1)
        out.append(Entry(next(_seq), record.shape, record.received_ms, record.body))
    return out


def redriven(batch: list[Entry]) -> list[Entry]:
    """What DeliveryState hands back for a re-drive: the body, no shape."""
    return [Entry(e.seq, 0, e.received_ms, e.body) for e in batch]




Query = Callable[[str], list[dict[str, Any]]]


def _duckdb(tmp_path: Path, caps: Caps) -> tuple[Warehouse, Query]:
    wh = DuckDBWarehouse(tmp_path / "w.duckdb", caps)

    def query(sql: str) -> list[dict[str, Any]]:
        r = wh.query(sql, QueryLimits(60, 100_000))
        return [dict(zip(r["columns"], row, strict=True)) for row in r["rows"]]

    return wh, query


def _postgres(url: str, caps: Caps) -> tuple[Warehouse, Query]:
    wh = PostgresWarehouse(url, caps)

    def query(sql: str) -> list[dict[str, Any]]:
        with psycopg.connect(url) as conn:
            cur = conn.execute(sql)
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    return wh, query


@pytest.fixture(params=["duckdb", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., tuple[Warehouse, Query]]]:
    """A factory of (warehouse, query) on either engine; every warehouse it made is closed after the test."""
    made: list[Warehouse] = []

    def make(caps: Caps | None = None) -> tuple[Warehouse, Query]:
        caps = caps or Caps()
        if request.param == "duckdb":
            wh, q = _duckdb(tmp_path, caps)
        else:
            wh, q = _postgres(request.getfixturevalue("pg_database"), caps)
        made.append(wh)
        return wh, q

    yield make
    for wh in made:
        wh.close()


def columns(query: Query, schema: str, table: str) -> dict[str, str]:
    rows = query(
        "SELECT column_name, data_type FROM information_schema.columns"
        f" WHERE table_schema = '{schema}' AND table_name = '{table}' ORDER BY ordinal_position"
    )
    return {r["column_name"]: r["data_type"].lower() for r in rows}


def discards(query: Query, schema: str) -> list[tuple[str, str, str]]:
    return sorted((d["table_name"], d["column_name"], d["value"])
                  for d in query(f"SELECT table_name, column_name, value FROM {schema}.discards"))


# -- shapes ----------------------------------------------------------------------------------------


def test_a_shape_is_the_same_in_every_process_and_exact() -> None:
    a = {"type": "track", "event": "E", "properties": {"x": 1, "y": {"z": 2}}, "context": {"ip": "1"}}
    # The digest depends on structure only (not values), on key order and on object-vs-leaf.
    assert shape_of(a) == shape_of({**a, "properties": {"x": "other", "y": {"z": None}}})
    assert shape_of(a) != shape_of({**a, "properties": {"y": {"z": 2}, "x": 1}})
    assert shape_of(a) != shape_of({**a, "properties": {"x": 1, "y": 2}})
    assert shape_of(a) != shape_of({**a, "properties": {"x": 1, "y": {}}})
    assert shape_of(a) != shape_of({**a, "event": "F"})
    # What ingest stores is what the loader recomputes from the body (a re-drive has no shape).
    (e,) = entries({"userId": "u", **a})
    assert e.shape == shape_of(orjson.loads(e.body))
    # Fixed: not Python's hash() of a tuple, which changes with every process.
    assert shape_of({"type": "identify", "traits": {"a": 1}}).hex() == "ae6c51c4c488d78dc7d3234ac5a870b9"


# -- issue 8, item by item -----------------------------------------------------------------------


def test_redriven_dead_letters_load_into_their_own_tables(engine: Callable[..., tuple[Warehouse, Query]]) -> None:
    """0.1 planned a whole re-driven batch (shape 0) from its first entry: an Order Completed landed in
    email_opened and its `total` vanished without a discard."""
    wh, q = engine()
    batch = entries(
        {"type": "track", "userId": "u1", "event": "Email Opened", "properties": {"email_id": "e1"}},
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"total": 42.5}},
    )
    wh.skip_to("c", batch[-1].seq)  # dead-lettered: the cursor moved past them
    wh.load("c", "shop", redriven(batch), replay=True)
    assert [r["email_id"] for r in q("SELECT * FROM shop.email_opened")] == ["e1"]
    assert [r["total"] for r in q("SELECT * FROM shop.order_completed")] == [42.5]
    assert "total" not in columns(q, "shop", "email_opened")
    assert discards(q, "shop") == []


def test_column_types_do_not_leak_between_sources(engine: Callable[..., tuple[Warehouse, Query]]) -> None:
    """0.1's shared shape cache gave schema b's new column x the type of schema a's first value."""
    wh, q = engine()
    wh.load("a", "a", entries({"type": "track", "userId": "u", "event": "E",
                                "properties": {"x": "2024-01-01T00:00:00Z"}}))
    wh.load("b", "b", entries({"type": "track", "userId": "u", "event": "E", "properties": {"x": "hello"}}))
    assert columns(q, "a", "e")["x"].startswith("timestamp")
    assert columns(q, "b", "e")["x"] in ("varchar", "text")
    assert [r["x"] for r in q("SELECT x FROM b.e")] == ["hello"]
    assert discards(q, "b") == []


def test_colliding_keys_first_with_a_value_wins_and_the_rest_are_discarded(
    engine: Callable[..., tuple[Warehouse, Query]],
) -> None:
    wh, q = engine()
    keys = ["firstName", "first_name", "FirstName", "first-name", "FIRST NAME", "first.name", "first__name"]
    props = {k: f"v{i}" for i, k in enumerate(keys)}
    wh.load("c", "web", entries({"type": "track", "userId": "u", "event": "Signed Up", "properties": props}))
    assert [r["first_name"] for r in q("SELECT first_name FROM web.signed_up")] == ["v0"]
    assert discards(q, "web") == sorted(("signed_up", "first_name", f"v{i}") for i in range(1, 7))
    # A key with a null value does not count: the next one wins.
    wh.load("c", "web", entries({"type": "track", "userId": "u", "event": "Signed Up",
                                  "properties": {"firstName": None, "first_name": "w"}}))
    assert sorted(r["first_name"] for r in q("SELECT first_name FROM web.signed_up")) == ["v0", "w"]


def test_an_empty_object_is_no_value(engine: Callable[..., tuple[Warehouse, Query]]) -> None:
    """analytics.js sends context.campaign: {} on every page without UTM parameters."""
    wh, q = engine()
    wh.load("c", "web", entries({"type": "page", "anonymousId": "a", "name": "Home",
                                  "context": {"campaign": {}, "ip": "1.2.3.4"}}))
    assert "context_campaign" not in columns(q, "web", "pages")
    assert q("SELECT context_ip FROM web.pages") == [{"context_ip": "1.2.3.4"}]


def test_wide_events_are_capped_and_everything_over_the_cap_is_discarded(
    engine: Callable[..., tuple[Warehouse, Query]],
) -> None:
    wh, q = engine(Caps(max_columns=60, max_event_tables=1000))
    props = {f"p{i}": i for i in range(2000)}
    wh.load("c", "web", entries({"type": "track", "userId": "u", "event": "Wide", "properties": props}))
    cols = columns(q, "web", "wide")
    assert len(cols) == 60
    assert "p0" in cols and "p48" in cols and "p49" not in cols  # 9 standard + 2 load-time + 49
    rows = q("SELECT p0, p48 FROM web.wide")
    assert rows == [{"p0": 0, "p48": 48}]
    lost = discards(q, "web")
    assert len(lost) == 2000 - 49
    assert ("wide", "p49", "49") in lost and ("wide", "p1999", "1999") in lost


def test_event_tables_are_capped(engine: Callable[..., tuple[Warehouse, Query]]) -> None:
    wh, q = engine(Caps(max_columns=500, max_event_tables=3))
    batch = entries(*({"type": "track", "userId": "u", "event": f"Event {i}", "properties": {"n": i}}
                      for i in range(5)))
    wh.load("c", "web", batch)
    tables = {r["table_name"] for r in q("SELECT table_name FROM information_schema.tables WHERE table_schema = 'web'")}
    assert tables == {"tracks", "discards", "event_0", "event_1", "event_2"}
    assert len(q("SELECT id FROM web.tracks")) == 5  # every track still loads into tracks
    assert discards(q, "web") == [("event_3", "n", "3"), ("event_4", "n", "4")]


def test_replays_and_redrives_never_load_a_row_twice(engine: Callable[..., tuple[Warehouse, Query]]) -> None:
    wh, q = engine()
    first = entries(*({"type": "track", "userId": "u", "event": "E", "properties": {"n": i, "bad": "x" if i else 1}}
                      for i in range(5)))
    wh.load("c", "web", first)
    before = len(discards(q, "web"))
    wh.load("c", "web", first, replay=True)
    wh.load("c", "web", redriven(first), replay=True)
    assert len(q("SELECT id FROM web.e")) == 5
    assert len(q("SELECT id FROM web.tracks")) == 5
    assert len(discards(q, "web")) == before == 4


def test_loading_resumes_after_the_warehouse_is_reopened_from_its_stored_schema(tmp_path: Path) -> None:
    wh, q = _duckdb(tmp_path, Caps())
    wh.load("c", "web", entries({"type": "track", "userId": "u", "event": "E", "properties": {"n": 1}}))
    wh.close()
    wh, q = _duckdb(tmp_path, Caps())
    assert wh.schema.tables("web")["e"]["n"].value == "integer"
    wh.load("c", "web", entries({"type": "track", "userId": "u", "event": "E", "properties": {"n": "x"}}))
    assert sorted(str(r["n"]) for r in q("SELECT n FROM web.e")) == ["1", "None"]
    assert discards(q, "web") == [("e", "n", "x")]
    wh.close()


def test_one_source_loads_while_another_holds_a_long_transaction(tmp_path: Path) -> None:
    """Each source has its own connection: a transaction left open by one does not block the other."""
    wh, q = _duckdb(tmp_path, Caps())
    stuck = wh.session("warehouse-1")
    stuck.begin()
    stuck.create_table("slow", "t", [("id", ColType.VARCHAR)], primary_key=False)
    wh.load("warehouse-2", "fast", entries({"type": "track", "userId": "u", "event": "E"}))
    assert len(q("SELECT id FROM fast.tracks")) == 1
    stuck.rollback()
    wh.close()


# -- a replay interleaved with live loading (the delivery worker) ---------------------------------


def test_a_replay_past_the_live_cursor_never_loads_a_row_twice(tmp_path: Path) -> None:
    """0.1: `sluice replay --since 5s` during traffic loaded 1,160 rows for 1,000 events. The replay
    reached past the live cursor; live loading then loaded the same entries again."""
    import asyncio

    from sluice.catalog.models import Source
    from sluice.delivery.state import DeliveryState
    from sluice.delivery.worker import Worker
    from sluice.destinations.warehouse import WarehouseTarget
    from sluice.log.base import Record
    from sluice.log.sqlite import SqliteLog
    from sluice.metrics import Metrics
    from sluice.settings import Settings

    log = SqliteLog(tmp_path / "log.db", 3600)
    state = DeliveryState(tmp_path / "log.db", log.writer)
    wh, q = _duckdb(tmp_path, Caps())
    source = Source(1, "http", "Web", "web", "key", None, "")
    target = WarehouseTarget.embedded(wh, source)
    target.bind_log(log)
    batch = entries(*({"type": "track", "userId": "u", "event": "E", "properties": {"n": i}} for i in range(100)))
    records = [Record(1, orjson.loads(e.body)["messageId"], e.received_ms, e.shape, e.body) for e in batch]  # type: ignore[arg-type]
    assert all(asyncio.run(log.append(records)))
    worker = Worker(log, state, source, target, Settings(data_dir=tmp_path, load_batch_max_events=50), Metrics())
    assert worker._step()  # live loading takes the first 50
    state.add_replay(target.consumer, 0, log.head())  # a replay of everything, requested now
    while worker._replay() or worker._step():
        pass
    counts = q("SELECT count(*) AS n, count(DISTINCT id) AS d FROM web.e")
    assert counts == [{"n": 100, "d": 100}]
    assert state.pending_replays(target.consumer) == 0
    wh.close()
    log.close()
