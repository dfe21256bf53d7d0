"""Warehouse naming: Segment's identifier rules, reserved words, quoting.

Every table, column and schema name sluice creates goes through this module, so the
rules live in one place: go-snakecase for the name itself, a "_" prefix for names an
engine would misread, a hash suffix for names over the engine's length limit, and one
quoting function for the identifiers and strings embedded in generated SQL.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

# Segment's naming rule is github.com/segmentio/go-snakecase (v1.2.0 snake.go). The Go
# code walks bytes with hand-written loops; these regexes express the same loops, and
# they cannot backtrack, so a name of any length is converted in linear time.
# Leading run that is already snake_case (Go's first loop: lowercase and digits, plus an
# underscore that is not first and is followed by a lowercase letter or digit).
_SNAKE_PREFIX = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
# One output word: capitals and digits (lowercased), then lowercase letters and digits.
_UPPER_WORD = re.compile(r"[A-Z0-9]+[a-z0-9]*")
_WORD = re.compile(r"[A-Z0-9]+[a-z0-9]*|[a-z0-9]+")
_LOWER = re.compile(r"[a-z]")


@lru_cache(maxsize=65536)
def snake_case(name: str) -> str:
    """go-snakecase's Snakecase: ASCII words joined by "_", everything else a separator."""
    prefix = _SNAKE_PREFIX.match(name)
    idx = prefix.end() if prefix else 0
    if idx == len(name):
        return name  # already snake_case (or empty)
    out = name[:idx]
    head = out.rpartition("_")
    has_lower = _LOWER.search(out) is not None
    has_underscore = bool(head[1])
    lower_since_underscore = _LOWER.search(head[2]) is not None
    # go-snakecase's special case: a capital right after a prefix with no lowercase
    # letter ("2FA" -> "2fa") or after "_<digits>" ("edf_6N" -> "edf_6n") joins that
    # prefix's last word instead of starting a new one.
    if "A" <= name[idx] <= "Z" and (not has_lower or (has_underscore and not lower_since_underscore)):
        word = _UPPER_WORD.match(name, idx)
        if word is not None:  # always: name[idx] is a capital
            out += word.group().lower()
            idx = word.end()
    words = [out] if out else []
    words.extend(m.group().lower() for m in _WORD.finditer(name, idx))
    return "_".join(words)


# Names that need a "_" prefix to be used unquoted and unambiguously as a table or
# column: the union of Amazon Redshift's reserved words (the list Segment applies),
# PostgreSQL's reserved and "reserved (can be function or type)" key words (kwlist.h
# RESERVED_KEYWORD and TYPE_FUNC_NAME_KEYWORD, PostgreSQL 17), and DuckDB's reserved
# keywords (duckdb_keywords() in duckdb 2.0.1). A literal so the loader never needs an
# engine connection to name things; tests check it still covers the installed DuckDB.
RESERVED_WORDS: frozenset[str] = frozenset(
    {
        "aes128", "aes256", "all", "allowoverwrite", "analyse", "analyze", "and", "any", "array",
        "as", "asc", "asymmetric", "authorization", "az64", "backup", "between", "binary",
        "blanksasnull", "both", "bytedict", "bzip2", "case", "cast", "check", "collate",
        "collation", "column", "concurrently", "constraint", "create", "credentials", "cross",
        "current_catalog", "current_date", "current_role", "current_schema", "current_time",
        "current_timestamp", "current_user", "current_user_id", "default", "deferrable", "deflate",
        "defrag", "delta", "delta32k", "desc", "describe", "disable", "distinct", "do", "else",
        "emptyasnull", "enable", "encode", "encrypt", "encryption", "end", "except", "explicit",
        "false", "fetch", "for", "foreign", "freeze", "from", "full", "globaldict256",
        "globaldict64k", "grant", "group", "gzip", "having", "identity", "ignore", "ilike", "in",
        "initially", "inner", "intersect", "interval", "into", "is", "isnull", "join", "lambda",
        "lateral", "leading", "left", "like", "limit", "localtime", "localtimestamp", "lun", "luns",
        "lzo", "lzop", "minus", "mostly16", "mostly32", "mostly8", "natural", "new", "not",
        "notnull", "null", "nulls", "off", "offline", "offset", "oid", "old", "on", "only", "open",
        "or", "order", "outer", "overlaps", "parallel", "partition", "percent", "permissions",
        "pivot", "pivot_longer", "pivot_wider", "placing", "primary", "qualify", "raw", "readratio",
        "recover", "references", "rejectlog", "resort", "respect", "restore", "returning", "right",
        "select", "session_user", "show", "similar", "snapshot", "some", "summarize", "symmetric",
        "sysdate", "system", "system_user", "table", "tablesample", "tag", "tdes", "text255",
        "text32k", "then", "timestamp", "to", "top", "trailing", "true", "truncatecolumns", "union",
        "unique", "unnest", "unpivot", "user", "using", "variadic", "verbose", "wallet", "when",
        "where", "window", "with", "without"
    }
)

# Segment's fixed tables. An event whose snake_cased name is one of these gets a "_"
# prefix, so a track("Users") lands in "_users" and never writes into the users table.
STANDARD_TABLES: frozenset[str] = frozenset(
    {"tracks", "identifies", "users", "pages", "screens", "groups", "aliases", "discards"}
)

# PostgreSQL's system columns: a user column with one of these names cannot be created there.
# DuckDB's "type_function" keywords: legal when quoted, but `select at from t` is a syntax error.
RESERVED_WORDS = RESERVED_WORDS | {"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"} | {
    "anti", "asof", "at", "authorization", "binary", "by", "collation", "columns", "concurrently", "cross",
    "freeze", "full", "generated", "glob", "ilike", "inner", "is", "isnull", "join", "left", "like", "map",
    "natural", "notnull", "outer", "overlaps", "positional", "right", "semi", "similar", "struct",
    "tablesample", "try_cast", "tuple", "unpack", "verbose",
}

