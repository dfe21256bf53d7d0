"""The `sluice` command."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from sluice.catalog.store import Catalog
from sluice.datadir import LOG_FILE, DataDirError
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


class Group(click.Group):
    """Every command ends in one line, never a traceback, when the data dir or the disk is the problem."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DataDirError as e:
            fail(str(e))
        except sqlite3.Error as e:  # a SQLite file of the data dir failed mid-command
            fail(f"the data directory's SQLite files failed: {e}")
        except OSError as e:
            fail(f"{e.strerror or e}{f': {e.filename}' if e.filename else ''}")


@click.group(cls=Group)
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


def _set_data_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.find_root().ensure_object(dict)["data_dir"] = value


def accept_data_dir_anywhere(group: click.Group) -> None:
    """Give every subcommand and subgroup its own `--data-dir`, so that it may come before or after the
    subcommand (`sluice query "select 1" --data-dir X`). Given twice, the later one wins. No envvar here: only
    `sluice --data-dir` reads SLUICE_DATA_DIR, so an explicit flag anywhere beats the environment."""
    for command in group.commands.values():
        if not any(isinstance(p, click.Option) and "--data-dir" in p.opts for p in command.params):
            command.params.append(click.Option(
                ["--data-dir"], type=click.Path(file_okay=False, path_type=Path), expose_value=False,
                callback=_set_data_dir, help="Data directory (also SLUICE_DATA_DIR; default ./sluice-data).",
            ))
        if isinstance(command, click.Group):
            accept_data_dir_anywhere(command)


def catalog(ctx: click.Context) -> Catalog:
    """The catalog SLUICE_CATALOG names (the data dir's catalog.db by default; sluice/backends.py)."""
    from sluice.backends import open_catalog

    try:
        return open_catalog(settings(ctx))  # type: ignore[no-any-return]
    except ValueError as e:
        raise click.ClickException(str(e)) from None


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


def running_server(data_dir: Path, which: str = "admin_url") -> str | None:
    """A URL of the server using this data dir, if one is running: its admin API's, or ("url") ingest's."""
    from sluice.server import SERVER_FILE

    try:
        info = orjson.loads((data_dir / SERVER_FILE).read_bytes())
        os.kill(int(info["pid"]), 0)
        return str(info[which])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def admin_request(data_dir: Path, method: str, path: str, payload: Any = None) -> Any:
    """Call the running server's admin API (its own listener) with the admin token from the data dir."""
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


def delivery_write(data_dir: Path, op: str, config: Settings | None = None, **args: Any) -> Any:
    """One of the delivery state's writes (sluice/delivery/state.py): through the running server, so that
    log.db keeps one writer, or directly when no server runs. Shared state (PostgreSQL, `config` naming it)
    is written directly: every node sees it at once (cli/shared_state.py)."""
    from sluice.delivery.state import DeliveryState

    if config is not None:
        from sluice.cli.shared_state import shared_write

        done, result = shared_write(config, op, **args)
        if done:
            return result
    if running_server(data_dir) is not None:
        return admin_request(data_dir, "POST", "/admin/delivery-state", {"op": op, "args": args})["result"]
    return DeliveryState(data_dir / LOG_FILE).apply(op, **args)
