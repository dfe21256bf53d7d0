"""What the loaded warehouse looks like: Segment's tables and columns, naming, types, discards, hostile names.

Events go in over HTTP to a real `sluice serve`; the tables are read back with SQL. One server serves the
module; each test has its own source, so its own schema.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from conftest import Sluice, poll, q, try_query

_schemas = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sluice]:
    s = Sluice(tmp_path_factory.mktemp("warehouse") / "data")
    s.start()
    yield s
    s.stop()


@pytest.fixture
def src(server: Sluice) -> dict[str, Any]:
    return server.create_source("http", f"wh_{next(_schemas)}")


# -- helpers --------------------------------------------------------------------------------------


def send(server: Sluice, src: dict[str, Any], path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{server.url}/v1/{path}", content=orjson.dumps(body), auth=(src["write_key"], ""), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def track(server: Sluice, src: dict[str, Any], event: str, properties: dict[str, Any], **extra: Any) -> str:
    mid = extra.pop("messageId", None) or str(uuid.uuid4())
    send(server, src, "track", {"userId": "u1", "event": event, "properties": properties, "messageId": mid, **extra})
    return mid








def loaded(server: Sluice, src: dict[str, Any], *message_ids: str, timeout: float = 15) -> None:
    """Wait until these track messages are in <schema>.tracks."""
    ids = ", ".join(f"'{m}'" for m in message_ids)
    poll(server, f"select id from {src['schema']}.tracks where id in ({ids})", len(message_ids), timeout)


def columns(server: Sluice, schema: str, table: str) -> dict[str, str]:
    """column -> DuckDB type, in table order."""
    rows = q(
        server,
        "select column_name, data_type from information_schema.columns"
        f" where table_schema = '{schema}' and table_name = '{table.replace(chr(39), chr(39) * 2)}'"
        " order by ordinal_position",
    )
    return {r["column_name"]: r["data_type"] for r in rows}


def tables(server: Sluice, schema: str) -> set[str]:
    rows = q(server, f"select table_name from information_schema.tables where table_schema = '{schema}'")
    return {r["table_name"] for r in rows}


def discards(server: Sluice, schema: str) -> list[dict[str, Any]]:
    return q(server, f"select table_name, column_name, row_id, value, reason from {schema}.discards order by value")


STANDARD = ["id", "anonymous_id", "user_id", "received_at", "sent_at", "timestamp", "original_timestamp"]


# -- flattening and naming ------------------------------------------------------------------------


def test_flattening_and_snake_case_naming(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    context = {
        "ip": "10.1.2.3",
        "userAgent": "Mozilla/5.0",
        "library": {"name": "analytics.js", "version": "4.1.0"},
        "page": {"url": "https://x.example/a", "path": "/a"},
        "traits": {"email": "jane@x.example"},
        "campaign": {"name": "Spring", "source": "drip"},
    }
    properties = {
        "orderId": "o-1",
        "address": {"street": "1 Main St", "geo": {"lat": 51.5}},
        "products": [{"sku": "a"}, {"sku": "b"}],
        "tags": ["x", "y"],
        "accountType": "pro",
        "sampleText": "s1",
        "SAMPLE 2 TEXT": "s2",
        "___$$Base64Encode": "s3",
        "CStringRef": "s4",
        "something.com": "s5",
        "f_pX9": "s6",
        "•¶§ƒ˚foo˙∆˚¬": "s7",
        "already_snake_case": "s8",
    }
    mid = track(server, src, "Email Link Clicked", properties, context=context)
    loaded(server, src, mid)
    row = q(server, f"select * from {schema}.email_link_clicked")[0]
    expected = {
        "id": mid,
        "user_id": "u1",
        "event": "email_link_clicked",
        "event_text": "Email Link Clicked",
        "context_ip": "10.1.2.3",
        "context_user_agent": "Mozilla/5.0",
        "context_library_name": "analytics.js",
        "context_library_version": "4.1.0",
        "context_page_url": "https://x.example/a",
        "context_page_path": "/a",
        "context_traits_email": "jane@x.example",
        "context_campaign_name": "Spring",
        "context_campaign_source": "drip",
        "order_id": "o-1",
        "address_street": "1 Main St",
        "address_geo_lat": 51.5,
        "account_type": "pro",
        "sample_text": "s1",
        "sample_2_text": "s2",
        "base64_encode": "s3",
        "cstring_ref": "s4",
        "something_com": "s5",
        "f_p_x9": "s6",
        "foo": "s7",
        "already_snake_case": "s8",
    }
    assert {k: row.get(k) for k in expected} == expected
    # Arrays are stored as their JSON text.
    assert orjson.loads(row["products"]) == [{"sku": "a"}, {"sku": "b"}]
    assert orjson.loads(row["tags"]) == ["x", "y"]
    cols = columns(server, schema, "email_link_clicked")
    assert cols["products"] == "VARCHAR" and cols["tags"] == "VARCHAR"
    assert "loaded_at" in cols and row["loaded_at"] is not None
    # No un-flattened leftovers or prefixed properties.
    assert not {"address", "context", "properties", "properties_order_id", "context_library"} & set(cols)
    # tracks: standard and context columns only, no properties.
    tcols = columns(server, schema, "tracks")
    assert [c for c in STANDARD if c in tcols] == STANDARD
    assert {"event", "event_text", "context_ip", "context_library_name", "loaded_at"} <= set(tcols)
    assert not {"order_id", "address_street", "tags"} & set(tcols)
    trow = q(server, f"select event, event_text, context_ip from {schema}.tracks where id = '{mid}'")
    assert trow == [{"event": "email_link_clicked", "event_text": "Email Link Clicked", "context_ip": "10.1.2.3"}]


def test_event_table_names_and_reserved_or_digit_prefixes(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    events = {
        "Email Marked as Spam": "email_marked_as_spam",
        "accountType": "account_type",
        "2FA Enabled": "_2fa_enabled",
        "101 Account Update": "_101_account_update",
        "Open": "_open",
        "select": "_select",
        "Users": "_users",  # never the users table
        "Tracks": "_tracks",
    }
    props = {"open": 1, "select": 2, "from": 3, "2fa": 4, "101 things": 5, "order": 6, "user": 7, "plain": 8}
    mids = [track(server, src, event, props) for event in events]
    loaded(server, src, *mids)
    assert set(events.values()) <= tables(server, schema)
    assert "users" not in tables(server, schema)
    for event, table in events.items():
        rows = q(server, f'select event, event_text from {schema}."{table}"')
        assert rows == [{"event": table, "event_text": event}], (event, rows)
    # tracks.event is the join key to the event tables.
    joined = q(server, f"select t.event from {schema}.tracks t join {schema}._open o on o.id = t.id")
    assert joined == [{"event": "_open"}]
    assert q(server, f"select count(*) as n from {schema}.tracks") == [{"n": len(events)}]
    row = q(server, f"select * from {schema}._open")[0]
    expected = {"_open": 1, "_select": 2, "_from": 3, "_2fa": 4, "_101_things": 5, "_order": 6, "_user": 7, "plain": 8}
    assert {k: row.get(k) for k in expected} == expected


def test_every_column_and_table_can_be_used_unquoted(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    words = ["at", "by", "semi", "anti", "asof", "glob", "positional", "unpack", "open", "order", "user", "year"]
    mids = [track(server, src, word.title(), {w: i for i, w in enumerate(words)}) for word in words]
    loaded(server, src, *mids)
    failures = []
    for table in sorted(tables(server, schema)):
        if try_query(server, f"select count(*) from {schema}.{table}") is None:
            failures.append(table)
    for col in columns(server, schema, "_open"):
        if try_query(server, f"select {col} from {schema}._open where {col} is not null") is None:
            failures.append(f"_open.{col}")
    assert failures == []


# -- types ----------------------------------------------------------------------------------------


def test_first_value_sets_each_of_the_five_types_and_later_values_are_cast(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    first = track(
        server,
        src,
        "Typed",
        {"i": 7, "f": 1.5, "b": True, "t": "2024-01-02T03:04:05Z", "v": "text", "t2": "2024-05-06 07:08:09.123+02:00"},
    )
    loaded(server, src, first)
    cols = columns(server, schema, "typed")
    assert cols["i"] == "BIGINT"
    assert cols["f"] == "DOUBLE"
    assert cols["b"] == "BOOLEAN"
    assert cols["t"].startswith("TIMESTAMP") and cols["t2"].startswith("TIMESTAMP")
    assert cols["v"] == "VARCHAR"
    # Later values of other JSON types are cast to the column's type where they can be.
    later = track(
        server, src, "Typed", {"i": "42", "f": 2, "b": "false", "t": "2024-02-01T10:00:00+02:00", "v": 5, "t2": None}
    )
    loaded(server, src, later)
    assert columns(server, schema, "typed") == cols  # never retyped
    rows = {r["id"]: r for r in q(server, f"select id, i, f, b, t, v, t2 from {schema}.typed")}
    assert rows[first]["i"] == 7 and rows[first]["f"] == 1.5 and rows[first]["b"] is True
    assert rows[first]["t"].startswith("2024-01-02T03:04:05") and rows[first]["v"] == "text"
    assert rows[later] == {
        "id": later, "i": 42, "f": 2.0, "b": False, "t": rows[later]["t"], "v": "5", "t2": None,
    }
    assert rows[later]["t"].replace("+00:00", "Z").startswith("2024-02-01T08:00:00")
    assert discards(server, schema) == []


def test_integers_beyond_int64_and_floats(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    mid = track(server, src, "Numbers", {"big": 2**63 + 10, "neg": -5, "zero_float": 0.0, "exp": 1e300})
    loaded(server, src, mid)
    cols = columns(server, schema, "numbers")
    assert cols["neg"] == "BIGINT"
    assert cols["big"] == "DOUBLE" and cols["zero_float"] == "DOUBLE" and cols["exp"] == "DOUBLE"
    row = q(server, f"select big, neg, zero_float, exp from {schema}.numbers")[0]
    assert row == {"big": float(2**63 + 10), "neg": -5, "zero_float": 0.0, "exp": 1e300}


def test_uncastable_value_loads_null_and_goes_to_discards(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    first = track(server, src, "Casting", {"i": 1, "f": 1.5, "b": True, "t": "2024-01-01T00:00:00Z", "keep": "k0"})
    loaded(server, src, first)
    # (column, value sent, its text in discards); 1.5 is not silently rounded into the integer column.
    bad = [("i", "abc", "abc"), ("i", 1.5, "1.5"), ("f", "not a number", "not a number"), ("b", "maybe", "maybe"),
           ("t", "not a time", "not a time"), ("t", 17, "17")]
    mids = {n: track(server, src, "Casting", {col: value, "keep": f"k{n}"}) for n, (col, value, _) in enumerate(bad)}
    loaded(server, src, *mids.values())
    rows = {r["id"]: r for r in q(server, f"select * from {schema}.casting")}
    assert len(rows) == 1 + len(bad)
    for n, (col, _, _) in enumerate(bad):
        row = rows[mids[n]]
        assert row[col] is None, (col, row)
        assert row["keep"] == f"k{n}" and row["user_id"] == "u1"  # the rest of the row is there
    got = {d["row_id"]: d for d in discards(server, schema)}
    assert len(got) == len(bad), got
    for n, (col, _, text) in enumerate(bad):
        d = got[mids[n]]
        assert (d["table_name"], d["column_name"], d["value"]) == ("casting", col, text), d
        assert isinstance(d["reason"], str) and d["reason"], d
    discard_cols = columns(server, schema, "discards")
    assert list(discard_cols)[:5] == ["table_name", "column_name", "row_id", "value", "reason"]


def test_new_properties_add_columns_and_null_values_add_none(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    first = track(server, src, "Evolving", {"a": 1, "later": None})
    loaded(server, src, first)
    assert "later" not in columns(server, schema, "evolving")  # a column is created for a non-null value only
    second = track(server, src, "Evolving", {"a": 2, "b": "new", "later": "now", "nested": {"deep": True}})
    loaded(server, src, second)
    cols = columns(server, schema, "evolving")
    assert {"a": "BIGINT", "b": "VARCHAR", "later": "VARCHAR", "nested_deep": "BOOLEAN"}.items() <= cols.items()
    assert list(cols)[-1] != "id"
    rows = {r["id"]: r for r in q(server, f"select id, a, b, later, nested_deep from {schema}.evolving")}
    assert rows[first] == {"id": first, "a": 1, "b": None, "later": None, "nested_deep": None}
    assert rows[second] == {"id": second, "a": 2, "b": "new", "later": "now", "nested_deep": True}
    # New tables as new events appear.
    third = track(server, src, "Brand New Event", {"x": 1})
    loaded(server, src, third)
    assert "brand_new_event" in tables(server, schema)


def test_a_message_loads_the_same_whatever_else_is_in_its_batch(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    first = track(server, src, "Shape", {"v": "plain"})
    loaded(server, src, first)
    alone = track(server, src, "Shape", {"v": {"k": 1}})
    loaded(server, src, alone)
    send(server, src, "batch", {"batch": [
        {"type": "track", "userId": "u1", "event": "Shape", "properties": {"v": {"k": 2}}, "messageId": "mixed"},
        {"type": "track", "userId": "u1", "event": "Shape", "properties": {"v": "plain again"}, "messageId": "leaf"},
    ]})
    loaded(server, src, "mixed", "leaf")
    rows = {r["id"]: r for r in q(server, f"select id, v, v_k from {schema}.shape")}
    assert (rows[alone]["v"], rows[alone]["v_k"]) == (None, 1)
    assert (rows["leaf"]["v"], rows["leaf"]["v_k"]) == ("plain again", None)
    assert (rows["mixed"]["v"], rows["mixed"]["v_k"]) == (None, 2)


# -- users, identifies, the other tables ----------------------------------------------------------


def test_users_upsert_one_row_per_user_latest_non_null_traits(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]

    def identify(user: str | None, traits: dict[str, Any], anonymous: str | None = None) -> str:
        mid = str(uuid.uuid4())
        body: dict[str, Any] = {"traits": traits, "messageId": mid}
        if user:
            body["userId"] = user
        if anonymous:
            body["anonymousId"] = anonymous
        send(server, src, "identify", body)
        poll(server, f"select id from {schema}.identifies where id = '{mid}'", 1)
        return mid

    identify("u1", {"plan": "free", "logins": 1, "email": "old@x.example"})
    identify("u1", {"plan": "pro", "logins": None})
    identify("u1", {"company": {"name": "Acme"}})  # a new trait adds a column to users
    identify(None, {"plan": "anon-plan"}, anonymous="anon-1")
    # Several identifies of one user in one batch: the last one wins.
    r = send(
        server,
        src,
        "batch",
        {"batch": [
            {"type": "identify", "userId": "u2", "traits": {"plan": "a", "seats": 1}, "messageId": "b1"},
            {"type": "identify", "userId": "u2", "traits": {"plan": "b"}, "messageId": "b2"},
            {"type": "identify", "userId": "u2", "traits": {"plan": "c", "seats": None}, "messageId": "b3"},
        ]},
    )
    assert r["success"] is True
    poll(server, f"select id from {schema}.identifies where id = 'b3'", 1)
    users = q(server, f"select * from {schema}.users order by id")
    assert [u["id"] for u in users] == ["u1", "u2"]  # one row per user_id, none for the anonymous identify
    u1, u2 = users
    assert (u1["plan"], u1["logins"], u1["email"], u1["company_name"]) == ("pro", 1, "old@x.example", "Acme")
    assert (u2["plan"], u2["seats"]) == ("c", 1)
    ucols = columns(server, schema, "users")
    assert "anonymous_id" not in ucols and "user_id" not in ucols
    assert ucols["logins"] == "BIGINT"
    assert q(server, f"select count(*) as n from {schema}.identifies") == [{"n": 7}]
    icols = columns(server, schema, "identifies")
    assert {"id", "user_id", "anonymous_id", "plan", "logins", "email", "company_name"} <= set(icols)


def test_pages_screens_groups_aliases(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    send(server, src, "page", {"userId": "u1", "name": "Pricing", "category": "Docs", "messageId": "p1",
                               "properties": {"path": "/pricing", "referrer": "https://g.example"}})
    send(server, src, "screen", {"anonymousId": "a1", "name": "Home", "messageId": "s1", "properties": {"tab": 2}})
    send(server, src, "group", {"userId": "u1", "groupId": "g1", "messageId": "g1m",
                                "traits": {"name": "Acme", "employees": 50}})
    send(server, src, "alias", {"userId": "u1", "previousId": "a1", "messageId": "al1"})
    for table in ("pages", "screens", "groups", "aliases"):
        poll(server, f"select id from {schema}.{table}", 1)
    assert q(server, f"select id, user_id, name, category, path, referrer from {schema}.pages") == [
        {"id": "p1", "user_id": "u1", "name": "Pricing", "category": "Docs", "path": "/pricing",
         "referrer": "https://g.example"}
    ]
    assert q(server, f"select id, anonymous_id, user_id, name, tab from {schema}.screens") == [
        {"id": "s1", "anonymous_id": "a1", "user_id": None, "name": "Home", "tab": 2}
    ]
    assert q(server, f"select id, user_id, group_id, name, employees from {schema}.groups") == [
        {"id": "g1m", "user_id": "u1", "group_id": "g1", "name": "Acme", "employees": 50}
    ]
    assert q(server, f"select id, user_id, previous_id from {schema}.aliases") == [
        {"id": "al1", "user_id": "u1", "previous_id": "a1"}
    ]
    for table in ("pages", "screens", "groups", "aliases"):
        cols = columns(server, schema, table)
        assert [c for c in STANDARD if c in cols] == STANDARD, table
        assert "loaded_at" in cols


# -- collisions and hostile names -----------------------------------------------------------------


def test_properties_named_like_standard_columns_never_overwrite_them(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    evil = {
        "id": "evil-id",
        "event": "evil_event",
        "event_text": "Evil",
        "received_at": "1999-01-01T00:00:00Z",
        "receivedAt": "1999-01-02T00:00:00Z",
        "user_id": "evil-user",
        "userId": "evil-user-2",
        "anonymous_id": "evil-anon",
        "timestamp": "1999-01-03T00:00:00Z",
        "sent_at": "1999-01-04T00:00:00Z",
        "original_timestamp": "1999-01-05T00:00:00Z",
        "ok": "fine",
    }
    mid = track(server, src, "Collide", evil, messageId="real-id", timestamp="2024-06-01T00:00:00Z")
    ident = str(uuid.uuid4())
    send(server, src, "identify", {"userId": "real-user", "messageId": ident,
                                   "traits": {"id": "evil-id", "user_id": "evil-user", "received_at": "1999-01-01"}})
    send(server, src, "group", {"userId": "u1", "groupId": "real-group", "messageId": "grp",
                                "traits": {"group_id": "evil-group", "id": "evil-id"}})
    loaded(server, src, mid)
    poll(server, f"select id from {schema}.identifies", 1)
    poll(server, f"select id from {schema}.groups", 1)
    row = q(server, f"select * from {schema}.collide")[0]
    assert row["id"] == "real-id"
    assert row["event"] == "collide" and row["event_text"] == "Collide"
    assert row["user_id"] == "u1" and row["anonymous_id"] is None
    assert row["timestamp"].startswith("2024-06-01") and row["original_timestamp"].startswith("2024-06-01")
    assert row["received_at"] > "2000" and row["sent_at"] is None
    assert row["loaded_at"] > "2000"
    assert row["ok"] == "fine"
    cols = list(columns(server, schema, "collide"))
    assert len(cols) == len(set(cols))
    trow = q(server, f"select id, event, user_id from {schema}.tracks")[0]
    assert trow == {"id": "real-id", "event": "collide", "user_id": "u1"}
    assert q(server, f"select id, user_id from {schema}.identifies") == [{"id": ident, "user_id": "real-user"}]
    assert q(server, f"select id from {schema}.users") == [{"id": "real-user"}]
    assert q(server, f"select id, group_id from {schema}.groups") == [{"id": "grp", "group_id": "real-group"}]
    # The values are not lost: they are recorded as discards against the row.
    lost = {d["value"] for d in discards(server, schema) if d["row_id"] == "real-id"}
    assert {"evil-id", "evil_event", "Evil", "evil-user", "evil-anon"} <= lost


def test_property_named_loaded_at_does_not_block_loading(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    mid = track(server, src, "Has Loaded At", {"loaded_at": "1999-01-06T00:00:00Z", "ok": 1})
    after = track(server, src, "After Loaded At", {"ok": 2})
    loaded(server, src, mid, after)
    row = q(server, f"select loaded_at, ok from {schema}.has_loaded_at")[0]
    assert row["ok"] == 1 and row["loaded_at"] > "2000"


HOSTILE_EVENTS = [
    '"; DROP TABLE web.tracks; --',
    "Robert'); DROP TABLE tracks;--",
    "select * from tracks",
    "table",
    "x" * 10_000,
    "Ünïcödé Évent",
    "日本語のイベント",
    "🎉🔥",
    'quote"in"side',
    "back\\slash\\",
    "new\nline\ttab",
    "$1; COPY (SELECT 1) TO '/tmp/pwn'",
    "%s%s%n",
]


def test_hostile_event_names_load_without_breaking_anything(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    mids = [track(server, src, event, {"n": i}) for i, event in enumerate(HOSTILE_EVENTS)]
    loaded(server, src, *mids)
    assert q(server, f"select count(*) as n from {schema}.tracks") == [{"n": len(HOSTILE_EVENTS)}]
    texts = {r["event_text"] for r in q(server, f"select event_text from {schema}.tracks")}
    assert texts == set(HOSTILE_EVENTS)
    names = tables(server, schema)
    assert {"drop_table_web_tracks", "robert_drop_table_tracks", "select_from_tracks", "_table"} <= names
    for name in names:
        assert len(name.encode()) <= 255
        assert name.isascii()
    long = [n for n in names if n.startswith("x" * 100)]
    assert len(long) == 1
    # Every event's row is in its own table, found by joining on tracks.event.
    for mid in mids:
        event_table = q(server, f"select event from {schema}.tracks where id = '{mid}'")[0]["event"]
        assert event_table in names
        escaped = event_table.replace('"', '""')
        assert q(server, f'select id from {schema}."{escaped}" where id = \'{mid}\'') == [{"id": mid}]
    # The rest of the warehouse is intact.
    assert "_sluice" in {r["schema_name"] for r in q(server, "select schema_name from information_schema.schemata")}


def test_hostile_property_names_load_without_breaking_anything(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    props = {
        'quo"te': "v1",
        "apo'strophe": "v2",
        "semi; DROP TABLE web.tracks; --": "v3",
        "select": "v4",
        "y" * 10_000: "v5",
        "naïve": "v6",
        "emoji🎉name": "v7",
        "back\\slash": "v8",
        "new\nline": "v9",
        "percent%s": "v10",
        "slash/name": "v11",
        "tilde~0": "v12",
        "日本語": "v13",
        "🎉": "v14",
    }
    mid = track(server, src, "Hostile Props", props)
    after = track(server, src, "After", {"ok": True})
    loaded(server, src, mid, after)
    row = q(server, f"select * from {schema}.hostile_props")[0]
    expected = {
        "quo_te": "v1",
        "apo_strophe": "v2",
        "semi_drop_table_web_tracks": "v3",
        "_select": "v4",
        "na_ve": "v6",
        "emoji_name": "v7",
        "back_slash": "v8",
        "new_line": "v9",
        "percent_s": "v10",
        "slash_name": "v11",
        "tilde_0": "v12",
    }
    assert {k: row.get(k) for k in expected} == expected
    long = [k for k in row if k.startswith("y" * 100)]
    assert len(long) == 1 and len(long[0]) <= 255 and row[long[0]] == "v5"
    # Names with no ASCII letter or digit cannot name a column; their values are kept in discards.
    kept = {d["value"] for d in discards(server, schema) if d["row_id"] == mid}
    assert {"v13", "v14"} <= kept
    assert q(server, f"select count(*) as n from {schema}.tracks") == [{"n": 2}]


def test_nul_anywhere_is_refused_at_ingest_and_blocks_nothing(server: Sluice, src: dict[str, Any]) -> None:
    schema = src["schema"]
    for props in ({"bad\u0000key": 1, "fine": 2}, {"fine": "bad\u0000value"}):
        r = httpx.post(f"{server.url}/v1/track", content=orjson.dumps(
            {"userId": "u1", "event": "Nul Key", "properties": props}), auth=(src["write_key"], ""))
        assert r.status_code == 400 and "NUL" in r.json()["error"], r.text
    after = track(server, src, "After Nul", {"ok": True})
    loaded(server, src, after, timeout=6)
    assert q(server, f"select count(*) as n from {schema}.tracks") == [{"n": 1}]


def test_hostile_schema_names_are_refused(server: Sluice) -> None:
    for bad in ('web"; DROP SCHEMA _sluice; --', "Web", "x" * 100, "ü"):
        r = server.cli("sources", "create", "http", "--name", "Bad", "--schema", bad, "--json", check=False)
        assert r.returncode != 0, bad
        assert "schema" in r.stderr.lower() and "Traceback" not in r.stderr, r.stderr
    ok = server.create_source("http", "3doctors")
    assert ok["schema"] == "_3doctors"
    r = httpx.post(f"{server.url}/v1/track", json={"userId": "u", "event": "E"}, auth=(ok["write_key"], ""))
    assert r.status_code == 200
    poll(server, "select id from _3doctors.tracks", 1)
