"""The catalog in PostgreSQL (`--catalog postgresql://...`): one catalog for every node.

The same API as the embedded catalog (`store.py`). Every write bumps a version number in the same
transaction and sends `NOTIFY sluice_catalog` (delivered at its commit), so every node's
`CatalogWatch` hears of a new source, a rotated key or a new destination at once, and ingest's hot
path compares two integers instead of querying. A lost notification (a dropped connection) is covered
by re-reading the version every `catalog_poll_seconds`, and after every reconnection.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson
import psycopg

from sluice.catalog.models import SOURCE_TYPES, Destination, Source
from sluice.catalog.store import CatalogError, _now, _origins, new_token, source_changes
from sluice.pg_store import SCHEMA, PgStore
from sluice.warehouse.naming import schema_name

logger = logging.getLogger("sluice.catalog")

CHANNEL = "sluice_catalog"
_DDL = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.catalog_sources (
  id bigserial PRIMARY KEY,  -- never reused: log entries of a deleted source stay orphaned
  type text NOT NULL,
  name text NOT NULL,
  schema text NOT NULL UNIQUE,
  write_key text NOT NULL UNIQUE,
  webhook_token text UNIQUE,
  created_at text NOT NULL
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.catalog_destinations (
  id bigserial PRIMARY KEY,
  source_id bigint NOT NULL REFERENCES {SCHEMA}.catalog_sources(id) ON DELETE CASCADE,
  type text NOT NULL,
  name text NOT NULL,
  config text NOT NULL,
  enabled boolean NOT NULL DEFAULT true,
  created_at text NOT NULL,
  UNIQUE (source_id, name)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.catalog_version (one integer PRIMARY KEY CHECK (one = 1), version bigint NOT NULL);
INSERT INTO {SCHEMA}.catalog_version VALUES (1, 0) ON CONFLICT DO NOTHING;
-- What the embedded catalog's sources gained after 0.1 (store.py's _SOURCE_COLUMNS), same meaning.
ALTER TABLE {SCHEMA}.catalog_sources ADD COLUMN IF NOT EXISTS allowed_origins text NOT NULL DEFAULT '[]';
ALTER TABLE {SCHEMA}.catalog_sources ADD COLUMN IF NOT EXISTS store_ips boolean NOT NULL DEFAULT true;
ALTER TABLE {SCHEMA}.catalog_sources ADD COLUMN IF NOT EXISTS segment_token text UNIQUE;
ALTER TABLE {SCHEMA}.catalog_sources ADD COLUMN IF NOT EXISTS segment_secret text;
"""
_SOURCES = f"{SCHEMA}.catalog_sources"
_DESTINATIONS = f"{SCHEMA}.catalog_destinations"


