"""`sluice recover`: after the log was replaced, emptied or lost its newest events, let the
warehouses continue within the current log (docs/configuration.md#recovery)."""

from __future__ import annotations

import click

from sluice.cli.base import catalog, fail, main, running_server, settings


@main.command()
@click.pass_context
def recover(ctx: click.Context) -> None:
    """Restart every warehouse cursor within the current log; rows the warehouses hold are skipped."""
    from sluice.delivery.state import LOG_FILE
    from sluice.log.sqlite import SqliteLog
    from sluice.server import WAREHOUSE_FILE
    from sluice.warehouse.duckdb_engine import DuckDBWarehouse
    from sluice.warehouse.loader import Caps
    from sluice.warehouse.postgres_engine import PostgresWarehouse

    config = settings(ctx)
    data_dir = config.data_dir
    if running_server(data_dir) is not None:
        fail(f"stop the server using {data_dir} first: recovery rewrites the warehouse's cursors")
        return
    log = SqliteLog(data_dir / LOG_FILE, config.dedup_window_seconds)
    generation, head = log.generation(), log.head()
    log.close()
    caps = Caps.from_settings(config)
    changed = 0
    warehouse = DuckDBWarehouse(data_dir / WAREHOUSE_FILE, caps)
    try:
        for consumer in warehouse.cursors():
            old = warehouse.adopt_log(consumer, generation, head)
            if old is not None:
                changed += 1
                click.echo(f"{consumer}: was at seq {old.high_seq} of log {old.log_generation or '(unknown)'};"
                           f" continues in log {generation} (ends at seq {head})")
    finally:
        warehouse.close()
    for dest in catalog(ctx).list_destinations():
        if dest.type != "postgres":
            continue
        pg = PostgresWarehouse(dest.config["url"], caps)
        try:
            old = pg.adopt_log(dest.consumer, generation, head)
        except Exception as e:  # unreachable: say so, recover the others
            click.echo(f"{dest.name}: could not reach PostgreSQL ({type(e).__name__}: {e}); run this again later",
                       err=True)
            continue
        finally:
            pg.close()
        if old is not None:
            changed += 1
            click.echo(f"{dest.name}: was at seq {old.high_seq}; continues in log {generation}")
    if changed:
        click.echo("start the server: what the log holds is loaded again, and rows the warehouses have are skipped")
    else:
        click.echo("every warehouse cursor already belongs to this log: nothing to do")
