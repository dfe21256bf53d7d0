"""What every HTTP client of sluice shares: its User-Agent, and how long a `Retry-After` asks to wait."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version

import httpx


def user_agent() -> str:
    """`sluice/<version>`: Drip asks every client to name itself (reference/drip.md)."""
    try:
        return f"sluice/{version('sluice')}"
    except PackageNotFoundError:
        return "sluice/0"


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
