"""Backpressure on what the machine can hold: the data dir's free space and the log's size.

Ingest refuses new events while free space in the data dir is below `min_free_disk_bytes` or the log
takes more than `max_log_bytes`, instead of accepting what it may not be able to keep: `/v1/*`
answers 503 and Drip's webhook path 429, both with `Retry-After` (Segment's libraries retry 5xx,
Drip retries rate limits for up to 3 days). It never looks at a destination: a dead webhook that
keeps the log from being pruned is felt only when the log reaches its cap. Both are checked at most
every `pressure_check_seconds`, so recovery (space freed, the log pruned) is seen that quickly.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sluice.log.base import Log
from sluice.settings import Settings


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


class DiskPressure:
    def __init__(self, data_dir: Path, log: Log, settings: Settings) -> None:
        self.data_dir = data_dir
        self.log = log
        self.min_free = settings.min_free_disk_bytes
        self.max_log = settings.max_log_bytes
        self.every_ns = int(settings.pressure_check_seconds * 1e9)
        self._next_ns = 0
        self._reason: str | None = None

    def check(self) -> str | None:
        """Why ingest must refuse events now, or None; the reason is told to the sender."""
        now = time.monotonic_ns()
        if now >= self._next_ns:
            self._next_ns = now + self.every_ns
            self._reason = self._measure()
        return self._reason

    def _measure(self) -> str | None:
        if self.min_free:
            try:
                st = os.statvfs(self.data_dir)
            except OSError:
                st = None
            if st is not None and st.f_bavail * st.f_frsize < self.min_free:
                free = st.f_bavail * st.f_frsize
                return (f"the disk of the data dir has {_size(free)} free, below the"
                        f" {_size(self.min_free)} sluice keeps free (SLUICE_MIN_FREE_DISK_BYTES)")
        if self.max_log:
            try:
                size = self.log.size_bytes()
            except Exception:  # the log is busy or gone for a moment: decide on space alone
                size = 0
            if size > self.max_log:
                return (f"the log holds {_size(size)}, more than its limit of {_size(self.max_log)}"
                        " (SLUICE_MAX_LOG_BYTES) until destinations catch up and it is pruned")
        return None
