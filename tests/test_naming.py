"""Warehouse naming: go-snakecase parity, prefixes, truncation, and quoting through DuckDB."""

from __future__ import annotations

import json
import random
import re
import time

import duckdb
import pytest

from sluice.warehouse.naming import (
    RESERVED_WORDS,
    SCHEMA_NAME_RE,
    STANDARD_TABLES,
    column_name,
    json_pointer,
    quote_ident,
    schema_name,
    snake_case,
    sql_string,
    table_name,
    truncate_identifier,
)

PG_MAX = 63  # PostgreSQL's identifier limit in bytes
IDENT = re.compile(r"[a-z0-9_]+")
SNAKE = re.compile(r"(?:[a-z0-9]+(?:_[a-z0-9]+)*)?")

# The brief's vectors, then the rest of go-snakecase's snake_test.go.
SNAKE_VECTORS = [
    ("sampleText", "sample_text"),
    ("SAMPLE 2 TEXT", "sample_2_text"),
    ("___$$Base64Encode", "base64_encode"),
    ("CStringRef", "cstring_ref"),
    ("something.com", "something_com"),
    ("2FA Enabled", "2fa_enabled"),
    ("f_pX9", "f_p_x9"),
    ("•¶§ƒ˚foo˙∆˚¬", "foo"),
    ("accountType", "account_type"),
    ("Email Marked as Spam", "email_marked_as_spam"),
    ("@49L0S145_¬fwHƒ0TSLNVp", "49l0s145_fw_h_0tslnvp"),
    ("lk0B@bFmjrLQ_Z6YL", "lk0_b_b_fmjr_lq_z6yl"),
    ("samPLE text", "sam_ple_text"),
    ("sample text", "sample_text"),
    ("sample-text", "sample_text"),
    ("sample_text", "sample_text"),
    ("sample___text", "sample_text"),
    ("inviteYourCustomersAddInvites", "invite_your_customers_add_invites"),
    ("sample 2 Text", "sample_2_text"),
    ("   sample   2    Text   ", "sample_2_text"),
    ("   $#$sample   2    Text   ", "sample_2_text"),
    ("FOO:BAR$BAZ", "foo_bar_baz"),
    ("FOO#BAR#BAZ", "foo_bar_baz"),
    ("$something%", "something"),
    ("5test", "5test"),
    ("test5", "test5"),
    ("THE5r", "the5r"),
    ("5TEst", "5test"),
    ("_5TEst", "5test"),
    ("@%#&5TEst", "5test"),
    ("edf_6N", "edf_6n"),
    ("p_z9Rg", "p_z9_rg"),
    ("Enabled 2FA", "enabled_2fa"),
    ("", ""),
]

HOSTILE = [
    '"; DROP TABLE x; --',
    "'; DROP TABLE x; --",
    'a"b',
    "a'b",
    '""',
    "''",
    "x;y",
    "select",
    "SELECT * FROM users",
    "Users",
    "tracks",
    "back\\slash\\",
    "new\nline\ttab",
    "ünïcödé naïve",
    "日本語のイベント",
    "🚀 launched 🎉",
    "ẞ",
    "-- comment",
    "/* comment */",
    "$1",
    "%s",
    "a" * 10_000,
    "Ab" * 5_000,
]


def _go_snakecase(s: str) -> str:
    """Line-by-line port of go-snakecase v1.2.0 snake.go, over UTF-8 bytes like Go."""
    b = s.encode()
    n = len(b)

    def lower(c: int) -> bool:
        return 97 <= c <= 122

    def upper(c: int) -> bool:
        return 65 <= c <= 90

    def digit(c: int) -> bool:
        return 48 <= c <= 57

    idx = 0
    has_lower = has_underscore = lower_since_underscore = False
    while idx < n:
        c = b[idx]
        if lower(c):
            has_lower = True
            if has_underscore:
                lower_since_underscore = True
        elif digit(c):
            pass
        elif c == 95 and 0 < idx < n - 1 and (lower(b[idx + 1]) or digit(b[idx + 1])):
            has_underscore = True
            lower_since_underscore = False
        else:
            break
        idx += 1
    if idx == n:
        return s
    out = bytearray(b[:idx])
    if upper(b[idx]) and (not has_lower or (has_underscore and not lower_since_underscore)):
        while idx < n and (upper(b[idx]) or digit(b[idx])):
            out.append(b[idx] + 32 if upper(b[idx]) else b[idx])
            idx += 1
        while idx < n and (lower(b[idx]) or digit(b[idx])):
            out.append(b[idx])
            idx += 1
    while idx < n:
        if not (lower(b[idx]) or upper(b[idx]) or digit(b[idx])):
            idx += 1
            continue
        if out:
            out.append(95)
        while idx < n and (upper(b[idx]) or digit(b[idx])):
            out.append(b[idx] + 32 if upper(b[idx]) else b[idx])
            idx += 1
        while idx < n and (lower(b[idx]) or digit(b[idx])):
            out.append(b[idx])
            idx += 1
    return out.decode()


