"""Segment's tables (reference/segment-warehouse.md): which tables a message feeds, their standard
columns, and the columns every table and the discards table carry."""

from __future__ import annotations

from dataclasses import dataclass

from sluice.warehouse.naming import table_name
from sluice.warehouse.types import ColType


@dataclass(frozen=True)
class Std:
    """A standard column: fixed name, fixed source (a JSON pointer into the message, or none for
    `tracks.event`, which holds the event's table name), fixed type."""

    name: str
    pointer: str | None
    type: ColType


@dataclass(frozen=True)
class TableKind:
    """How one kind of table is fed: its standard columns, and which parts of a message flatten in."""

    name: str
    standard: tuple[Std, ...]
    context: bool  # context.* flattens into context_* columns
    payload: str | None  # "properties" / "traits" / None
    upsert: bool = False  # users: one row per id, latest non-null values

    @property
    def reserved(self) -> frozenset[str]:
        """Column names a property can never take: the standard ones and the load-time ones."""
        return frozenset(s.name for s in self.standard) | LOAD_TIME_NAMES


_TS = ColType.TIMESTAMP
_V = ColType.VARCHAR
COMMON = (
    Std("id", "/messageId", _V),
    Std("anonymous_id", "/anonymousId", _V),
    Std("user_id", "/userId", _V),
    Std("received_at", "/receivedAt", _TS),
    Std("sent_at", "/sentAt", _TS),
    Std("timestamp", "/timestamp", _TS),
    Std("original_timestamp", "/originalTimestamp", _TS),
)
_TRACK_STD = (*COMMON, Std("event", None, _V), Std("event_text", "/event", _V))
_PAGE_STD = (*COMMON, Std("name", "/name", _V), Std("category", "/category", _V))

TRACKS = TableKind("tracks", _TRACK_STD, context=True, payload=None)
EVENT = TableKind("event", _TRACK_STD, context=True, payload="properties")
IDENTIFIES = TableKind("identifies", COMMON, context=True, payload="traits")
USERS = TableKind(
    "users", (Std("id", "/userId", _V), Std("received_at", "/receivedAt", _TS)), context=False, payload="traits",
    upsert=True,
)
PAGES = TableKind("pages", _PAGE_STD, context=True, payload="properties")
SCREENS = TableKind("screens", _PAGE_STD, context=True, payload="properties")
GROUPS = TableKind("groups", (*COMMON, Std("group_id", "/groupId", _V)), context=True, payload="traits")
ALIASES = TableKind("aliases", (*COMMON, Std("previous_id", "/previousId", _V)), context=True, payload=None)

# When a row was loaded: `loaded_at` (BigQuery's name, sluice's first) and `uuid_ts` (the name Segment's
# PostgreSQL and Redshift warehouses use, which dbt packages for Segment read). Both hold the same time.
LOAD_TIME = (("loaded_at", _TS), ("uuid_ts", _TS))
LOAD_TIME_NAMES = frozenset(n for n, _ in LOAD_TIME)

DISCARDS = "discards"
DISCARD_COLUMNS: tuple[tuple[str, ColType], ...] = (
    ("table_name", _V),
    ("column_name", _V),
    ("row_id", _V),
    ("value", _V),
    ("reason", _V),
    ("received_at", _TS),
    *LOAD_TIME,
)


@dataclass(frozen=True)
class Feed:
    """The tables one kind of message feeds, in the order they are written. Messages with the same feed
    are extracted together: each body is parsed once for all of its tables."""

    mtype: str
    event_table: str | None  # track: the event's table
    tables: tuple[tuple[str, TableKind], ...]


def feed_for(mtype: str, event: str | None, max_identifier_bytes: int) -> Feed:
    if mtype == "track":
        assert event is not None
        event_table = table_name(event, max_identifier_bytes)
        return Feed(mtype, event_table, (("tracks", TRACKS), (event_table, EVENT)))
    if mtype == "identify":
        return Feed(mtype, None, (("identifies", IDENTIFIES), ("users", USERS)))
    kind = {"page": PAGES, "screen": SCREENS, "group": GROUPS, "alias": ALIASES}[mtype]
    return Feed(mtype, None, ((kind.name, kind),))
