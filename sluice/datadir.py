"""The data directory's files, and one clear line when one of them is damaged, missing or locked.

Every command (and `sluice serve`) turns a file it cannot use into a `DataDirError`: which file, what
is wrong, what to do. The CLI prints it as one line and exits non-zero: never a traceback, never a
server that starts and then silently cannot work.

Never read a SQLite file of the data dir with plain `open()` in a process that also has it open in
SQLite: closing any descriptor of a file drops every POSIX lock the process holds on it, and the next
SQLite user would think it is alone and delete the WAL under the server.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

CATALOG_FILE = "catalog.db"
LOG_FILE = "log.db"  # the log, and the delivery state beside it
WAREHOUSE_FILE = "warehouse.duckdb"

_ADVICE = {
    CATALOG_FILE: "restore it from a backup: it holds the sources and their keys, which the log and the warehouse"
                  " refer to by id",
    LOG_FILE: "restore it from a backup, or move it (with its -wal and -shm files) away to start an empty log;"
              " events not yet delivered are then lost",
    WAREHOUSE_FILE: "restore it from a backup, or move it away: sluice then loads a new warehouse from what the log"
                    " still holds",
}


class DataDirError(RuntimeError):
    """A file of the data dir cannot be used; the message is one line for the user."""


def advice(path: Path) -> str:
    return _ADVICE.get(path.name, "restore it from a backup")


def sqlite_error(path: Path, error: sqlite3.Error) -> DataDirError:
    """What a SQLite failure on `path` means for the user, as one line."""
    text = str(error)
    if "locked" in text or "busy" in text:
        return DataDirError(
            f"{path} is locked by another process (a sluice command that is stuck?): stop it and try again"
        )
    if "unable to open" in text or "readonly" in text or "read-only" in text:
        return DataDirError(f"cannot open {path} ({text}): check that it exists and this user may read and write it")
    if "full" in text:
        return DataDirError(f"{path}: the disk is full ({text}): free some space and try again")
    return DataDirError(f"{path} is damaged ({text}): {advice(path)}")


def check_catalog(data_dir: Path) -> None:
    """Refuse a missing catalog next to data that refers to it.

    A new, empty catalog would answer 401 to every write key, and worse, its first source would get
    id 1 again and take over the old source 1's events in the log and its cursors in the warehouse."""
    if (data_dir / CATALOG_FILE).exists():
        return
    orphans = [name for name in (LOG_FILE, WAREHOUSE_FILE) if _holds_data(data_dir / name)]
    if orphans:
        raise DataDirError(
            f"{data_dir / CATALOG_FILE} is missing but {' and '.join(orphans)} hold data of its sources:"
            f" restore {CATALOG_FILE} from a backup; or, to start over with new sources and keys, move"
            f" {', '.join(orphans)} away too"
        )


def _holds_data(path: Path) -> bool:
    if not path.exists():
        return False
    if path.name != LOG_FILE:
        return True
    try:  # read-only, and only in a process that has no other connection to it yet
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            return any(
                db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() for t in ("events", "cursors") if t in tables
            )
        finally:
            db.close()
    except sqlite3.Error:
        return True  # unreadable: assume it matters, and say so
