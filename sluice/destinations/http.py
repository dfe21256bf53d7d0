"""How HTTP destinations read answers: which statuses are worth retrying, and for how long to wait."""

from __future__ import annotations

from sluice.http_util import retry_after

__all__ = ["retry_after", "transient_status"]


def transient_status(status: int) -> bool:
    """Timeouts, rate limits and server errors are retried; other 4xx are the event's fault."""
    return status in (408, 429) or status >= 500
