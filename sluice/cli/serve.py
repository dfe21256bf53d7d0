"""`sluice serve`."""

from __future__ import annotations

import os
import sys

import click
import orjson

from sluice.cli.base import fail, main, settings


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8088).")
@click.option("--admin-host", default=None, help="Interface of the admin API (default 127.0.0.1).")
@click.option("--admin-port", type=int, default=None, help="Port of the admin API (default 8089).")
@click.option("--public-url", default=None,
              help="The HTTPS address Drip and browsers reach sluice at (a reverse proxy or tunnel), printed in every"
              " URL (also SLUICE_PUBLIC_URL).")
@click.option("--workers", type=int, default=None,
              help="Ingest processes sharing the ingest port (default: one per core; also SLUICE_WORKERS).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, admin_host: str | None, admin_port: int | None,
          public_url: str | None, workers: int | None) -> None:
    """Run the server: ingest processes, the log writer, delivery and warehouse loading, and the admin API on its
    own port."""
    from sluice.server.common import SUPERVISOR_ENV, settings_dict

    if workers is not None and workers < 1:
        fail("--workers must be at least 1")
    from sluice.sources.public_url import check_public_url

    try:
        public_url = check_public_url(public_url) if public_url is not None else None
    except ValueError as e:
        fail(f"--public-url: {e}")
    config = settings(ctx, host=host, port=port, admin_host=admin_host, admin_port=admin_port, workers=workers,
                      public_url=public_url)
    # The supervisor runs for as long as the server does: it becomes a fresh interpreter (same pid, same
    # stdout) that imports only what it needs, instead of keeping the whole CLI in memory.
    sys.stdout.flush()
    os.environ[SUPERVISOR_ENV] = orjson.dumps(settings_dict(config)).decode()
    os.execv(sys.executable, [sys.executable, "-m", "sluice.server", str(config.data_dir)])