_HASH_CHARS = 8
_HASH_SUFFIX_BYTES = _HASH_CHARS + 1  # "_" + 8 hex


def truncate_identifier(name: str, max_bytes: int) -> str:
    """Fit `name` into `max_bytes` UTF-8 bytes, keeping long names distinct.

    PostgreSQL silently truncates identifiers at 63 bytes, so two long property names
    sharing a prefix would become the same column. Instead the name is cut and suffixed
    with "_" and 8 hex digits of its SHA-1: deterministic, so the same property always
    maps to the same column across loads.
    """
    if max_bytes < _HASH_SUFFIX_BYTES:
        raise ValueError(f"max_bytes must be at least {_HASH_SUFFIX_BYTES}, got {max_bytes}")
    encoded = name.encode()
    if len(encoded) <= max_bytes:
        return name
    digest = hashlib.sha1(encoded).hexdigest()[:_HASH_CHARS]
    # Cut on bytes, dropping a partly cut multi-byte character, so the result always fits.
    head = encoded[: max_bytes - _HASH_SUFFIX_BYTES].decode(errors="ignore")
    return f"{head}_{digest}"


def _needs_prefix(name: str) -> bool:
    # ASCII digits only: str.isdigit() would also accept "²" and other Unicode digits.
    return name in RESERVED_WORDS or "0" <= name[0] <= "9"


def column_name(path: Sequence[str], max_bytes: int) -> str | None:
    """Column for a flattened property path: ("context", "userAgent") -> context_user_agent.

    None when no segment has any ASCII letter or digit; the caller drops that property.
    """
    if isinstance(path, str):
        # A bare string is a Sequence[str] of characters; almost certainly a caller bug.
        raise TypeError("column_name takes a sequence of path segments, not a string")
    parts = [part for part in (snake_case(segment) for segment in path) if part]
    if not parts:
        return None
    name = "_".join(parts)
    if _needs_prefix(name):
        name = "_" + name
    return truncate_identifier(name, max_bytes)


def table_name(event: str, max_bytes: int) -> str:
    """Table for a track event: "Email Link Clicked" -> email_link_clicked."""
    name = snake_case(event)
    if not name:
        # snake_case never yields a leading "_", so this cannot collide with an event.
        return "_unnamed"
    if _needs_prefix(name) or name in STANDARD_TABLES:
        name = "_" + name
    return truncate_identifier(name, max_bytes)


SCHEMA_NAME_MAX = 63  # PostgreSQL's identifier limit, the tightest engine sluice loads
SCHEMA_NAME_RE = re.compile(r"[a-z0-9_]{1,63}")  # use with fullmatch: "$" would allow a trailing "\n"
_SCHEMA_RULE = f"use 1 to {SCHEMA_NAME_MAX} lowercase letters, digits and underscores (e.g. drip)"


# Schema names an engine treats specially: DuckDB's catalogs (`temp`, `system`, `memory`, and
# `warehouse`, the embedded file's own name: `warehouse.tracks` would be ambiguous) and default schema,
# PostgreSQL's system and default schemas, and sluice's own.
SPECIAL_SCHEMAS = frozenset({"temp", "system", "memory", "main", "warehouse", "information_schema", "public",
                             "_sluice"})


def schema_name(name: str) -> str:
    """Validate a user-chosen schema name and return the name to create.

    Unlike event and property names this is never rewritten beyond Segment's "_" prefix for a
    leading digit: silently mangling what the user typed would put data where they won't look, so
    a name an engine would misread is refused with the reason instead.
    """
    if not SCHEMA_NAME_RE.fullmatch(name):
        raise ValueError(f"schema name {name!r} is not allowed: {_SCHEMA_RULE}")
    if name.startswith("pg_") or name in SPECIAL_SCHEMAS:
        raise ValueError(
            f"schema name {name!r} is not allowed: the warehouse uses it for itself;"
            f" choose another (e.g. {name}_events)"
        )
    if name in RESERVED_WORDS:
        raise ValueError(
            f"schema name {name!r} is not allowed: it is a reserved word in SQL; choose another (e.g. {name}_events)"
        )
    if "0" <= name[0] <= "9":
        name = "_" + name
        if len(name) > SCHEMA_NAME_MAX:
            # The prefix would push it past the limit and the engine would truncate it.
            raise ValueError(
                f"schema name {name[1:]!r} is not allowed: it gets a '_' prefix, so it can be "
                f"at most {SCHEMA_NAME_MAX - 1} characters"
            )
    return name


def quote_ident(name: str) -> str:
    """The one way sluice quotes an identifier: "name" with embedded quotes doubled."""
    if not name:
        raise ValueError("an identifier cannot be empty")
    if "\x00" in name:
        # Engines either reject NUL or cut the name at it; neither is what was asked for.
        raise ValueError("an identifier cannot contain a NUL character")
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """A standard SQL string literal: 'value' with embedded quotes doubled.

    Assumes standard-conforming strings, where a backslash is an ordinary character
    (DuckDB; PostgreSQL's default). Not safe for Redshift, where backslash escapes.
    """
    if "\x00" in value:
        raise ValueError("a SQL string literal cannot contain a NUL character")
    return "'" + value.replace("'", "''") + "'"


def json_pointer(path: Sequence[str]) -> str:
    """RFC 6901 pointer for a key path: ("a", "b/c") -> "/a/b~1c"; () -> "" (the whole document)."""
    if isinstance(path, str):
        raise TypeError("json_pointer takes a sequence of keys, not a string")
    # "~" first, so the "~" introduced by escaping "/" is not escaped again.
    return "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in path)
