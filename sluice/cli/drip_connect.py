"""`sluice sources connect-drip|disconnect-drip`: register sluice's webhook in a real Drip account, or remove it."""

from __future__ import annotations

import click

from sluice.cli.base import catalog, print_json, settings
from sluice.cli.sources import sources
from sluice.sources.drip_connect import DripConnectError, connect_drip, disconnect_drip


@sources.command("connect-drip")
@click.argument("source")
@click.option("--account-id", required=True, help="Your Drip account id (the number in your Drip URL).")
@click.option("--api-token", required=True, envvar="SLUICE_DRIP_API_TOKEN",
              help="Your Drip API token (Drip: User Settings > API Token; also SLUICE_DRIP_API_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def connect(ctx: click.Context, source: str, account_id: str, api_token: str, as_json: bool) -> None:
    """Register this Drip source's webhook in your Drip account (every email and subscriber event)."""
    try:
        result = connect_drip(settings(ctx), catalog(ctx), source, account_id, api_token)
    except DripConnectError as e:
        raise click.ClickException(str(e)) from None
    if result["warning"]:
        click.echo(f"warning: {result['warning']}", err=True)
    if as_json:
        print_json(result)
        return
    click.echo(f"connected source {result['source']} to Drip account {result['account_id']}:")
    click.echo(f"  webhook {result['webhook_id']} posts to {result['post_url']}")
    click.echo(f"  {len(result['events'])} events, received emails included (Email Delivered)")


@sources.command("disconnect-drip")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def disconnect(ctx: click.Context, source: str, as_json: bool) -> None:
    """Remove this Drip source's webhook from the Drip account it was connected to."""
    try:
        result = disconnect_drip(settings(ctx), catalog(ctx), source)
    except DripConnectError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        print_json(result)
        return
    click.echo(f"removed webhook {result['webhook_id']} from Drip account {result['account_id']}")
