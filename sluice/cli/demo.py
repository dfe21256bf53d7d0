"""`sluice demo`: a simulated Drip account and a product send a few campaigns and the orders that follow,
through a running sluice, into sources of their own (`demo_drip`, `demo_product`), so a real Drip source can
have `drip`. Idempotent: a second run sends nothing more; `--reset` removes the sources and their tables."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from sluice.catalog.models import Source
from sluice.catalog.store import CatalogError
from sluice.cli.base import admin_request, catalog, fail, main, running_server, settings
from sluice.demo_traffic import generate

DEMO_SOURCES = (("drip", "Drip (demo)", "demo_drip"), ("http", "Product (demo)", "demo_product"))
MARKER = "demo.json"  # the demo's `now` (so a run cut short sends the same messages again) and whether it finished
NEXT_STEPS = (
    "\nTables fill within a second or two. Then:\n"
    "  sluice report email --by campaign\n"
    '  sluice report attribution --conversion "Order Completed" --value revenue\n'
    '  sluice query "select * from _sluice.identity_map limit 10"'
)


def _marker(data_dir: Path) -> dict[str, Any]:
    try:
        return dict(orjson.loads((data_dir / MARKER).read_bytes()))
    except (OSError, ValueError):
        return {}


def _sources(ctx: click.Context) -> list[Source]:
    cat, out = catalog(ctx), []
    for type_, name, schema in DEMO_SOURCES:
        try:
            source = cat.get_source(schema)
        except CatalogError:
            source = cat.create_source(type_, name, schema)
            click.echo(f"created {type_} source {source.id} ({name}) with schema {schema}")
        if source.type != type_:
            fail(f"schema {schema} belongs to a {source.type} source, not the demo's; delete it or run `sluice demo"
                 " --reset`")
        out.append(source)
    return out


def reset(ctx: click.Context, data_dir: Path) -> None:
    """Delete the demo's sources, then their tables (through the server, which owns the warehouse, if it runs)."""
    cat = catalog(ctx)
    for _, _, schema in DEMO_SOURCES:
        try:
            source = cat.delete_source(schema)
            click.echo(f"deleted source {source.id} ({source.name})")
        except CatalogError:
            pass
        if running_server(data_dir) is not None:
            result = admin_request(data_dir, "POST", "/admin/drop-schema", {"schema": schema})
        else:
            from sluice.datadir import WAREHOUSE_FILE
            from sluice.warehouse.duckdb_engine import DuckDBWarehouse

            result = {"dropped": False}
            if (data_dir / WAREHOUSE_FILE).exists():
                warehouse = DuckDBWarehouse(data_dir / WAREHOUSE_FILE)
                try:
                    result["dropped"] = warehouse.drop_schema(schema)
                finally:
                    warehouse.close()
        if result["dropped"]:
            click.echo(f"dropped schema {schema} from the warehouse")
    (data_dir / MARKER).unlink(missing_ok=True)


@main.command()
@click.option("--subscribers", type=int, default=60, show_default=True)
@click.option("--campaigns", type=int, default=3, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--reset", "reset_", is_flag=True, help="Remove the demo's sources and their tables.")
@click.pass_context
def demo(ctx: click.Context, subscribers: int, campaigns: int, seed: int, reset_: bool) -> None:
    """Simulate a Drip account (its webhooks, and its Segment integration's tracks as Segment's Webhooks
    destination forwards them) and a product's sign-ups and orders, through the real endpoints."""
    data_dir = settings(ctx).data_dir
    if reset_:
        reset(ctx, data_dir)
        return
    url = running_server(data_dir, "url")
    if url is None:
        fail(f"start the server first (`sluice serve`, data dir {data_dir}), then run `sluice demo`")
        return
    drip, product = _sources(ctx)
    marker = _marker(data_dir)
    if marker.get("sent") and marker.get("sources") == [drip.id, product.id]:
        click.echo("the demo's data is already there (sources demo_drip and demo_product): nothing sent again;"
                   " `sluice demo --reset` removes it")
        click.echo(NEXT_STEPS)
        return
    if marker.get("sources") != [drip.id, product.id]:
        marker = {"sources": [drip.id, product.id], "now": datetime.now(UTC).isoformat(), "sent": False}
        (data_dir / MARKER).write_bytes(orjson.dumps(marker))
    traffic = generate(seed=seed, campaigns=campaigns, subscribers=subscribers,
                       now=datetime.fromisoformat(marker["now"]))
    with httpx.Client(base_url=url, timeout=30) as client:
        for hook in traffic.webhooks:  # Drip posts one webhook per event
            r = client.post(f"/webhooks/drip/{drip.webhook_token}", json=hook)
            if r.status_code != 200:
                fail(f"webhook refused: {r.status_code} {r.text}")
        # Drip's Segment integration sends to Segment only; Segment's Webhooks (Actions) destination forwards the
        # tracks in batches, signed as Segment signs them (the HMAC of the batch's first event).
        for i in range(0, len(traffic.tracks), 100):
            batch = traffic.tracks[i : i + 100]
            signature = hmac.new((drip.segment_secret or "").encode(), orjson.dumps(batch[0]), hashlib.sha1)
            r = client.post(f"/webhooks/segment/{drip.segment_token}", content=orjson.dumps(batch),
                            headers={"Content-Type": "application/json", "X-Signature": signature.hexdigest()})
            if r.status_code != 200:
                fail(f"batch refused: {r.status_code} {r.text}")
        for i in range(0, len(traffic.product), 100):  # the product's own Segment library
            r = client.post("/v1/batch", json={"batch": traffic.product[i : i + 100]}, auth=(product.write_key, ""))
            if r.status_code != 200:
                fail(f"batch refused: {r.status_code} {r.text}")
    (data_dir / MARKER).write_bytes(orjson.dumps({**marker, "sent": True}))
    click.echo(f"sent to {url} as sources {drip.schema} and {product.schema}:")
    for name, n in sorted(traffic.summary().items()):
        click.echo(f"  {n:6d}  {name}")
    click.echo(NEXT_STEPS)
