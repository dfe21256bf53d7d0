"""The CLI's delivery commands on shared (scale-out) state: straight to PostgreSQL and JetStream.

With the catalog in PostgreSQL, dead letters, replays and status are shared by every node, and each
destination's cursor is a durable consumer on the NATS servers: the CLI reads and writes them
directly, from any machine, whether or not a sluice node runs there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import click

from sluice.backends import Backends, open_backends, shared_state
from sluice.settings import Settings


@contextlib.contextmanager
def opened(config: Settings) -> Iterator[Backends]:
    """The backends `config` names (read-only log), or one line saying which engine did not answer."""
    try:
        parts = open_backends(config, readonly_log=True)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    except Exception as e:  # NATS or PostgreSQL away: one line, never the URLs (they may hold passwords)
        raise click.ClickException(
            f"cannot reach the scale-out backends: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    try:
        yield parts
    finally:
        parts.close()


def is_shared(config: Settings) -> bool:
    try:
        return shared_state(config)
    except ValueError as e:
        raise click.ClickException(str(e)) from None


def shared_write(config: Settings, op: str, **args: Any) -> tuple[bool, Any]:
    """(True, result) when the state is shared and the write was made; (False, None) for the embedded state."""
    if not is_shared(config):
        return False, None
    with opened(config) as parts:
        return True, parts.state.apply(op, **args)


def status_rows(config: Settings) -> list[dict[str, Any]]:
    """Every destination's position as every node sees it: its durable consumer's floor (a PostgreSQL
    warehouse's mirrors its own cursor) and what lies beyond it in the stream."""
    with opened(config) as parts:
        sources = {s.id: s for s in parts.catalog.list_sources()}
        rows = []
        for dest in parts.catalog.list_destinations():
            source = sources.get(dest.source_id)
            if source is None:
                continue
            cursor = parts.state.cursor(dest.consumer)
            rows.append({
                "source": source.schema, "destination": dest.name, "consumer": dest.consumer,
                # Which deliver node runs it is theirs to say (`/admin/status` on that node).
                "state": "enabled" if dest.enabled else "disabled",
                "cursor": cursor, "lag": parts.log.depth(source.id, cursor),
                "failing_since": None, **parts.state.status(dest.consumer),
            })
        return rows


def dead_letters(config: Settings, consumer: str, limit: int) -> list[dict[str, Any]]:
    with opened(config) as parts:
        return list(parts.state.dead_letters(consumer, limit))


def replay_range(config: Settings, source_id: int, start_ms: int, end_ms: int) -> tuple[int, int, int]:
    """(after seq, last seq, how many events) of a source between two times, read from JetStream."""
    with opened(config) as parts:
        log = parts.log
        after = log.seq_before(source_id, start_ms)
        last = log.last_seq(source_id, end_ms)
        return after, last, log.depth(source_id, after) - log.depth(source_id, last)
