"""`sluice query`: SQL on the warehouse, whether or not the server is running."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import click

from sluice.cli.base import admin_request, cell, main, print_json, print_table, running_server, settings


def run_query(data_dir: Path, sql: str) -> dict[str, Any]:
    """SQL on the warehouse: through the server when it runs (it owns the file), else directly."""
    from sluice.server import WAREHOUSE_FILE
    from sluice.warehouse.duckdb_engine import query_file

    if running_server(data_dir) is not None:
        return admin_request(data_dir, "POST", "/admin/query", {"sql": sql})
    path = data_dir / WAREHOUSE_FILE
    if not path.exists():
        raise click.ClickException(f"no warehouse yet at {path}: start `sluice serve` and send some events")
    try:
        return query_file(path, sql)
    except Exception as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def query(ctx: click.Context, sql: str, fmt: str) -> None:
    """Run SQL on the warehouse, whether or not the server is running."""
    result = run_query(settings(ctx).data_dir, sql)
    columns, rows = result["columns"], result["rows"]
    if fmt == "json":
        print_json([dict(zip(columns, r, strict=True)) for r in rows])
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([[cell(v) for v in r] for r in rows])
        click.echo(out.getvalue(), nl=False)
    else:
        print_table(columns, rows)
        click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