# --- snake_case -------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), SNAKE_VECTORS)
def test_snake_case_vectors(raw: str, expected: str) -> None:
    assert snake_case(raw) == expected


def test_go_port_agrees_with_vectors() -> None:
    # Guards the oracle used below: it must itself reproduce go-snakecase's tests.
    for raw, expected in SNAKE_VECTORS:
        assert _go_snakecase(raw) == expected, raw


def test_snake_case_matches_go_on_random_names() -> None:
    rng = random.Random(20240501)
    alphabet = "aAbBzZ0959_ -.$é•ẞ\x00"
    for _ in range(20_000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert snake_case(raw) == _go_snakecase(raw), repr(raw)


@pytest.mark.parametrize("raw", [*HOSTILE, "\x00", "a\x00b", "_", "__a__", "Ⅻ", "²3"])
def test_snake_case_output_is_ascii_snake(raw: str) -> None:
    out = snake_case(raw)
    assert SNAKE.fullmatch(out), out[:80]


def test_snake_case_drops_non_ascii_letters_and_digits() -> None:
    # Only ASCII counts as a word character: Unicode digits and letters are separators.
    assert snake_case("²3ünï") == "3_n"
    assert snake_case("Ⅻ") == ""


def test_snake_case_is_linear_on_huge_names() -> None:
    huge = "Ab" * 500_000  # 1 MB, one word boundary every two characters
    start = time.perf_counter()
    out = snake_case(huge)
    other = snake_case("x." * 500_000)
    elapsed = time.perf_counter() - start
    assert out == "_".join(["ab"] * 500_000)
    assert other == "_".join(["x"] * 500_000)
    assert snake_case("_" * 1_000_000) == ""
    assert elapsed < 5, f"snake_case took {elapsed:.1f}s on 2 MB of names"


# --- reserved words ---------------------------------------------------------------------


def test_reserved_words_cover_each_source_list() -> None:
    assert {"open", "timestamp", "user", "aes128", "delta32k", "without"} <= RESERVED_WORDS  # Redshift
    assert {"tablesample", "current_catalog", "returning", "system_user"} <= RESERVED_WORDS  # PostgreSQL
    assert {"qualify", "lambda", "pivot_wider", "summarize"} <= RESERVED_WORDS  # DuckDB
    assert all(word == word.lower() for word in RESERVED_WORDS)


def test_reserved_words_cover_installed_duckdb() -> None:
    rows = duckdb.connect().execute(
        "select keyword_name from duckdb_keywords() where keyword_category = 'reserved'"
    )
    live = {name for (name,) in rows.fetchall()}
    assert live, "duckdb_keywords() returned no reserved keywords"
    assert live <= RESERVED_WORDS, sorted(live - RESERVED_WORDS)


def test_ordinary_names_are_not_reserved() -> None:
    # Standard Segment columns and common traits must keep their plain names.
    for word in ("id", "event", "event_text", "anonymous_id", "user_id", "email", "name", "received_at"):
        assert word not in RESERVED_WORDS
        assert column_name((word,), PG_MAX) == word


def test_duckdb_rejects_bare_reserved_words_but_accepts_prefixed_ones() -> None:
    con = duckdb.connect()
    with pytest.raises(duckdb.ParserException):
        con.execute("create table t (select int)")
    columns = [column_name((word,), PG_MAX) for word in sorted(RESERVED_WORDS)]
    assert all(col == "_" + word for col, word in zip(columns, sorted(RESERVED_WORDS), strict=True))
    # Every prefixed reserved word works unquoted, as a column and as a table.
    con.execute(f"create table t ({', '.join(f'{c} int' for c in columns)})")
    assert len(con.execute("describe t").fetchall()) == len(RESERVED_WORDS)
    for word in sorted(RESERVED_WORDS):
        con.execute(f"create table {table_name(word, PG_MAX)} (a int)")


# --- column_name ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("context", "userAgent"), "context_user_agent"),
        (("address", "street"), "address_street"),
        (("context", "library", "name"), "context_library_name"),
        (("context", "traits", "email"), "context_traits_email"),
        (("open",), "_open"),
        (("Select",), "_select"),
        (("timestamp",), "_timestamp"),
        (("101 Account Update",), "_101_account_update"),
        (("2FA Enabled",), "_2fa_enabled"),
        (("", "•¶", "plan"), "plan"),
        (("select", "from"), "select_from"),
        (("utm", "open"), "utm_open"),
    ],
)
def test_column_name(path: tuple[str, ...], expected: str) -> None:
    assert column_name(path, PG_MAX) == expected


