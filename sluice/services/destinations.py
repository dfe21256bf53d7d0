"""Destinations: add (validated per type), show with secrets masked, enable/disable, remove."""

from __future__ import annotations

from typing import Any

from sluice.catalog.models import Destination
from sluice.catalog.store import Catalog
from sluice.destinations.registry import validate
from sluice.services.sources import DeliveryWrite

SECRET_KEYS = ("api_token", "secret")


def public(dest: Destination, source_schema: str) -> dict[str, Any]:
    """A destination as the CLI and the console show it: never a secret."""
    config = {k: ("***" if k in SECRET_KEYS and v else v) for k, v in dest.config.items()}
    return {"id": dest.id, "source": source_schema, "type": dest.type, "name": dest.name, "enabled": dest.enabled,
            "config": config}


def add(catalog: Catalog, source_ref: str, type_: str, name: str, options: dict[str, Any]) -> Destination:
    """`options` as the CLI's flags name them (url, headers, secret, batch_size, account_id, api_token, base_url);
    None and empty values are left out. Raises ValueError (CatalogError too) with the reason."""
    config = validate(type_, {k: v for k, v in options.items() if v is not None and v != ""})
    return catalog.add_destination(source_ref, type_, name, config)


def set_enabled(catalog: Catalog, ref: str, enabled: bool) -> Destination:
    return catalog.set_destination_enabled(ref, enabled)


def remove(catalog: Catalog, ref: str, write: DeliveryWrite) -> Destination:
    dest = catalog.remove_destination(ref)
    write("forget", consumer=dest.consumer)
    return dest


def parse_headers(lines: list[str]) -> dict[str, str]:
    """NAME=VALUE pairs (the CLI's --header, the console's one per line)."""
    out: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"a header must be NAME=VALUE, got {line!r}")
        out[key.strip()] = value
    return out
