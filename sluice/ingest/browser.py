"""The settings analytics.js loads before it sends anything (`GET /v1/projects/<writeKey>/settings`).

analytics.js (`@segment/analytics-next`) fetches `<cdnURL>/v1/projects/<writeKey>/settings` from Segment's CDN
and posts events to the `apiHost` those settings name. A page whose snippet sets `cdnURL` to sluice gets them
from sluice instead and needs nothing from Segment: the settings name sluice as the API host, enable no other
destinations (so no destination code is loaded from any CDN), and set the library's own usage metrics' sample
rate to 0 (they would otherwise go to `<apiHost>/m`, which sluice answers 200 and discards).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def api_host(public_url: str, scheme: str, host_header: str | None) -> tuple[str, str] | None:
    """(protocol, apiHost) as analytics.js wants them: `sluice.example.com/v1`, without the scheme. From the
    configured public URL, else from how the browser reached sluice (its Host header); None without either."""
    if public_url:
        parts = urlsplit(public_url)
        return parts.scheme or "https", f"{parts.netloc}{parts.path.rstrip('/')}/v1"
    if not host_header:
        return None
    return scheme, f"{host_header}/v1"


def analytics_settings(write_key: str, protocol: str, host: str) -> dict[str, Any]:
    """The settings object, in the shape Segment's CDN serves it, with only what analytics.js needs."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0, "host": host},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