class PostgresCatalog:
    def __init__(self, url: str, poll_seconds: float = 5.0) -> None:
        self.url = url
        self.poll_seconds = poll_seconds
        self.store = PgStore(url, _DDL)

    def _changed(self, db: psycopg.Connection[Any]) -> None:
        """In a write transaction: every node's watch hears of it when it commits."""
        db.execute(f"UPDATE {SCHEMA}.catalog_version SET version = version + 1")
        db.execute(f"NOTIFY {CHANNEL}")

    def data_version(self) -> int:
        row = self.store.db().execute(f"SELECT version FROM {SCHEMA}.catalog_version").fetchone()
        return int(row["version"]) if row else 0

    def watch(self) -> CatalogWatch:
        return CatalogWatch(self, self.poll_seconds)

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
        try:
            with self.store.tx() as db:
                row = db.execute(
                    f"INSERT INTO {_SOURCES} (type, name, schema, write_key, webhook_token, created_at,"
                    " allowed_origins, store_ips, segment_token, segment_secret)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                    (type_, name.strip(), schema, new_token(), token, _now(), orjson.dumps(origins).decode(),
                     store_ips, new_token(), new_token()),
                ).fetchone()
                self._changed(db)
        except psycopg.errors.UniqueViolation:
            raise CatalogError(f"schema {schema!r} is already used by another source; pick another name") from None
        assert row is not None
        return _source(row)

    def list_sources(self) -> list[Source]:
        return [_source(r) for r in self.store.db().execute(f"SELECT * FROM {_SOURCES} ORDER BY id")]

    def get_source(self, ref: str) -> Source:
        """A source by id, schema or name (what a user is likely to type)."""
        db = self.store.db()
        row = None
        if ref.isdigit():
            row = db.execute(f"SELECT * FROM {_SOURCES} WHERE id = %s", (int(ref),)).fetchone()
        row = row or db.execute(f"SELECT * FROM {_SOURCES} WHERE schema = %s", (ref,)).fetchone()
        if row is None:
            rows = db.execute(f"SELECT * FROM {_SOURCES} WHERE name = %s", (ref,)).fetchall()
            if len(rows) > 1:
                raise CatalogError(f"more than one source is named {ref!r}; use its id")
            row = rows[0] if rows else None
        if row is None:
            raise CatalogError(f"no source {ref!r} (give its id, schema or name; `sluice sources list`)")
        return _source(row)

    def rotate_key(self, ref: str) -> Source:
        source = self.get_source(ref)
        with self.store.tx() as db:
            db.execute(f"UPDATE {_SOURCES} SET write_key = %s WHERE id = %s", (new_token(), source.id))
            self._changed(db)
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
        """As the embedded catalog's: change what is given (None leaves it)."""
        source = self.get_source(ref)
        changes = source_changes(name, allowed_origins, store_ips, segment_secret)
        if changes:
            with self.store.tx() as db:
                assignments = ", ".join(f"{column} = %s" for column in changes)  # column names are ours, not input
                db.execute(f"UPDATE {_SOURCES} SET {assignments} WHERE id = %s", (*changes.values(), source.id))
                self._changed(db)
        return self.get_source(str(source.id))

    def delete_source(self, ref: str) -> Source:
        source = self.get_source(ref)
        with self.store.tx() as db:
            db.execute(f"DELETE FROM {_SOURCES} WHERE id = %s", (source.id,))
            self._changed(db)
        return source

    # -- destinations -----------------------------------------------------------------------

    def add_destination(self, source_ref: str, type_: str, name: str, config: dict[str, Any]) -> Destination:
        source = self.get_source(source_ref)
        try:
            with self.store.tx() as db:
                row = db.execute(
                    f"INSERT INTO {_DESTINATIONS} (source_id, type, name, config, created_at)"
                    " VALUES (%s, %s, %s, %s, %s) RETURNING *",
                    (source.id, type_, name, orjson.dumps(config).decode(), _now()),
                ).fetchone()
                self._changed(db)
        except psycopg.errors.UniqueViolation:
            raise CatalogError(f"source {source.schema!r} already has a destination named {name!r}") from None
        assert row is not None
        return _destination(row)

    def list_destinations(self, source_id: int | None = None) -> list[Destination]:
        sql, args = f"SELECT * FROM {_DESTINATIONS}", ()
        if source_id is not None:
            sql, args = sql + " WHERE source_id = %s", (source_id,)
        return [_destination(r) for r in self.store.db().execute(sql + " ORDER BY id", args)]  # type: ignore[arg-type]

    def get_destination(self, ref: str) -> Destination:
        db = self.store.db()
        row = None
        if ref.isdigit():
            row = db.execute(f"SELECT * FROM {_DESTINATIONS} WHERE id = %s", (int(ref),)).fetchone()
        if row is None:
            rows = db.execute(f"SELECT * FROM {_DESTINATIONS} WHERE name = %s", (ref,)).fetchall()
            if len(rows) > 1:
                raise CatalogError(f"more than one destination is named {ref!r}; use its id")
            row = rows[0] if rows else None
        if row is None:
            raise CatalogError(f"no destination {ref!r} (give its id or name; `sluice destinations list`)")
        return _destination(row)

    def set_destination_enabled(self, ref: str, enabled: bool) -> Destination:
        dest = self.get_destination(ref)
        with self.store.tx() as db:
            db.execute(f"UPDATE {_DESTINATIONS} SET enabled = %s WHERE id = %s", (enabled, dest.id))
            self._changed(db)
        return self.get_destination(str(dest.id))

    def remove_destination(self, ref: str) -> Destination:
        dest = self.get_destination(ref)
        with self.store.tx() as db:
            db.execute(f"DELETE FROM {_DESTINATIONS} WHERE id = %s", (dest.id,))
            self._changed(db)
        return dest

    def close(self) -> None:
        self.store.close()


class CatalogWatch:
    """The catalog's version as last announced: `version` is a plain attribute read (ingest's hot path)."""

    def __init__(self, catalog: PostgresCatalog, poll_seconds: float) -> None:
        self._catalog = catalog
        self._poll = poll_seconds
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.version = catalog.data_version()
        self._thread = threading.Thread(target=self._run, name="catalog-watch", daemon=True)
        self._thread.start()
        self._ready.wait(10)  # LISTENing before the first request: no change can slip between

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._catalog.url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._refresh()  # anything committed while we were not listening
                    self._ready.set()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=self._poll, stop_after=1):
                            pass
                        self._refresh()  # after a notification, or every poll interval regardless
            except Exception as e:  # PostgreSQL away: keep the last version, try again
                logger.warning("catalog watch lost PostgreSQL (retrying): %s: %s", type(e).__name__, e)
                self._ready.set()
                self._stop.wait(min(self._poll, 2.0))

    def _refresh(self) -> None:
        self.version = self._catalog.data_version()

    def close(self) -> None:
        """Stop listening. The thread may be inside a wait for notifications (up to `catalog_poll_seconds`);
        it is a daemon and holds nothing to flush, so a stopping process does not wait that long for it."""
        self._stop.set()
        self._thread.join(timeout=0.5)


def _source(row: dict[str, Any]) -> Source:
    return Source(
        id=int(row["id"]), type=row["type"], name=row["name"], schema=row["schema"], write_key=row["write_key"],
        webhook_token=row["webhook_token"], created_at=row["created_at"],
        allowed_origins=tuple(orjson.loads(row["allowed_origins"])), store_ips=bool(row["store_ips"]),
        segment_token=row["segment_token"], segment_secret=row["segment_secret"],
    )


def _destination(row: dict[str, Any]) -> Destination:
    return Destination(
        id=int(row["id"]), source_id=int(row["source_id"]), type=row["type"], name=row["name"],
        config=orjson.loads(row["config"]), enabled=bool(row["enabled"]), created_at=row["created_at"],
    )
