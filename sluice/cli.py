"""The `sluice` command."""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from sluice.catalog.models import Source
from sluice.catalog.store import Catalog, CatalogError
from sluice.settings import Settings

DRIP_SETUP = """\
Connect Drip (two ways; use either or both):
  A. Drip's Segment integration: in Drip, Settings > Integrations > Segment, paste the write key
     above. Drip then sends Email Delivered/Opened/Link Clicked/Bounced/Unsubscribed/Marked as
     Spam as Segment track calls; point the integration's endpoint at {base}
     (sluice's URL replaces api.segment.io; the /v1/* paths are the same).
  B. Drip webhooks: in Drip, Settings > Webhooks > New webhook, paste the webhook URL above and
     tick the events you want (tick "include received email" for Email Delivered).
Docs: docs/connect-drip.md"""


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    return Settings.from_env(data_dir=ctx.obj.get("data_dir"), **overrides)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _print_json(obj: Any) -> None:
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


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8088).")
@click.option("--data-dir", "serve_data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Data directory (also SLUICE_DATA_DIR).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, serve_data_dir: Path | None) -> None:
    """Run the server: ingest, log, delivery and warehouse loading."""
    from sluice.server import AlreadyRunning
    from sluice.server import serve as run

    if serve_data_dir is not None:
        ctx.obj["data_dir"] = serve_data_dir
    try:
        run(_settings(ctx, host=host, port=port))
    except AlreadyRunning as e:
        _fail(str(e))


# -- sources ----------------------------------------------------------------------------------


@main.group()
def sources() -> None:
    """Create and manage sources (each has a write key and its own warehouse schema)."""


def _catalog(ctx: click.Context) -> Catalog:
    return Catalog(_settings(ctx).data_dir)


def _show_source(ctx: click.Context, source: Source, as_json: bool) -> None:
    settings = _settings(ctx)
    public = source.public(settings.base_url)
    if as_json:
        _print_json(public)
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
        click.echo(DRIP_SETUP.format(base=settings.base_url))
    else:
        click.echo("")
        click.echo(f"Point any Segment library at {settings.base_url} with this write key.")


@sources.command("create")
@click.argument("type_", metavar="TYPE", type=click.Choice(["http", "drip"]))
@click.option("--name", required=True, help="A nickname, e.g. Drip.")
@click.option("--schema", required=True, help="Warehouse schema name: lowercase letters, digits, underscores.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def sources_create(ctx: click.Context, type_: str, name: str, schema: str, as_json: bool) -> None:
    """Create a source and print its id, write key and (drip) webhook URL."""
    try:
        source = _catalog(ctx).create_source(type_, name, schema)
    except CatalogError as e:
        _fail(str(e))
        return
    _show_source(ctx, source, as_json)


@sources.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_list(ctx: click.Context, as_json: bool) -> None:
    """List sources."""
    base = _settings(ctx).base_url
    items = [s.public(base) for s in _catalog(ctx).list_sources()]
    if as_json:
        _print_json(items)
        return
    if not items:
        click.echo("no sources yet: sluice sources create http --name Web --schema web")
        return
    _print_table(["id", "type", "name", "schema", "write_key"], [[i[k] for k in ("id", "type", "name", "schema",
                 "write_key")] for i in items])


@sources.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show a source (by id, schema or name) with its setup steps."""
    try:
        _show_source(ctx, _catalog(ctx).get_source(ref), as_json)
    except CatalogError as e:
        _fail(str(e))


@sources.command("rotate-key")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_rotate(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Give a source a new write key; the old one stops working at once."""
    try:
        _show_source(ctx, _catalog(ctx).rotate_key(ref), as_json)
    except CatalogError as e:
        _fail(str(e))


@sources.command("delete")
@click.argument("ref")
@click.pass_context
def sources_delete(ctx: click.Context, ref: str) -> None:
    """Delete a source: its write key stops working at once. Warehouse tables are kept."""
    try:
        source = _catalog(ctx).delete_source(ref)
    except CatalogError as e:
        _fail(str(e))
        return
    click.echo(f"deleted source {source.id} ({source.name}); schema {source.schema} stays in the warehouse")


# -- query ------------------------------------------------------------------------------------


def _running_server(data_dir: Path) -> str | None:
    from sluice.server import SERVER_FILE

    path = data_dir / SERVER_FILE
    try:
        info = orjson.loads(path.read_bytes())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return str(info["url"])


def run_query(data_dir: Path, sql: str) -> dict[str, Any]:
    """SQL on the warehouse: through the server when it runs (it owns the file), else directly."""
    from sluice.server import WAREHOUSE_FILE, admin_token
    from sluice.warehouse.duckdb_engine import query_file

    url = _running_server(data_dir)
    if url is not None:
        r = httpx.post(
            f"{url}/admin/query",
            json={"sql": sql},
            headers={"Authorization": f"Bearer {admin_token(data_dir)}"},
            timeout=300,
        )
        body = r.json()
        if r.status_code != 200:
            raise click.ClickException(body.get("error", r.text))
        return body
    path = data_dir / WAREHOUSE_FILE
    if not path.exists():
        raise click.ClickException(f"no warehouse yet at {path}: start `sluice serve` and send some events")
    try:
        return query_file(path, sql)
    except Exception as e:
        raise click.ClickException(str(e)) from None


def _cell(v: Any) -> str:
    if v is None:
        return ""
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


def _print_table(columns: list[str], rows: list[list[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@main.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def query(ctx: click.Context, sql: str, fmt: str) -> None:
    """Run SQL on the warehouse, whether or not the server is running."""
    result = run_query(_settings(ctx).data_dir, sql)
    columns, rows = result["columns"], result["rows"]
    if fmt == "json":
        _print_json([dict(zip(columns, r, strict=True)) for r in rows])
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in r] for r in rows])
        click.echo(out.getvalue(), nl=False)
    else:
        _print_table(columns, rows)
        click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


if __name__ == "__main__":
    main()
