"""The catalog: sources, write keys, destinations, in an embedded SQLite file.

Every process (server and CLI) opens the same file; the server notices changes made by the CLI
through SQLite's `data_version`, so a source created, rotated or deleted takes effect at once.
"""

from __future__ import annotations

import secrets
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from sluice.catalog.models import SOURCE_TYPES, Destination, Source
from sluice.catalog.origins import normalize_origin
from sluice.datadir import CATALOG_FILE, check_catalog
from sluice.sqlite_file import SqliteFile
from sluice.warehouse.naming import schema_name

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
  id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: log rows of a deleted source stay orphaned
  type TEXT NOT NULL,
  name TEXT NOT NULL,
  schema TEXT NOT NULL UNIQUE,
  write_key TEXT NOT NULL UNIQUE,
  webhook_token TEXT UNIQUE,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS destinations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
  type TEXT NOT NULL,
  name TEXT NOT NULL,
  config TEXT NOT NULL,
  enabled INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL,
  UNIQUE (source_id, name)
);
"""


# Columns added to `sources` after 0.1, with their definitions: added to an older catalog when it is opened
# (ALTER TABLE cannot add a UNIQUE column; the Segment webhook token gets a unique index instead).
_SOURCE_COLUMNS = {
    "allowed_origins": "TEXT NOT NULL DEFAULT '[]'",  # JSON array of normalised origins; [] means any
    "store_ips": "INTEGER NOT NULL DEFAULT 1",
    "segment_token": "TEXT",
    "segment_secret": "TEXT",
}


def source_changes(name: str | None, allowed_origins: list[str] | None, store_ips: bool | None,
                   segment_secret: str | None) -> dict[str, Any]:
    """A source update's columns and values, checked (None leaves a setting as it is); both catalogs use it."""
    changes: dict[str, Any] = {}
    if name is not None:
        if not name.strip():
            raise CatalogError("a source needs a non-empty --name")
        changes["name"] = name.strip()
    if allowed_origins is not None:
        changes["allowed_origins"] = orjson.dumps(_origins(allowed_origins)).decode()
    if store_ips is not None:
        changes["store_ips"] = bool(store_ips)  # SQLite stores it as 1/0, PostgreSQL as a boolean
    if segment_secret is not None:
        if len(segment_secret) < 16:
            raise CatalogError("a Segment shared secret needs at least 16 characters")
        changes["segment_secret"] = segment_secret
    return changes


