"""Admin SQL on the warehouse (`sluice query`, `/admin/query`): it reads the warehouse and nothing else,
and it never stalls loading.

Three fences, each enough on its own for the harm it stops:

1. The DuckDB instance: `LOCKED_DOWN` turns external access off (no file read or written outside the
   database, no ATTACH, no COPY, no extension installed or loaded) and `lock` freezes the
   configuration, so SQL cannot turn it back on. Both are instance-wide in DuckDB 2, so the loader's
   connections have them too: the loader only needs Arrow registration, which still works.
2. The statement: exactly one, of a reading type (what DuckDB's own parser says, never a regex), run
   inside a READ ONLY transaction, so even a reading statement with a side effect (`nextval`,
   `query('...')`) cannot write.
3. The run: a connection of its own (never the loader's), a time limit (a timer calls `interrupt()`)
   and a row cap (`fetchmany`), both settings; a capped answer says so with `truncated`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import duckdb

# Settings that DuckDB 2 applies to the whole database instance (every connection to the file).
LOCKED_DOWN: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}

# SELECT covers FROM-first queries, VALUES, SHOW, DESCRIBE and SUMMARIZE; EXPLAIN (ANALYZE) runs a SELECT.
_READING = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


class QueryRefused(ValueError):
    """SQL that the admin path does not run, or stopped; the message is meant for the user."""


@dataclass(frozen=True)
class QueryLimits:
    seconds: float
    max_rows: int


def lock(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Freeze the instance's configuration: after this, SQL can change no setting (nor unlock it)."""
    con.execute("SET lock_configuration = true")
    return con


def check_read_only(sql: str) -> None:
    """Refuse anything but one reading statement, with a reason the user can act on."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryRefused(str(e)) from None
    if not statements:
        raise QueryRefused("no SQL statement to run")
    if len(statements) > 1:
        raise QueryRefused(f"one statement at a time, please: this SQL has {len(statements)}")
    kind = statements[0].type
    if kind not in _READING:
        raise QueryRefused(
            f"only reading statements (SELECT, FROM, WITH, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN) run here;"
            f" this is {kind.name}. The warehouse is written by sluice's loader alone"
        )


def run_read_only(con: duckdb.DuckDBPyConnection, sql: str, limits: QueryLimits) -> dict[str, Any]:
    """Run one reading statement on `con` (a connection of its own, closed here) within the limits."""
    check_read_only(sql)
    timer = threading.Timer(limits.seconds, con.interrupt)
    timer.daemon = True
    try:
        con.execute("BEGIN TRANSACTION READ ONLY")
        timer.start()
        try:
            cur = con.execute(sql)
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchmany(limits.max_rows + 1) if columns else []
        except duckdb.InterruptException:
            raise QueryRefused(
                f"the query ran longer than the limit of {limits.seconds:g} s and was stopped"
                " (SLUICE_QUERY_TIME_LIMIT_SECONDS)"
            ) from None
        finally:
            timer.cancel()
    finally:
        con.close()  # also ends the read-only transaction and any unread rest of the result
    truncated = len(rows) > limits.max_rows
    return {"columns": columns, "rows": [portable(r) for r in rows[: limits.max_rows]], "truncated": truncated}


_INT64 = range(-(2**63), 2**63)


def portable(row: tuple[Any, ...]) -> list[Any]:
    """Values JSON can carry the same way whether the result crosses the admin API or not: integers
    beyond 64 bits (HUGEINT sums) and NaN/infinities become their text."""
    out = list(row)
    for i, v in enumerate(out):
        if (type(v) is int and v not in _INT64) or (type(v) is float and not math.isfinite(v)):
            out[i] = str(v)
    return out
