"""`sluice report email|attribution`: the email reports, whether or not the server is running (through its
admin API when it runs, since it owns the DuckDB file; directly on the file otherwise)."""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import urlencode

import click
import duckdb

from sluice.cli.base import admin_request, catalog, main, print_json, print_table, running_server, settings
from sluice.datadir import WAREHOUSE_FILE

FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                      show_default=True)
SOURCE = click.option("--source", help="A source's id, schema or name (default: every source with email events).")
WAREHOUSE = click.option("--warehouse", help="A postgres destination's id or name (default: the embedded one).")
SINCE = click.option("--since", default="30d", show_default=True,
                     help="A duration before now (30d, 12h), a date (2024-05-01) or an ISO-8601 time (UTC).")
UNTIL = click.option("--until", help="Same forms as --since (default: now).")
MPP_NOTE = (
    "note: opens include machine opens (Apple Mail Privacy Protection): Drip's open webhooks carry no user agent"
    " or IP to tell them apart.\n      unique_clicks leaves out bot clicks (counted in bot_clicks); docs/reports.md"
    " defines every number."
)


def fetch(ctx: click.Context, kind: str, params: dict[str, str | None]) -> list[dict[str, Any]]:
    """The report's rows from the running server, else computed here on the warehouse file."""
    from sluice.analytics.reader import DuckDBReader
    from sluice.analytics.service import ReportError, report_service
    from sluice.warehouse.duckdb_engine import open_file
    from sluice.warehouse.readonly import QueryLimits, QueryRefused

    config = settings(ctx)
    given = {k: v for k, v in params.items() if v is not None}
    if running_server(config.data_dir) is not None:
        rows: list[dict[str, Any]] = admin_request(config.data_dir, "GET", f"/api/reports/{kind}?{urlencode(given)}")
        return rows
    limits = QueryLimits(config.query_time_limit_seconds, config.query_max_rows)
    path = config.data_dir / WAREHOUSE_FILE
    opened: list[duckdb.DuckDBPyConnection] = []

    def embedded() -> DuckDBReader:
        if not path.exists():
            raise ValueError(f"no warehouse yet at {path}: start `sluice serve` and send some events")
        try:
            opened.append(open_file(path))
        except duckdb.IOException as e:
            if "lock" in str(e).lower():  # a server starting up, or another process holding the file
                raise ValueError(f"{path} is in use by another process (a server starting?): try again") from None
            raise ValueError(str(e)) from None
        return DuckDBReader(opened[-1].cursor, limits)

    try:
        return report_service(catalog(ctx), embedded, limits, config)(kind, given)
    except (ReportError, QueryRefused) as e:
        raise click.ClickException(str(e)) from None
    finally:
        for con in opened:
            con.close()


def show(rows: list[dict[str, Any]], fmt: str, columns: list[str], rates: tuple[str, ...] = ()) -> None:
    if fmt == "json":
        print_json(rows)
        return
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if r[k] is None else r[k] for k in columns} for r in rows)
        click.echo(out.getvalue(), nl=False)
        return
    # The table is for reading: rates as percentages.
    print_table(columns, [[f"{r[c] * 100:.2f}%" if c in rates else r[c] for c in columns] for r in rows])
    click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


@main.group()
def report() -> None:
    """Email reports over the warehouse (docs/reports.md): rates per campaign, email, day or week; attribution."""


@report.command("email")
@SOURCE
@WAREHOUSE
@click.option("--by", type=click.Choice(["campaign", "email", "day", "week"]), default="campaign", show_default=True)
@SINCE
@UNTIL
@FORMAT
@click.pass_context
def email(ctx: click.Context, source: str | None, warehouse: str | None, by: str, since: str, until: str | None,
          fmt: str) -> None:
    """Deliveries, unique opens and clicks, unsubscribes, hard bounces and complaints, every rate over deliveries."""
    from sluice.analytics.email_report import KEYS

    rows = fetch(ctx, "email", {"source": source, "warehouse": warehouse, "by": by, "since": since, "until": until})
    show(rows, fmt, list(KEYS), tuple(k for k in KEYS if k.endswith("_rate")))
    if fmt == "table":
        click.echo(MPP_NOTE, err=True)


@report.command("attribution")
@click.option("--conversion", required=True, help='The conversion event, from any source (e.g. "Order Completed").')
@click.option("--value", help="The property summed as revenue, in its own unit (e.g. revenue).")
@click.option("--window", default="5d", show_default=True, help="How long before a conversion an email counts.")
@click.option("--model", type=click.Choice(["last", "first", "linear"]), default="last", show_default=True)
@click.option("--by", type=click.Choice(["campaign", "email"]), default="campaign", show_default=True)
@SOURCE
@WAREHOUSE
@SINCE
@UNTIL
@FORMAT
@click.pass_context
def attribution(ctx: click.Context, conversion: str, value: str | None, window: str, model: str, by: str,
                source: str | None, warehouse: str | None, since: str, until: str | None, fmt: str) -> None:
    """Conversions (and revenue) credited to the emails people opened or clicked within the window before."""
    rows = fetch(ctx, "attribution", {"conversion": conversion, "value": value, "window": window, "model": model,
                                      "by": by, "source": source, "warehouse": warehouse, "since": since,
                                      "until": until})
    show(rows, fmt, ["key", "conversions", "revenue", "touches"])


@report.command("reconcile")
@click.option("--source", required=True, help="The Drip source (connected with `sources connect-drip`).")
@click.option("--since", default="7d", show_default=True, help="The first day: a duration before now or a date.")
@UNTIL
@FORMAT
@click.pass_context
def reconcile(ctx: click.Context, source: str, since: str, until: str | None, fmt: str) -> None:
    """sluice's counts beside Drip's own email metrics for the same days: where they differ, a webhook was missed
    (or arrived twice)."""
    rows = fetch(ctx, "reconcile", {"source": source, "since": since, "until": until})
    show(rows, fmt, ["key", "title", "metric", "sluice", "drip", "difference"])
    if fmt == "table":
        differ = [r for r in rows if r["difference"]]
        click.echo(f"{len(differ)} of {len(rows)} counts differ from Drip's" if differ else
                   "every count matches Drip's", err=True)
