"""`sluice console`: a one-time link that signs a browser in to the running server's web console."""

from __future__ import annotations

import click

from sluice.cli.base import admin_request, main, settings


@main.command()
@click.pass_context
def console(ctx: click.Context) -> None:
    """Print a one-time sign-in link to the web console (good for one use, for SLUICE_CONSOLE_LINK_SECONDS)."""
    answer = admin_request(settings(ctx).data_dir, "POST", "/admin/console-link")
    click.echo(f"Open this link to sign in (once, within {answer['expires_in_seconds']:g} seconds):")
    click.echo(answer["url"])
