"""`sluice deliveries ...` and `sluice replay`: delivery status, dead letters, re-drives, replays."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from sluice.catalog.store import Catalog, CatalogError
from sluice.cli.base import (
    admin_request,
    catalog,
    delivery_write,
    fail,
    main,
    print_json,
    print_table,
    running_server,
    settings,
)
from sluice.cli.shared_state import dead_letters as shared_dead_letters
from sluice.cli.shared_state import is_shared, replay_range, status_rows
from sluice.datadir import LOG_FILE, WAREHOUSE_FILE
from sluice.delivery.state import DeliveryState
from sluice.destinations.warehouse import warehouse_consumer
from sluice.log.sqlite import SqliteLog
from sluice.services import deliveries as service
from sluice.services.deliveries import Ref
from sluice.settings import Settings


def resolve(ctx: click.Context, ref: str, source_ref: str | None) -> Ref:
    """DEST as the user named it; a clear error (exit 1) when there is no such destination."""
    try:
        return service.resolve(catalog(ctx), ref, source_ref)
    except CatalogError as e:
        raise click.ClickException(str(e)) from None


def _when_sent(data_dir: Path, config: Settings | None = None) -> str:
    if config is not None and is_shared(config):
        return "by the deliver node running it (shared state: every node sees it at once)"
    return "now" if running_server(data_dir) else "when `sluice serve` next runs"


def _state(data_dir: Path) -> DeliveryState:
    return DeliveryState(data_dir / LOG_FILE)


def _when(text: str) -> datetime:
    try:
        return service.parse_when(text)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


_ms_iso = service.ms_iso


def _local_status(config: Settings, cat: Catalog) -> list[dict[str, Any]]:
    """Status read from the files, for when no server is running."""
    from sluice.destinations.registry import build
    from sluice.warehouse.duckdb_engine import query_file
    from sluice.warehouse.readonly import QueryLimits

    data_dir = config.data_dir
    log = SqliteLog(data_dir / LOG_FILE, 0, readonly=True)
    state = _state(data_dir)
    rows = []
    cursors: dict[str, int] = {}
    if (data_dir / WAREHOUSE_FILE).exists():
        limits = QueryLimits(config.query_time_limit_seconds, config.query_max_rows)
        result = query_file(data_dir / WAREHOUSE_FILE, "SELECT consumer, seq FROM _sluice.cursors", limits)
        cursors = {c: int(s) for c, s in result["rows"]}
    sources = {s.id: s for s in cat.list_sources()}
    refs = [Ref(s, warehouse_consumer(s), "warehouse", True) for s in sources.values()]
    refs += [
        Ref(sources[d.source_id], d.consumer, d.name, d.type == "postgres", d.id)
        for d in cat.list_destinations()
        if d.source_id in sources
    ]
    for ref in refs:
        cursor: int | None
        if ref.dest_id is None:  # the embedded warehouse
            cursor = cursors.get(ref.consumer, 0)
        elif ref.transactional:
            try:
                target = build(cat.get_destination(str(ref.dest_id)), config)
                cursor = target.position()  # type: ignore[union-attr]
                target.close()
            except Exception:  # the warehouse is unreachable: say so rather than guess
                cursor = None
        else:
            cursor = state.cursor(ref.consumer)
        rows.append({
            "source": ref.source.schema, "destination": ref.label, "consumer": ref.consumer,
            "state": "stopped",  # no server runs: nothing is delivered until `sluice serve`
            "cursor": cursor, "lag": log.depth(ref.source.id, cursor) if cursor is not None else None,
            "failing_since": None, **state.status(ref.consumer),
        })
    log.close()
    return rows


@main.group()
def deliveries() -> None:
    """Delivery status, dead letters and re-drives."""


@deliveries.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per destination: lag (events not yet delivered), last success, last error, dead letters."""
    data_dir = settings(ctx).data_dir
    if is_shared(settings(ctx)):  # scale-out: read from PostgreSQL and JetStream, from anywhere
        rows = status_rows(settings(ctx))
    elif running_server(data_dir) is not None:
        rows = admin_request(data_dir, "GET", "/admin/status")["deliveries"]
    else:
        rows = _local_status(settings(ctx), catalog(ctx))
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no sources yet")
        return
    # The last error is the last column and is never cut: it is what tells you what to fix.
    print_table(
        ["source", "destination", "state", "lag", "last success", "dead letters", "last error"],
        [
            [r["source"], r["destination"], r.get("state", ""), "?" if r["lag"] is None else r["lag"],
             _ms_iso(r["last_success"]) or "-", r["dead_letters"],
             f"{_ms_iso(r['last_error_at'])} {r['last_error']}" if r["last_error"] else ""]
            for r in rows
        ],
    )


