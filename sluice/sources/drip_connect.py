"""Connect a Drip source to a real Drip account: register sluice's webhook through Drip's webhooks API
(`POST /v2/:account_id/webhooks`, every documented email and subscriber event, `include_received_email`
on, so `Email Delivered` arrives), check Drip has it, and remember it; `disconnect_drip` removes it.

The CLI (`sluice sources connect-drip|disconnect-drip`) and the console call these two functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from sluice.settings import Settings
from sluice.sources.drip import DOCUMENTED_PROPERTIES
from sluice.sources.drip_api import DripAPI, DripAPIError
from sluice.sources.drip_store import DripStore
from sluice.sources.public_url import public_base

WEBHOOK_EVENTS = sorted(DOCUMENTED_PROPERTIES)  # every event Drip documents for webhooks
SERVER_FILE = "server.json"  # the running server's addresses (sluice/server/supervisor.py writes it)


class DripConnectError(ValueError):
    """Connecting or disconnecting failed; the message is meant for the user."""


def server_info(data_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(orjson.loads((data_dir / SERVER_FILE).read_bytes()))
    except (OSError, ValueError, TypeError):
        return None


def _drip_source(catalog: Any, source_name: str) -> Any:
    try:
        source = catalog.get_source(source_name)
    except ValueError as e:
        raise DripConnectError(str(e)) from None
    if source.type != "drip":
        raise DripConnectError(f"source {source.schema!r} is a {source.type} source: connect a drip source")
    return source


def connect_drip(settings: Settings, catalog: Any, source_name: str, account_id: str, api_token: str
                 ) -> dict[str, Any]:
    """Register (or find) the source's webhook in the Drip account; returns what was set up, never the token."""
    source = _drip_source(catalog, source_name)
    base = public_base(settings, server_info(settings.data_dir))
    post_url = source.webhook_url(base.url)
    try:
        with DripAPI(account_id, api_token, settings.drip_api_url) as api:
            hook = next((w for w in api.webhooks() if w.get("post_url") == post_url), None)
            if hook is not None and (not hook.get("include_received_email")
                                     or set(hook.get("events") or []) != set(WEBHOOK_EVENTS)):
                api.delete_webhook(str(hook["id"]))  # one set up by hand, with fewer events: replace it
                hook = None
            if hook is None:
                hook = api.create_webhook(post_url, WEBHOOK_EVENTS, include_received_email=True)
            if not hook.get("id"):
                raise DripConnectError(f"Drip did not answer the webhook's id: {hook}")
            found = api.webhook(str(hook["id"]))  # check it is there, as registered
    except DripAPIError as e:
        raise DripConnectError(str(e)) from None
    except ValueError as e:  # a malformed account id or token
        raise DripConnectError(str(e)) from None
    if found.get("post_url") != post_url or not found.get("include_received_email"):
        raise DripConnectError(f"Drip does not show the webhook as registered (it shows {found})")
    connection = DripStore(settings.data_dir).save(source.id, str(account_id).strip(), api_token.strip(),
                                                   str(found["id"]), post_url)
    return {"source": source.schema, **connection.public(), "events": sorted(found.get("events") or []),
            "include_received_email": True, "warning": base.warning}


def disconnect_drip(settings: Settings, catalog: Any, source_name: str) -> dict[str, Any]:
    """Remove the source's webhook from the Drip account (already gone there: fine) and forget the account."""
    source = _drip_source(catalog, source_name)
    store = DripStore(settings.data_dir)
    connection = store.get(source.id)
    if connection is None:
        raise DripConnectError(f"source {source.schema!r} is not connected to a Drip account")
    try:
        with DripAPI(connection.account_id, connection.api_token, settings.drip_api_url) as api:
            api.delete_webhook(connection.webhook_id)
    except DripAPIError as e:
        if e.status != 404:
            raise DripConnectError(str(e)) from None
    store.delete(source.id)
    return {"source": source.schema, "account_id": connection.account_id, "webhook_id": connection.webhook_id,
            "removed": True}


def drip_connection(settings: Settings, source_id: int) -> dict[str, Any] | None:
    """What `sources show` prints about the source's Drip account (never the token), or None."""
    connection = DripStore(settings.data_dir).get(source_id)
    return connection.public() if connection else None