@pytest.mark.parametrize("path", [(), ("",), ("•¶",), ("•¶", "$$", "___")])
def test_column_name_is_none_when_nothing_is_left(path: tuple[str, ...]) -> None:
    assert column_name(path, PG_MAX) is None


def test_column_name_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError):
        column_name("email", PG_MAX)  # type: ignore[arg-type]


def test_long_column_names_fit_and_stay_distinct() -> None:
    a = column_name(("traits", "x" * 100 + "A"), PG_MAX)
    b = column_name(("traits", "x" * 100 + "B"), PG_MAX)
    assert a is not None and b is not None
    assert a != b
    assert len(a.encode()) <= PG_MAX and len(b.encode()) <= PG_MAX
    assert a == column_name(("traits", "x" * 100 + "A"), PG_MAX)


# --- table_name -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("Email Link Clicked", "email_link_clicked"),
        ("101 Account Update", "_101_account_update"),
        ("Order", "_order"),
        ("Users", "_users"),
        ("TRACKS", "_tracks"),
        ("Group", "_group"),
        ("Email Marked as Spam", "email_marked_as_spam"),
        ("", "_unnamed"),
        ("•¶§", "_unnamed"),
        ("🚀", "_unnamed"),
    ],
)
def test_table_name(event: str, expected: str) -> None:
    assert table_name(event, PG_MAX) == expected


@pytest.mark.parametrize("table", sorted(STANDARD_TABLES))
def test_events_never_write_into_standard_tables(table: str) -> None:
    assert table_name(table, PG_MAX) == "_" + table
    assert table_name(table.title(), PG_MAX) == "_" + table


def test_standard_tables() -> None:
    expected = {"tracks", "identifies", "users", "pages", "screens", "groups", "aliases", "discards"}
    assert expected == STANDARD_TABLES


# --- truncate_identifier ----------------------------------------------------------------


def test_truncate_keeps_names_that_fit() -> None:
    assert truncate_identifier("email", PG_MAX) == "email"
    exact = "a" * PG_MAX
    assert truncate_identifier(exact, PG_MAX) == exact


def test_truncate_is_deterministic_bounded_and_distinct() -> None:
    a = "signup_" + "x" * 80 + "_first"
    b = "signup_" + "x" * 80 + "_second"
    ta, tb = truncate_identifier(a, PG_MAX), truncate_identifier(b, PG_MAX)
    assert ta == truncate_identifier(a, PG_MAX)
    assert len(ta.encode()) == PG_MAX and len(tb.encode()) == PG_MAX
    assert ta != tb
    assert ta.startswith(a[: PG_MAX - 9])
    assert re.fullmatch(r"_[0-9a-f]{8}", ta[-9:])
    assert truncate_identifier("a" * (PG_MAX + 1), PG_MAX) != "a" * PG_MAX


def test_truncate_counts_bytes_not_characters() -> None:
    name = "é" * 40  # 80 bytes
    out = truncate_identifier(name, PG_MAX)
    assert len(out.encode()) <= PG_MAX
    assert out.startswith("é" * 27)  # 54 bytes of the 63 - 9 available: no half character


def test_truncate_rejects_a_limit_too_small_for_the_hash() -> None:
    assert len(truncate_identifier("abcdefghijk", 9)) == 9
    with pytest.raises(ValueError):
        truncate_identifier("abcdefghijk", 8)


# --- schema_name ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("drip", "drip"), ("email_events", "email_events"), ("3doctors", "_3doctors"),
     ("_x", "_x"), ("a" * 63, "a" * 63), ("temporary", "temporary"), ("system_events", "system_events")],
)
def test_schema_name_accepts(name: str, expected: str) -> None:
    assert schema_name(name) == expected


def test_schema_name_error_says_what_is_allowed() -> None:
    with pytest.raises(ValueError) as err:
        schema_name("Foo-Bar")
    assert str(err.value) == (
        "schema name 'Foo-Bar' is not allowed: "
        "use 1 to 63 lowercase letters, digits and underscores (e.g. drip)"
    )