@deliveries.command("dead-letters")
@click.argument("dest")
@click.option("--source", "source_ref", help="With DEST=warehouse: which source's.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dead_letters(ctx: click.Context, dest: str, source_ref: str | None, limit: int, as_json: bool) -> None:
    """List the events DEST refused for good, with the reason."""
    ref = resolve(ctx, dest, source_ref)
    config = settings(ctx)
    if is_shared(config):
        items = service.describe_dead_letters(shared_dead_letters(config, ref.consumer, limit))
    else:
        items = service.dead_letters(_state(config.data_dir), ref.consumer, limit)
    if as_json:
        print_json(items)
        return
    if not items:
        click.echo(f"no dead letters for {ref.label}")
        return
    print_table(
        ["id", "message_id", "type", "event", "failed_at", "attempts", "reason"],
        [[i["id"], i["message_id"], i["type"], i["event"] or "", i["failed_at"], i["attempts"], i["reason"][:100]]
         for i in items],
    )


@deliveries.command("retry")
@click.argument("dest")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="Re-drive every dead letter of DEST.")
@click.option("--source", "source_ref", help="With DEST=warehouse: which source's.")
@click.pass_context
def retry(ctx: click.Context, dest: str, ids: tuple[int, ...], all_: bool, source_ref: str | None) -> None:
    """Re-drive dead letters (by id, or --all): the destination's worker sends them again."""
    if not all_ and not ids:
        fail("say which dead letters: ids, or --all")
    ref = resolve(ctx, dest, source_ref)
    config = settings(ctx)
    data_dir = config.data_dir
    n = service.retry(lambda op, **args: delivery_write(data_dir, op, config, **args), ref.consumer,
                      None if all_ else list(ids))
    where = _when_sent(data_dir, config)
    click.echo(f"{n} dead letter{'s' if n != 1 else ''} of {ref.label} will be re-sent {where}")


@main.command()
@click.argument("dest")
@click.option("--since", "since", required=True, help="ISO-8601 time, or a duration ago (2h, 7d).")
@click.option("--until", "until", help="ISO-8601 time, or a duration ago (default: now).")
@click.option("--source", "source_ref", help="With DEST=warehouse: which source's.")
@click.pass_context
def replay(ctx: click.Context, dest: str, since: str, until: str | None, source_ref: str | None) -> None:
    """Send DEST again every event received in a time range (warehouses skip rows they hold)."""
    ref = resolve(ctx, dest, source_ref)
    data_dir = settings(ctx).data_dir
    start, end = _when(since), _when(until) if until else datetime.now(UTC)
    if end <= start:
        fail("--until must be after --since")
    config = settings(ctx)

    def write(op: str, **args: Any) -> Any:
        return delivery_write(data_dir, op, config, **args)

    if is_shared(config):  # the range is found in JetStream (by store time)
        after, last, count = replay_range(config, ref.source.id, int(start.timestamp() * 1000),
                                          int(end.timestamp() * 1000))
        if count > 0:
            write("add_replay", consumer=ref.consumer, after_seq=after, end_seq=last)
    else:
        log = SqliteLog(data_dir / LOG_FILE, 0, readonly=True)
        try:
            count = service.replay(log, write, ref, start, end)
        finally:
            log.close()
    if count <= 0:
        click.echo(f"no events of {ref.source.schema} between {start.isoformat()} and {end.isoformat()}")
        return
    where = _when_sent(data_dir, config)
    click.echo(f"replaying {count} event{'s' if count != 1 else ''} of {ref.source.schema} to {ref.label} {where}")
