"""Segment's five column types, how a first value decides one, and how later values are cast.

Casting runs inside DuckDB (vectorised) for every engine: the loader extracts each value as
text with `json_extract_string` and converts it with the expression below. A value that does not
convert becomes NULL in its column and a row in `discards`.
"""

from __future__ import annotations

import re
from enum import StrEnum


class ColType(StrEnum):
    TIMESTAMP = "timestamp"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    VARCHAR = "varchar"


# Values a typed column takes, as text (what the loader extracts from the JSON). Explicit grammars,
# not whatever a cast happens to accept: every engine and the tests' reference mapping agree on them.
# A decimal number: 7, -7.0, .5, 1e3 (no spaces, hex, underscores, inf or nan).
DECIMAL_RE = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
_DATE = r"(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?"
_OFFSET = r"(Z|z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)"
# An ISO-8601 date, optionally with a time and an offset: what a timestamp column takes.
TIMESTAMP_VALUE_RE = f"{_DATE}([T ]{_TIME}{_OFFSET}?)?"
# A date and a time (optional offset): a first value like this makes a timestamp column.
TIMESTAMP_FIRST_RE = f"{_DATE}[T ]{_TIME}{_OFFSET}?"
BOOLEAN_TRUE = ("true", "t", "yes", "y", "1")
BOOLEAN_FALSE = ("false", "f", "no", "n", "0")
_TIMESTAMP_FIRST = re.compile(TIMESTAMP_FIRST_RE)
_INT64_MAX = 2**63 - 1


def infer(json_type: str, text: str | None) -> ColType:
    """The column type a first value sets, from DuckDB's json_type() and its text."""
    if json_type in ("BIGINT", "UBIGINT"):
        # Integers beyond int64 cannot live in an integer column; a float column keeps them.
        return ColType.INTEGER if text is not None and int(text) <= _INT64_MAX else ColType.FLOAT
    if json_type == "DOUBLE":
        return ColType.FLOAT
    if json_type == "BOOLEAN":
        return ColType.BOOLEAN
    if json_type == "VARCHAR" and text is not None and _TIMESTAMP_FIRST.fullmatch(text):
        return ColType.TIMESTAMP
    return ColType.VARCHAR  # strings, arrays (as their JSON text), anything else


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def cast_sql(value: str, type_: ColType) -> str:
    """DuckDB expression turning text `value` into `type_`, NULL where it does not fit the grammar."""
    if type_ is ColType.VARCHAR:
        return value
    if type_ is ColType.INTEGER:
        # TRY_CAST('1.5' AS BIGINT) rounds; an integer column only takes integral values.
        return (
            f"CASE WHEN regexp_full_match({value}, '{DECIMAL_RE}')"
            f" AND TRY_CAST({value} AS DOUBLE) = TRY_CAST({value} AS BIGINT) THEN TRY_CAST({value} AS BIGINT) END"
        )
    if type_ is ColType.FLOAT:
        return (
            f"CASE WHEN regexp_full_match({value}, '{DECIMAL_RE}') AND isfinite(TRY_CAST({value} AS DOUBLE))"
            f" THEN TRY_CAST({value} AS DOUBLE) END"
        )
    if type_ is ColType.BOOLEAN:
        return (
            f"CASE WHEN lower({value}) IN ({_sql_list(BOOLEAN_TRUE)}) THEN true"
            f" WHEN lower({value}) IN ({_sql_list(BOOLEAN_FALSE)}) THEN false END"
        )
    return f"CASE WHEN regexp_full_match({value}, '{TIMESTAMP_VALUE_RE}') THEN TRY_CAST({value} AS TIMESTAMPTZ) END"


def standard_cast_sql(value: str, type_: ColType) -> str:
    """Standard columns hold what ingest wrote (canonical timestamps): a plain cast is enough."""
    return f"TRY_CAST({value} AS TIMESTAMPTZ)" if type_ is ColType.TIMESTAMP else value


DUCKDB_TYPES = {
    ColType.TIMESTAMP: "TIMESTAMPTZ",
    ColType.INTEGER: "BIGINT",
    ColType.FLOAT: "DOUBLE",
    ColType.BOOLEAN: "BOOLEAN",
    ColType.VARCHAR: "VARCHAR",
}


def from_sql_type(name: str) -> ColType:
    """A warehouse column's declared type, read back from information_schema (any engine)."""
    n = name.lower()
    if "timestamp" in n:
        return ColType.TIMESTAMP
    if n in ("bigint", "integer", "int", "int8", "int4", "smallint", "hugeint"):
        return ColType.INTEGER
    if n in ("double", "double precision", "float", "float8", "real"):
        return ColType.FLOAT
    if n in ("boolean", "bool"):
        return ColType.BOOLEAN
    return ColType.VARCHAR
