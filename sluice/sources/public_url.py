"""The address printed in every URL a sender needs (Drip's webhook URL, the Segment webhook URL, the API
host): the public URL when one is set (`sluice serve --public-url`, SLUICE_PUBLIC_URL), else the running
server's real address, else the configured one. Drip is a hosted service: it can never reach a loopback,
private or unspecified address, so such a URL comes with a warning saying what to do."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sluice.settings import Settings


@dataclass(frozen=True)
class PublicURL:
    url: str
    warning: str | None


def check_public_url(url: str) -> str:
    """A public URL as given, without a trailing slash; ValueError when it is not an http(s) URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a public URL looks like https://sluice.example.com, not {url!r}")
    return url.strip().rstrip("/")


def unreachable(url: str) -> bool:
    """True when a hosted service such as Drip cannot reach this URL's host."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: it may well resolve publicly
    return not ip.is_global


def public_base(settings: Settings, server: Mapping[str, Any] | None) -> PublicURL:
    """`server`: the running server's server.json (its `public_url` and real `url`), or None."""
    server = server or {}
    url = settings.public_url or server.get("public_url") or server.get("url") or settings.base_url
    url = str(url).rstrip("/")
    warning = None
    if unreachable(url):
        warning = (
            f"{url} is a private address: Drip (a hosted service) cannot reach it. Expose sluice over HTTPS (a"
            " reverse proxy or a tunnel forwarding /webhooks/ and /v1/) and start it with `sluice serve"
            " --public-url https://...` (or SLUICE_PUBLIC_URL): docs/connect-drip.md"
        )
    return PublicURL(url, warning)
