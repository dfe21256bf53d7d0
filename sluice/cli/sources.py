"""`sluice sources ...`."""

from __future__ import annotations

import click

from sluice.catalog.models import Source
from sluice.catalog.store import CatalogError
from sluice.cli.base import catalog, delivery_write, fail, main, print_json, print_table, settings

DRIP_SETUP = """\
Connect Drip (two ways; use either or both):
  A. Drip's Segment integration: in Drip, Settings > Integrations > Segment, paste the write key
     above. Drip then sends Email Delivered/Opened/Link Clicked/Bounced/Unsubscribed/Marked as
     Spam as Segment track calls; point the integration's endpoint at {base}
     (sluice's URL replaces api.segment.io; the /v1/* paths are the same).
  B. Drip webhooks: in Drip, Settings > Webhooks > New webhook, paste the webhook URL above and
     tick the events you want (tick "include received email" for Email Delivered).
Docs: docs/connect-drip.md"""


# -- sources ----------------------------------------------------------------------------------


@main.group()
def sources() -> None:
    """Create and manage sources (each has a write key and its own warehouse schema)."""


def _show_source(ctx: click.Context, source: Source, as_json: bool) -> None:
    base_url = settings(ctx).base_url
    public = source.public(base_url)
    if as_json:
        print_json(public)
        return
    click.echo(f"id:          {source.id}")
    click.echo(f"type:        {source.type}")
    click.echo(f"name:        {source.name}")
    click.echo(f"schema:      {source.schema}")
    click.echo(f"write key:   {source.write_key}")
    if public["webhook_url"]:
        click.echo(f"webhook URL: {public['webhook_url']}")
    if source.type == "drip":
        click.echo("")
        click.echo(DRIP_SETUP.format(base=base_url))
    else:
        click.echo("")
        click.echo(f"Point any Segment library at {base_url} with this write key.")


@sources.command("create")
@click.argument("type_", metavar="TYPE", type=click.Choice(["http", "drip"]))
@click.option("--name", required=True, help="A nickname, e.g. Drip.")
@click.option("--schema", required=True, help="Warehouse schema name: lowercase letters, digits, underscores.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def sources_create(ctx: click.Context, type_: str, name: str, schema: str, as_json: bool) -> None:
    """Create a source and print its id, write key and (drip) webhook URL."""
    try:
        source = catalog(ctx).create_source(type_, name, schema)
    except CatalogError as e:
        fail(str(e))
        return
    _show_source(ctx, source, as_json)


@sources.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_list(ctx: click.Context, as_json: bool) -> None:
    """List sources."""
    base = settings(ctx).base_url
    items = [s.public(base) for s in catalog(ctx).list_sources()]
    if as_json:
        print_json(items)
        return
    if not items:
        click.echo("no sources yet: sluice sources create http --name Web --schema web")
        return
    print_table(["id", "type", "name", "schema", "write_key"], [[i[k] for k in ("id", "type", "name", "schema",
                 "write_key")] for i in items])


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
    cat = catalog(ctx)
    try:
        doomed = cat.list_destinations(cat.get_source(ref).id)  # deleted with it (ON DELETE CASCADE)
        source = cat.delete_source(ref)
    except CatalogError as e:
        fail(str(e))
        return
    for dest in doomed:
        delivery_write(settings(ctx).data_dir, "forget", consumer=dest.consumer)
    click.echo(f"deleted source {source.id} ({source.name}); schema {source.schema} stays in the warehouse")
