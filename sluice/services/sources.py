"""Sources: create, list with what arrived, rotate a key, delete, and the setup steps a user follows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluice.catalog.models import Source
from sluice.catalog.store import Catalog
from sluice.settings import Settings
from sluice.sources.drip_connect import server_info
from sluice.sources.public_url import PublicURL, public_base
from sluice.warehouse.naming import quote_ident, sql_string

# The delivery state's named writes (sluice/delivery/state.py CLI_OPS): the CLI's goes through the running
# server or the files, the console's straight to the server's writer.
DeliveryWrite = Callable[..., Any]
Query = Callable[[str], dict[str, Any]]

DRIP_SETUP = """\
Connect Drip (two ways; use either or both):
  A. Drip webhooks: `sluice sources connect-drip SOURCE --account-id ID --api-token TOKEN` registers the
     webhook URL above in your Drip account (or in Drip, Settings > Webhooks > New webhook: paste it, tick
     every event and "include received email" for Email Delivered).
  B. Drip -> Segment -> sluice: Drip's Segment integration sends only to Segment. Where Drip's
     data already flows into a Segment source, add Segment's Webhooks destination to that source
     with the Segment webhook URL and shared secret above.
Docs: docs/connect-drip.md"""

DRIP_STEPS = (
    "In Drip, open Settings > Webhooks and choose New webhook.",
    "Paste the webhook URL above as the Post URL.",
    'Tick the events you want (tick "include received email" for Email Delivered) and save.',
    "From then on, every event Drip sends appears under Live events within a second.",
)

HTTP_SETUP = "Point any Segment library at {base} with this write key; analytics.js: docs/tracking-api.md."

# Segment's tables every source may have (reference/segment-warehouse.md); one row per message in each.
MESSAGE_TABLES = ("tracks", "identifies", "pages", "screens", "groups", "aliases")


def create(catalog: Catalog, type_: str, name: str, schema: str, allowed_origins: list[str] | None = None,
           store_ips: bool = True) -> Source:
    """Raises CatalogError (a ValueError) with the reason: a taken name or schema, a bad schema name, ..."""
    return catalog.create_source(type_, name, schema, allowed_origins or [], store_ips)


def delete(catalog: Catalog, ref: str, write: DeliveryWrite) -> Source:
    """Delete a source and its destinations (their delivery state too); its warehouse schema stays."""
    doomed = catalog.list_destinations(catalog.get_source(ref).id)  # deleted with it (ON DELETE CASCADE)
    source = catalog.delete_source(ref)
    for dest in doomed:
        write("forget", consumer=dest.consumer)
    return source


def public_url(settings: Settings, server_running: bool) -> PublicURL:
    """The base of every URL a sender needs (a public URL, else the running server's real address), with a
    warning when Drip cannot reach it (sluice/sources/public_url.py)."""
    return public_base(settings, server_info(settings.data_dir) if server_running else None)


def setup_text(source: Source, base_url: str) -> str:
    return DRIP_SETUP if source.type == "drip" else HTTP_SETUP.format(base=base_url)


@dataclass(frozen=True)
class Arrived:
    """What a source's warehouse schema holds: messages loaded, and when the last one arrived."""

    events: int
    last_event: Any  # a datetime, or None before the first one


def arrived(query: Query, schemas: list[str]) -> dict[str, Arrived]:
    """Per schema: rows over Segment's message tables (one row per message), and the newest received_at.
    One read-only query for every schema at once."""
    if not schemas:
        return {}
    tables = query(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ("
        + ", ".join(sql_string(s) for s in schemas) + ") AND table_name IN ("
        + ", ".join(sql_string(t) for t in MESSAGE_TABLES) + ")"
    )["rows"]
    out = {s: Arrived(0, None) for s in schemas}
    if not tables:
        return out
    parts = [
        f"SELECT {sql_string(s)} AS s, count(*) AS n, max(received_at) AS last FROM {quote_ident(s)}.{quote_ident(t)}"
        for s, t in tables
    ]
    rows = query(f"SELECT s, sum(n), max(last) FROM ({' UNION ALL '.join(parts)}) GROUP BY s")["rows"]
    for s, n, last in rows:
        out[s] = Arrived(int(n), last)
    return out
