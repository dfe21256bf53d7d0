"""`sluice serve`."""

from __future__ import annotations

import click

from sluice.cli.base import fail, main, settings


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8088).")
@click.option("--admin-host", default=None, help="Interface of the admin API (default 127.0.0.1).")
@click.option("--admin-port", type=int, default=None, help="Port of the admin API (default 8089).")
@click.pass_context
def serve(
    ctx: click.Context, host: str | None, port: int | None, admin_host: str | None, admin_port: int | None
) -> None:
    """Run the server: ingest, log, delivery and warehouse loading, and the admin API on its own port."""
    from sluice.server import StartupError
    from sluice.server import serve as run

    try:
        run(settings(ctx, host=host, port=port, admin_host=admin_host, admin_port=admin_port))
    except StartupError as e:
        fail(str(e))
    except KeyboardInterrupt:  # Ctrl-C while still starting (once running, the server handles it itself)
        click.echo("stopped before the server started", err=True)
