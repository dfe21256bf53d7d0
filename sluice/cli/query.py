"""`sluice query`: SQL on the warehouse, whether or not the server is running."""

from __future__ import annotations

import csv
import io
from typing import Any

import click
import duckdb

from sluice.cli.base import admin_request, cell, main, print_json, print_table, running_server, settings
from sluice.datadir import WAREHOUSE_FILE
from sluice.settings import Settings


def run_query(config: Settings, sql: str) -> dict[str, Any]:
    """SQL on the warehouse: through the server when it runs (it owns the file), else directly; read-only
    and within the same time and row limits either way."""
    from sluice.warehouse.duckdb_engine import query_file
    from sluice.warehouse.readonly import QueryLimits

    data_dir = config.data_dir
    if running_server(data_dir) is not None:
        return admin_request(data_dir, "POST", "/admin/query", {"sql": sql})
    path = data_dir / WAREHOUSE_FILE
    if not path.exists():
        raise click.ClickException(f"no warehouse yet at {path}: start `sluice serve` and send some events")
    try:
        return query_file(path, sql, QueryLimits(config.query_time_limit_seconds, config.query_max_rows))
    except duckdb.IOException as e:
        if "lock" in str(e).lower():  # a server starting up, or another process holding the file
            raise click.ClickException(f"{path} is in use by another process (a server starting?): try again") from None
        raise click.ClickException(str(e)) from None
    except Exception as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def query(ctx: click.Context, sql: str, fmt: str) -> None:
    """Run SQL on the warehouse, whether or not the server is running."""
    config = settings(ctx)
    result = run_query(config, sql)
    columns, rows = result["columns"], result["rows"]
    if result.get("truncated"):
        click.echo(f"note: only the first {len(rows):,} rows are shown (SLUICE_QUERY_MAX_ROWS)", err=True)
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
