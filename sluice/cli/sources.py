"""`sluice sources ...`."""

from __future__ import annotations

import click

from sluice.catalog.models import Source
from sluice.catalog.store import CatalogError
from sluice.cli.base import catalog, delivery_write, fail, main, print_json, print_table, running_server, settings
from sluice.datadir import WAREHOUSE_FILE
from sluice.services import sources as service

# -- sources ----------------------------------------------------------------------------------


@main.group()
def sources() -> None:
    """Create and manage sources (each has a write key and its own warehouse schema)."""


def public_base_url(ctx: click.Context, for_drip: bool) -> str:
    """Every printed URL's base (sluice/sources/public_url.py); for a Drip source, with the warning when Drip
    cannot reach it (a browser or a Segment library on the same network may well reach a private address)."""
    config = settings(ctx)
    base = service.public_url(config, running_server(config.data_dir) is not None)
    if base.warning and for_drip:
        click.echo(f"warning: {base.warning}", err=True)
    return base.url


def _show_source(ctx: click.Context, source: Source, as_json: bool) -> None:
    from sluice.sources.drip_connect import drip_connection

    base_url = public_base_url(ctx, for_drip=source.type == "drip")
    public = source.public(base_url)
    connection = drip_connection(settings(ctx), source.id) if source.type == "drip" else None
    if as_json:
        print_json({**public, "drip_connection": connection} if source.type == "drip" else public)
        return
    click.echo(f"id:          {source.id}")
    click.echo(f"type:        {source.type}")
    click.echo(f"name:        {source.name}")
    click.echo(f"schema:      {source.schema}")
    click.echo(f"write key:   {source.write_key}")
    if public["webhook_url"]:
        click.echo(f"webhook URL: {public['webhook_url']}")
    click.echo(f"origins:     {', '.join(source.allowed_origins) or 'any (no allow-list)'}")
    click.echo(f"store IPs:   {'yes' if source.store_ips else 'no (context.ip is never stored)'}")
    click.echo(f"Segment webhook URL:   {public['segment_webhook_url']}")
    click.echo(f"Segment shared secret: {source.segment_secret}")
    if connection:
        click.echo(f"Drip account: {connection['account_id']} (webhook {connection['webhook_id']} registered"
                   f" {connection['connected_at']}; catalog synced: {connection['synced_at'] or 'not yet'})")
        if connection["sync_error"]:
            click.echo(f"  last catalog sync failed: {connection['sync_error']}")
    click.echo("")
    click.echo(service.setup_text(source, base_url))


_ALLOWED_ORIGIN_HELP = (
    "A site whose pages may send this source events from the browser (https://shop.example.com); repeat for"
    " more. Without any, every origin may."
)


@sources.command("create")
@click.argument("type_", metavar="TYPE", type=click.Choice(["http", "drip"]))
@click.option("--name", required=True, help="A nickname, e.g. Drip.")
@click.option("--schema", required=True, help="Warehouse schema name: lowercase letters, digits, underscores.")
@click.option("--allowed-origin", "allowed_origins", multiple=True, metavar="ORIGIN", help=_ALLOWED_ORIGIN_HELP)
@click.option("--store-ips/--no-store-ips", default=True, show_default=True,
              help="Whether context.ip is stored (filled from the request when a message has none).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def sources_create(ctx: click.Context, type_: str, name: str, schema: str, allowed_origins: tuple[str, ...],
                   store_ips: bool, as_json: bool) -> None:
    """Create a source and print its id, write key, webhook URLs and Segment shared secret."""
    try:
        source = service.create(catalog(ctx), type_, name, schema, list(allowed_origins), store_ips)
    except CatalogError as e:
        fail(str(e))
        return
    _show_source(ctx, source, as_json)


def _arrived(ctx: click.Context, schemas: list[str]) -> dict[str, service.Arrived] | None:
    """Events loaded per schema and the last one, as the console's Sources page shows them; None when the
    warehouse cannot be read now (a server starting)."""
    from sluice.cli.query import run_query

    config = settings(ctx)
    if running_server(config.data_dir) is None and not (config.data_dir / WAREHOUSE_FILE).exists():
        return {}  # nothing has loaded yet
    try:
        return service.arrived(lambda sql: run_query(config, sql), schemas)
    except click.ClickException:
        return None


@sources.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_list(ctx: click.Context, as_json: bool) -> None:
    """List sources, with the events each has loaded and when the last one arrived."""
    found = catalog(ctx).list_sources()
    base = public_base_url(ctx, for_drip=any(s.type == "drip" for s in found))
    arrived = _arrived(ctx, [s.schema for s in found])
    items = []
    for s in found:
        counts = arrived.get(s.schema, service.Arrived(0, None)) if arrived is not None else None
        items.append({**s.public(base), "events": counts.events if counts else None,
                      "last_event": counts.last_event if counts else None})
    if as_json:
        print_json(items)
        return
    if not items:
        click.echo("no sources yet: sluice sources create http --name Web --schema web")
        return
    print_table(["id", "type", "name", "schema", "write_key", "events", "last event"],
                [[i[k] for k in ("id", "type", "name", "schema", "write_key", "events", "last_event")] for i in items])
    if arrived is None:
        click.echo("(event counts unavailable: the warehouse could not be read just now)")


@sources.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show a source (by id, schema or name) with its setup steps."""
    try:
        _show_source(ctx, catalog(ctx).get_source(ref), as_json)
    except CatalogError as e:
        fail(str(e))


@sources.command("update")
@click.argument("ref")
@click.option("--name", default=None, help="A new nickname.")
@click.option("--allowed-origin", "allowed_origins", multiple=True, metavar="ORIGIN",
              help="Replaces the allow-list with these origins (repeatable). " + _ALLOWED_ORIGIN_HELP)
@click.option("--any-origin", is_flag=True, help="Remove the allow-list: every origin may send again.")
@click.option("--store-ips/--no-store-ips", default=None, help="Store context.ip, or never store it.")
@click.option("--segment-secret", default=None, metavar="SECRET",
              help="Use this shared secret for Segment's Webhooks destination (at least 16 characters).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_update(ctx: click.Context, ref: str, name: str | None, allowed_origins: tuple[str, ...], any_origin: bool,
                   store_ips: bool | None, segment_secret: str | None, as_json: bool) -> None:
    """Change a source's name, allowed origins, IP storage or Segment shared secret; the server follows at once."""
    if any_origin and allowed_origins:
        fail("give either --allowed-origin or --any-origin, not both")
        return
    origins = [] if any_origin else list(allowed_origins) if allowed_origins else None
    try:
        source = catalog(ctx).update_source(
            ref, name=name, allowed_origins=origins, store_ips=store_ips, segment_secret=segment_secret
        )
    except CatalogError as e:
        fail(str(e))
        return
    _show_source(ctx, source, as_json)


@sources.command("rotate-key")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_rotate(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Give a source a new write key; the old one stops working at once."""
    try:
        _show_source(ctx, catalog(ctx).rotate_key(ref), as_json)
    except CatalogError as e:
        fail(str(e))


@sources.command("delete")
@click.argument("ref")
@click.pass_context
def sources_delete(ctx: click.Context, ref: str) -> None:
    """Delete a source: its write key stops working at once. Warehouse tables are kept."""
    config = settings(ctx)
    try:
        source = service.delete(catalog(ctx), ref,
                                lambda op, **args: delivery_write(config.data_dir, op, config, **args))
    except CatalogError as e:
        fail(str(e))
        return
    click.echo(f"deleted source {source.id} ({source.name}); schema {source.schema} stays in the warehouse")
