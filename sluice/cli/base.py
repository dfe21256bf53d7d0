"""The `sluice` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from sluice.catalog.store import Catalog
from sluice.settings import Settings


def settings(ctx: click.Context, **overrides: Any) -> Settings:
    try:
        return Settings.from_env(data_dir=ctx.obj.get("data_dir"), **overrides)
    except ValueError as e:
        raise click.ClickException(str(e)) from None


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def print_json(obj: Any) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str).decode())


@click.group()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SLUICE_DATA_DIR",
    help="Where sluice keeps its catalog, log and warehouse (default ./sluice-data).",
)
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """sluice: Segment-compatible pipeline for Drip email engagement data."""
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir
    # The data dir holds write keys, tokens and everyone's events: files sluice creates are private.
    os.umask(0o077)


def catalog(ctx: click.Context) -> Catalog:
    return Catalog(settings(ctx).data_dir)


def cell(v: Any) -> str:
    if v is None:
        return ""
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


def print_table(columns: list[str], rows: list[list[Any]]) -> None:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def running_server(data_dir: Path) -> str | None:
    """The URL of the server using this data dir, if one is running."""
    from sluice.server import SERVER_FILE

    try:
        info = orjson.loads((data_dir / SERVER_FILE).read_bytes())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return str(info["url"])


def admin_request(data_dir: Path, method: str, path: str, payload: Any = None) -> Any:
    """Call the running server's admin API with the admin token from the data dir."""
    from sluice.server import admin_token

    url = running_server(data_dir)
    if url is None:
        raise click.ClickException(f"no sluice server is running on {data_dir}")
    r = httpx.request(
        method, f"{url}{path}", json=payload, headers={"Authorization": f"Bearer {admin_token(data_dir)}"},
        timeout=300,
    )
    try:
        body = r.json()
    except ValueError:
        raise click.ClickException(f"the server answered {r.status_code}: {r.text[:300]}") from None
    if r.status_code != 200:
        raise click.ClickException(body.get("error", r.text))
    return body