@pytest.mark.parametrize(
    "name", ["", "Drip", "my schema", "a-b", "dríp", "drip\n", "a" * 64, 'x"; drop', "pg_data",
             "information_schema",
             # Names an engine treats specially are refused, never renamed (`system` used to become `_system`,
             # and `temp` was accepted and every load failed with "Ambiguous reference to catalog or schema").
             "temp", "system", "main", "memory", "warehouse", "public", "_sluice", "select", "user", "open"],
)
def test_schema_name_rejects(name: str) -> None:
    with pytest.raises(ValueError, match="is not allowed"):
        schema_name(name)


def test_schema_name_prefix_never_exceeds_the_limit() -> None:
    assert schema_name("1" + "a" * 61) == "_1" + "a" * 61
    with pytest.raises(ValueError, match="at most 62"):
        schema_name("1" + "a" * 62)


def test_schema_name_re() -> None:
    assert SCHEMA_NAME_RE.fullmatch("drip_2")
    assert not SCHEMA_NAME_RE.fullmatch("Drip")
    assert not SCHEMA_NAME_RE.fullmatch("a" * 64)


# --- hostile names ----------------------------------------------------------------------


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_names_become_plain_identifiers(raw: str) -> None:
    table = table_name(raw, PG_MAX)
    column = column_name(("properties", raw), PG_MAX)
    assert IDENT.fullmatch(table) and len(table) <= PG_MAX
    assert column is not None and IDENT.fullmatch(column) and len(column) <= PG_MAX
    # Generated names are safe unquoted: no quoting bug can turn them into SQL.
    con = duckdb.connect()
    con.execute(f"create table {table} ({column} int)")
    assert con.execute(f"select {column} from {table}").fetchall() == []


def test_hostile_names_without_ascii_letters() -> None:
    for raw in ["日本語", "🚀🎉", "\x00", "'\";--", "   "]:
        assert table_name(raw, PG_MAX) == "_unnamed"
        assert column_name((raw,), PG_MAX) is None


# --- quoting ----------------------------------------------------------------------------


def test_quote_ident() -> None:
    assert quote_ident("users") == '"users"'
    assert quote_ident('a"b') == '"a""b"'
    assert quote_ident('"; DROP TABLE x; --') == '"""; DROP TABLE x; --"'


@pytest.mark.parametrize("bad", ["a\x00b", "\x00", ""])
def test_quote_ident_rejects_nul_and_empty(bad: str) -> None:
    with pytest.raises(ValueError):
        quote_ident(bad)


@pytest.mark.parametrize("name", [*HOSTILE[:-2], "a" * 200, "MiXeD Case"])
def test_quote_ident_round_trips_through_duckdb(name: str) -> None:
    con = duckdb.connect()
    con.execute(f"create table {quote_ident(name)} ({quote_ident(name)} int)")
    con.execute(f"insert into {quote_ident(name)} values (7)")
    tables = con.execute("select table_name from duckdb_tables() where not internal").fetchall()
    assert tables == [(name,)]
    columns = con.execute("select column_name from duckdb_columns() where not internal").fetchall()
    assert columns == [(name,)]
    assert con.execute(f"select {quote_ident(name)} from {quote_ident(name)}").fetchall() == [(7,)]


def test_sql_string() -> None:
    assert sql_string("abc") == "'abc'"
    assert sql_string("it's") == "'it''s'"
    with pytest.raises(ValueError):
        sql_string("a\x00b")


@pytest.mark.parametrize("value", [*HOSTILE, "", "\\'", "'", "$$", "$tag$x$tag$", "/a~1b"])
def test_sql_string_round_trips_through_duckdb(value: str) -> None:
    assert duckdb.connect().execute(f"select {sql_string(value)}").fetchone() == (value,)


# --- json_pointer -----------------------------------------------------------------------


def test_json_pointer() -> None:
    assert json_pointer(("a", "b")) == "/a/b"
    assert json_pointer(("a/b", "c~d", "~1")) == "/a~1b/c~0d/~01"
    assert json_pointer(("",)) == "/"
    assert json_pointer(()) == ""
    with pytest.raises(TypeError):
        json_pointer("ab")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path",
    [("a", "b"), ("a/b",), ("c~d",), ("~1",), ("",), ("q\"'",), ("é", "🚀"), ('"; DROP TABLE x; --',)],
)
def test_json_pointer_extracts_the_value_in_duckdb(path: tuple[str, ...]) -> None:
    doc: object = "found"
    for key in reversed(path):
        doc = {key: doc, "decoy/" + key: "wrong", "other": "wrong"}
    sql = f"select json_extract_string({sql_string(json.dumps(doc))}, {sql_string(json_pointer(path))})"
    assert duckdb.connect().execute(sql).fetchone() == ("found",)