class CatalogError(ValueError):
    """A catalog request that cannot be honoured; the message is meant for the user."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_token() -> str:
    # 32 url-safe characters, 192 bits: unguessable write keys and webhook tokens.
    return secrets.token_urlsafe(24)


class Catalog(SqliteFile):
    def __init__(self, data_dir: Path) -> None:
        check_catalog(data_dir)  # a lost catalog is refused, never silently replaced by an empty one
        super().__init__(data_dir / CATALOG_FILE, _SCHEMA, "PRAGMA foreign_keys=ON")
        self._add_columns()

    def _add_columns(self) -> None:
        """Bring a catalog written before these columns up to date (once; cheap to check on every open). Every
        source gets a Segment webhook token and shared secret, older ones included."""
        if self._missing_columns() or self._db().execute(
            "SELECT 1 FROM sources WHERE segment_token IS NULL LIMIT 1"
        ).fetchone():
            with self._tx() as db:  # another process may have done it meanwhile: check again under the lock
                for column in self._missing_columns():
                    db.execute(f"ALTER TABLE sources ADD COLUMN {column} {_SOURCE_COLUMNS[column]}")
                db.execute("CREATE UNIQUE INDEX IF NOT EXISTS sources_segment_token ON sources (segment_token)")
                for (source_id,) in db.execute("SELECT id FROM sources WHERE segment_token IS NULL").fetchall():
                    db.execute(
                        "UPDATE sources SET segment_token = ?, segment_secret = ? WHERE id = ?",
                        (new_token(), new_token(), source_id),
                    )

    def _missing_columns(self) -> list[str]:
        present = {row["name"] for row in self._db().execute("PRAGMA table_info(sources)")}
        return [c for c in _SOURCE_COLUMNS if c not in present]

    def data_version(self) -> int:
        """Changes when another connection commits: the server's cue to reload its caches."""
        return int(self._db().execute("PRAGMA data_version").fetchone()[0])

    # -- sources ----------------------------------------------------------------------------

    def create_source(
        self, type_: str, name: str, schema: str, allowed_origins: list[str] | None = None, store_ips: bool = True
    ) -> Source:
        if type_ not in SOURCE_TYPES:
            raise CatalogError(f"unknown source type {type_!r}: use one of {', '.join(SOURCE_TYPES)}")
        if not name.strip():
            raise CatalogError("a source needs a non-empty --name")
        try:
            schema = schema_name(schema)
        except ValueError as e:
            raise CatalogError(str(e)) from None
        origins = _origins(allowed_origins or [])
        token = new_token() if type_ == "drip" else None
        with self._tx() as db:
            if db.execute("SELECT 1 FROM sources WHERE schema = ?", (schema,)).fetchone():
                raise CatalogError(f"schema {schema!r} is already used by another source; pick another name")
            cur = db.execute(
                "INSERT INTO sources (type, name, schema, write_key, webhook_token, created_at, allowed_origins,"
                " store_ips, segment_token, segment_secret) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (type_, name.strip(), schema, new_token(), token, _now(), orjson.dumps(origins).decode(),
                 int(store_ips), new_token(), new_token()),
            )
            source_id = int(cur.lastrowid or 0)
        return self.get_source(str(source_id))

    def list_sources(self) -> list[Source]:
        return [_source(r) for r in self._db().execute("SELECT * FROM sources ORDER BY id")]

    def get_source(self, ref: str) -> Source:
        """A source by id, schema or name (what a user is likely to type)."""
        db = self._db()
        row = None
        if ref.isdigit():
            row = db.execute("SELECT * FROM sources WHERE id = ?", (int(ref),)).fetchone()
        row = row or db.execute("SELECT * FROM sources WHERE schema = ?", (ref,)).fetchone()
        if row is None:
            rows = db.execute("SELECT * FROM sources WHERE name = ?", (ref,)).fetchall()
            if len(rows) > 1:
                raise CatalogError(f"more than one source is named {ref!r}; use its id")
            row = rows[0] if rows else None
        if row is None:
            raise CatalogError(f"no source {ref!r} (give its id, schema or name; `sluice sources list`)")
        return _source(row)

    def rotate_key(self, ref: str) -> Source:
        source = self.get_source(ref)
        with self._tx() as db:
            db.execute("UPDATE sources SET write_key = ? WHERE id = ?", (new_token(), source.id))
        return self.get_source(str(source.id))

    def update_source(
        self,
        ref: str,
        *,
        name: str | None = None,
        allowed_origins: list[str] | None = None,
        store_ips: bool | None = None,
        segment_secret: str | None = None,
    ) -> Source:
        """Change what is given (None leaves it); `allowed_origins=[]` lets every origin send again."""
        source = self.get_source(ref)
        changes = source_changes(name, allowed_origins, store_ips, segment_secret)
        if changes:
            with self._tx() as db:
                assignments = ", ".join(f"{column} = ?" for column in changes)  # column names are ours, not input
                db.execute(f"UPDATE sources SET {assignments} WHERE id = ?", (*changes.values(), source.id))
        return self.get_source(str(source.id))

    def delete_source(self, ref: str) -> Source:
        source = self.get_source(ref)
        with self._tx() as db:
            db.execute("DELETE FROM sources WHERE id = ?", (source.id,))
        return source

    # -- destinations -----------------------------------------------------------------------

    def add_destination(self, source_ref: str, type_: str, name: str, config: dict[str, Any]) -> Destination:
        source = self.get_source(source_ref)
        with self._tx() as db:
            if db.execute(
                "SELECT 1 FROM destinations WHERE source_id = ? AND name = ?", (source.id, name)
            ).fetchone():
                raise CatalogError(f"source {source.schema!r} already has a destination named {name!r}")
            cur = db.execute(
                "INSERT INTO destinations (source_id, type, name, config, created_at) VALUES (?, ?, ?, ?, ?)",
                (source.id, type_, name, orjson.dumps(config).decode(), _now()),
            )
            dest_id = int(cur.lastrowid or 0)
        return self.get_destination(str(dest_id))

    def list_destinations(self, source_id: int | None = None) -> list[Destination]:
        sql, args = "SELECT * FROM destinations", ()
        if source_id is not None:
            sql, args = sql + " WHERE source_id = ?", (source_id,)
        return [_destination(r) for r in self._db().execute(sql + " ORDER BY id", args)]

    def get_destination(self, ref: str) -> Destination:
        db = self._db()
        row = db.execute("SELECT * FROM destinations WHERE id = ?", (int(ref),)).fetchone() if ref.isdigit() else None
        if row is None:
            rows = db.execute("SELECT * FROM destinations WHERE name = ?", (ref,)).fetchall()
            if len(rows) > 1:
                raise CatalogError(f"more than one destination is named {ref!r}; use its id")
            row = rows[0] if rows else None
        if row is None:
            raise CatalogError(f"no destination {ref!r} (give its id or name; `sluice destinations list`)")
        return _destination(row)

    def set_destination_enabled(self, ref: str, enabled: bool) -> Destination:
        dest = self.get_destination(ref)
        with self._tx() as db:
            db.execute("UPDATE destinations SET enabled = ? WHERE id = ?", (int(enabled), dest.id))
        return self.get_destination(str(dest.id))

    def remove_destination(self, ref: str) -> Destination:
        dest = self.get_destination(ref)
        with self._tx() as db:
            db.execute("DELETE FROM destinations WHERE id = ?", (dest.id,))
        return dest


def _source(row: sqlite3.Row) -> Source:
    return Source(
        id=row["id"],
        type=row["type"],
        name=row["name"],
        schema=row["schema"],
        write_key=row["write_key"],
        webhook_token=row["webhook_token"],
        created_at=row["created_at"],
        allowed_origins=tuple(orjson.loads(row["allowed_origins"])),
        store_ips=bool(row["store_ips"]),
        segment_token=row["segment_token"],
        segment_secret=row["segment_secret"],
    )


def _origins(values: list[str]) -> list[str]:
    """Normalised, without repeats, in the order given; CatalogError naming the first that is not an origin."""
    out: list[str] = []
    for value in values:
        try:
            origin = normalize_origin(value)
        except ValueError as e:
            raise CatalogError(str(e)) from None
        if origin not in out:
            out.append(origin)
    return out


def _destination(row: sqlite3.Row) -> Destination:
    return Destination(
        id=row["id"],
        source_id=row["source_id"],
        type=row["type"],
        name=row["name"],
        config=orjson.loads(row["config"]),
        enabled=bool(row["enabled"]),
        created_at=row["created_at"],
    )
