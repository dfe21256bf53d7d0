"""`sluice demo`: a simulated Drip account sends a few campaigns through a running sluice."""

from __future__ import annotations

import hashlib
import hmac

import click
import httpx
import orjson

from sluice.catalog.store import CatalogError
from sluice.cli.base import catalog, fail, main, running_server, settings
from sluice.demo_traffic import generate

EXAMPLE_SQL = (
    "with d as (select email_id, any_value(email_subject) as subject, count(*) as delivered"
    " from {s}.email_delivered group by 1),"
    " o as (select email_id, count(distinct coalesce(user_id, anonymous_id)) as openers"
    " from {s}.email_opened group by 1),"
    " c as (select email_id, count(distinct coalesce(user_id, anonymous_id)) as clickers"
    " from {s}.email_link_clicked group by 1)"
    " select email_id, subject, delivered, round(100.0 * openers / delivered, 1) as open_rate,"
    " round(100.0 * coalesce(clickers, 0) / delivered, 1) as click_rate"
    " from d left join o using (email_id) left join c using (email_id) order by delivered desc"
)


@main.command()
@click.option("--schema", default="drip", show_default=True, help="The drip source to send as (created if missing).")
@click.option("--subscribers", type=int, default=60, show_default=True)
@click.option("--campaigns", type=int, default=3, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.pass_context
def demo(ctx: click.Context, schema: str, subscribers: int, campaigns: int, seed: int) -> None:
    """Simulate a Drip account: its webhooks, and its Segment integration's tracks as Segment's Webhooks destination
    forwards them, through the real endpoints."""
    data_dir = settings(ctx).data_dir
    url = running_server(data_dir, "url")
    if url is None:
        fail(f"start the server first (`sluice serve`, data dir {data_dir}), then run `sluice demo`")
        return
    cat = catalog(ctx)
    try:
        source = cat.get_source(schema)
    except CatalogError:
        source = cat.create_source("drip", "Drip (demo)", schema)
        click.echo(f"created drip source {source.id} with schema {source.schema}")
    if source.type != "drip":
        fail(f"source {schema!r} is a {source.type} source; the demo needs a drip source")
    traffic = generate(seed=seed, campaigns=campaigns, subscribers=subscribers)
    with httpx.Client(base_url=url, timeout=30) as client:
        for hook in traffic.webhooks:  # Drip posts one webhook per event
            r = client.post(f"/webhooks/drip/{source.webhook_token}", json=hook)
            if r.status_code != 200:
                fail(f"webhook refused: {r.status_code} {r.text}")
        # Drip's Segment integration sends to Segment only; Segment's Webhooks (Actions) destination forwards the
        # tracks in batches, signed as Segment signs them (the HMAC of the batch's first event).
        for i in range(0, len(traffic.tracks), 100):
            batch = traffic.tracks[i : i + 100]
            signature = hmac.new((source.segment_secret or "").encode(), orjson.dumps(batch[0]), hashlib.sha1)
            r = client.post(f"/webhooks/segment/{source.segment_token}", content=orjson.dumps(batch),
                            headers={"Content-Type": "application/json", "X-Signature": signature.hexdigest()})
            if r.status_code != 200:
                fail(f"batch refused: {r.status_code} {r.text}")
    click.echo(f"sent to {url} as source {source.schema}:")
    for name, n in sorted(traffic.summary().items()):
        click.echo(f"  {n:6d}  {name}")
    click.echo("\nTables fill within a second or two. Try:")
    click.echo(f'  sluice query "select event_text, count(*) from {source.schema}.tracks group by 1 order by 2 desc"')
    click.echo(f'  sluice query "{EXAMPLE_SQL.format(s=source.schema)}"')
