"""Which Drip account each Drip source is connected to (`sluice sources connect-drip`): the account id,
its API token (for the webhook's removal, the catalog sync and reconcile), the webhook Drip posts to, and
the last catalog sync. A SQLite file of its own in the data dir (private, as every file there)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sluice.sqlite_file import SqliteFile

DRIP_FILE = "drip.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS drip_connections (
    source_id INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL,
    api_token TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    post_url TEXT NOT NULL,
    connected_at TEXT NOT NULL,
    synced_at TEXT,
    sync_error TEXT
);
"""


@dataclass(frozen=True)
class DripConnection:
    source_id: int
    account_id: str
    api_token: str
    webhook_id: str
    post_url: str
    connected_at: str
    synced_at: str | None = None
    sync_error: str | None = None

    def public(self) -> dict[str, object]:
        """What may be shown (the CLI, --json, the console): never the token."""
        return {"account_id": self.account_id, "webhook_id": self.webhook_id, "post_url": self.post_url,
                "connected_at": self.connected_at, "synced_at": self.synced_at, "sync_error": self.sync_error}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class DripStore(SqliteFile):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir / DRIP_FILE, _SCHEMA)

    def get(self, source_id: int) -> DripConnection | None:
        row = self._db().execute("SELECT * FROM drip_connections WHERE source_id = ?", (source_id,)).fetchone()
        return DripConnection(**dict(row)) if row else None

    def all(self) -> list[DripConnection]:
        return [DripConnection(**dict(r)) for r in self._db().execute("SELECT * FROM drip_connections")]

    def save(self, source_id: int, account_id: str, api_token: str, webhook_id: str, post_url: str) -> DripConnection:
        with self._tx() as db:
            db.execute(
                "INSERT INTO drip_connections (source_id, account_id, api_token, webhook_id, post_url, connected_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source_id) DO UPDATE SET account_id = excluded.account_id,"
                " api_token = excluded.api_token, webhook_id = excluded.webhook_id, post_url = excluded.post_url,"
                " connected_at = excluded.connected_at",
                (source_id, account_id, api_token, webhook_id, post_url, now_iso()),
            )
        connection = self.get(source_id)
        assert connection is not None
        return connection

    def synced(self, source_id: int, error: str | None) -> None:
        with self._tx() as db:
            if error is None:
                db.execute("UPDATE drip_connections SET synced_at = ?, sync_error = NULL WHERE source_id = ?",
                           (now_iso(), source_id))
            else:
                db.execute("UPDATE drip_connections SET sync_error = ? WHERE source_id = ?", (error, source_id))

    def delete(self, source_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM drip_connections WHERE source_id = ?", (source_id,))
