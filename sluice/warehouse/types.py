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


# Strings that look like an ISO-8601 date-time make a timestamp column (as in Segment's warehouses).
_TIMESTAMP_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?"
)
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
    if json_type == "VARCHAR" and text is not None and _TIMESTAMP_RE.fullmatch(text):
        return ColType.TIMESTAMP
    return ColType.VARCHAR  # strings, arrays (as their JSON text), anything else


def cast_sql(value: str, type_: ColType) -> str:
    """DuckDB expression turning text `value` into `type_`, NULL where it cannot."""
    if type_ is ColType.VARCHAR:
        return value
    if type_ is ColType.INTEGER:
        # TRY_CAST('1.5' AS BIGINT) rounds; an integer column only takes integral values.
        return (
            f"CASE WHEN TRY_CAST({value} AS DOUBLE) = TRY_CAST({value} AS BIGINT)"
            f" THEN TRY_CAST({value} AS BIGINT) END"
        )
    if type_ is ColType.FLOAT:
        return f"TRY_CAST({value} AS DOUBLE)"
    if type_ is ColType.BOOLEAN:
        return f"TRY_CAST({value} AS BOOLEAN)"
    return f"TRY_CAST({value} AS TIMESTAMPTZ)"


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
