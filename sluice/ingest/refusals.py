"""Refused requests, kept where the console can show them: a small ring file per ingest process in the run dir.

Ingest runs in processes apart from the console's, so refusals need a shared store; this one costs a refused
request one `pwrite` of a fixed-size slot into the page cache (no lock, no fsync: one writer per file, and
losing them in a power cut loses nothing the sender was promised). Each file holds the last `SLOTS`
refusals of its process; a reader skips a slot caught half-written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson

SLOT = 768  # bytes per refusal, JSON padded with spaces
SLOTS = 256  # refusals kept per ingest process
PREFIX = "refusals-"
MAX_REASON = 500


class RefusalRing:
    """The writer: one per ingest process."""

    def __init__(self, run_dir: Path, name: str | None = None) -> None:
        self.path = run_dir / f"{PREFIX}{name or os.getpid()}.ring"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._n = 0

    def record(self, endpoint: str, status: int, code: str, reason: str, source_id: int | None) -> None:
        entry = {"n": self._n, "at_ms": int(time.time() * 1000), "endpoint": endpoint, "status": status,
                 "code": code, "reason": reason[:MAX_REASON], "source_id": source_id}
        data = orjson.dumps(entry)
        if len(data) > SLOT:  # a reason of many multi-byte characters: shorten until it fits
            entry["reason"] = reason[:100]
            data = orjson.dumps(entry)[:SLOT]
        os.pwrite(self._fd, data.ljust(SLOT), (self._n % SLOTS) * SLOT)
        self._n += 1

    def close(self) -> None:
        os.close(self._fd)


def read_refusals(run_dir: Path, seen: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Every kept refusal, oldest first; with `seen` ({file: last n read}, updated), only those not read before."""
    out = []
    for path in run_dir.glob(f"{PREFIX}*.ring"):
        try:
            raw = path.read_bytes()
        except OSError:  # its process is gone and the run dir was cleaned
            continue
        last = seen.get(path.name, -1) if seen is not None else -1
        newest = last
        for i in range(0, len(raw), SLOT):
            try:
                entry = orjson.loads(raw[i:i + SLOT])
            except orjson.JSONDecodeError:  # being written, or never written
                continue
            if entry["n"] > last:
                entry["file"] = path.name
                out.append(entry)
                newest = max(newest, entry["n"])
        if seen is not None:
            seen[path.name] = newest
    out.sort(key=lambda e: (e["at_ms"], e["n"]))
    return out
