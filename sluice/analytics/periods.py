"""Durations (`5d`, `12h`) and points in time (`30d` ago, a date, an ISO-8601 time) as the report options
take them. Every time is UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class PeriodError(ValueError):
    """An option value that is not a duration or a time; the message is meant for the user."""


def parse_duration(text: str, option: str) -> timedelta:
    match = _DURATION.match(text or "")
    if match is None:
        raise PeriodError(f"{option} must be a duration such as 30m, 12h, 5d or 2w, not {text!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise PeriodError(f"{option} must be longer than 0, not {text!r}")
    return timedelta(seconds=seconds)


def parse_time(text: str, option: str, now: datetime) -> datetime:
    """`30d` (that long before `now`), `2024-05-01` (its midnight UTC) or an ISO-8601 time (UTC without an
    offset)."""
    if _DURATION.match(text or ""):
        return now - parse_duration(text, option)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise PeriodError(
            f"{option} must be a duration before now (7d), a date (2024-05-01) or an ISO-8601 time, not {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def sql_time(moment: datetime) -> str:
    """A UTC time as a literal both DuckDB and PostgreSQL read the same way."""
    return f"CAST('{moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}+00' AS TIMESTAMPTZ)"


def sql_interval(span: timedelta) -> str:
    return f"INTERVAL '{int(span.total_seconds())} seconds'"
