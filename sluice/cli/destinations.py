"""`sluice destinations ...`: where each source's events go besides the embedded warehouse."""

from __future__ import annotations

from typing import Any

import click

from sluice.catalog.store import CatalogError
from sluice.cli.base import catalog, delivery_write, fail, main, print_json, print_table, settings
from sluice.destinations.registry import DESTINATION_TYPES
from sluice.services import destinations as service

_public = service.public


@main.group()
def destinations() -> None:
    """Add and manage destinations (postgres, webhook, drip) of a source."""


@destinations.command("add")
@click.argument("source")
@click.argument("type_", metavar="TYPE", type=click.Choice(DESTINATION_TYPES))
@click.option("--name", required=True, help="A name, unique within the source (also usable in `integrations`).")
@click.option("--url", help="postgres: connection URL; webhook: the URL to POST to.")
@click.option("--header", "headers", multiple=True, help="webhook: NAME=VALUE, repeatable.")
@click.option("--secret", help="webhook: shared secret for the X-Sluice-Signature HMAC-SHA256 header.")
@click.option("--batch-size", type=int, default=1, show_default=True, help="webhook: events per request.")
@click.option("--account-id", help="drip: your Drip account id.")
@click.option("--api-token", help="drip: your Drip API token.")
@click.option("--base-url", help="drip: API base URL (default https://api.getdrip.com).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def add(
    ctx: click.Context,
    source: str,
    type_: str,
    name: str,
    url: str | None,
    headers: tuple[str, ...],
    secret: str | None,
    batch_size: int,
    account_id: str | None,
    api_token: str | None,
    base_url: str | None,
    as_json: bool,
) -> None:
    """Add a destination to SOURCE (id, schema or name); it starts from the oldest event in the log."""
    try:
        header_map = service.parse_headers(list(headers))
    except ValueError as e:
        fail(f"--header: {e}")
        return
    raw: dict[str, Any] = {
        "url": url, "headers": header_map, "secret": secret, "batch_size": batch_size,
        "account_id": account_id, "api_token": api_token, "base_url": base_url,
    }
    try:
        cat = catalog(ctx)
        dest = service.add(cat, source, type_, name, raw)
        schema = cat.get_source(str(dest.source_id)).schema
    except (ValueError, CatalogError) as e:
        fail(str(e))
        return
    if as_json:
        print_json(_public(dest, schema))
    else:
        click.echo(f"added {type_} destination {dest.id} ({name}) to source {schema}")
        click.echo("its worker starts within a second if `sluice serve` is running; `sluice deliveries status`")


@destinations.command("list")
@click.option("--source", help="Only this source's destinations.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, source: str | None, as_json: bool) -> None:
    """List destinations."""
    cat = catalog(ctx)
    try:
        source_id = cat.get_source(source).id if source else None
    except CatalogError as e:
        fail(str(e))
        return
    schemas = {s.id: s.schema for s in cat.list_sources()}
    items = [_public(d, schemas.get(d.source_id, "?")) for d in cat.list_destinations(source_id)]
    if as_json:
        print_json(items)
        return
    if not items:
        click.echo("no destinations yet: sluice destinations add web webhook --name hook --url https://...")
        return
    print_table(
        ["id", "source", "type", "name", "enabled"],
        [[i["id"], i["source"], i["type"], i["name"], "yes" if i["enabled"] else "no"] for i in items],
    )


def _one(ctx: click.Context, ref: str, action: str) -> None:
    cat = catalog(ctx)
    try:
        if action == "show":
            dest = cat.get_destination(ref)
        elif action == "remove":
            config = settings(ctx)
            dest = service.remove(cat, ref, lambda op, **args: delivery_write(config.data_dir, op, config, **args))
        else:
            dest = service.set_enabled(cat, ref, action == "enable")
    except CatalogError as e:
        fail(str(e))
        return
    schemas = {s.id: s.schema for s in cat.list_sources()}
    if action == "show":
        print_json(_public(dest, schemas.get(dest.source_id, "?")))
    else:
        click.echo(f"{action}d destination {dest.id} ({dest.name})")


@destinations.command("show")
@click.argument("ref")
@click.pass_context
def show(ctx: click.Context, ref: str) -> None:
    """Show a destination (id or name); secrets are masked."""
    _one(ctx, ref, "show")


@destinations.command("enable")
@click.argument("ref")
@click.pass_context
def enable(ctx: click.Context, ref: str) -> None:
    """Resume delivery from where it stopped."""
    _one(ctx, ref, "enable")


@destinations.command("disable")
@click.argument("ref")
@click.pass_context
def disable(ctx: click.Context, ref: str) -> None:
    """Pause delivery (the log stops keeping events for it beyond the retention)."""
    _one(ctx, ref, "disable")


@destinations.command("remove")
@click.argument("ref")
@click.pass_context
def remove(ctx: click.Context, ref: str) -> None:
    """Remove a destination."""
    _one(ctx, ref, "remove")
