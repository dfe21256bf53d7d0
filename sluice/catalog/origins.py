"""Browser origins as a source's allow-list keeps them: exactly as browsers write the `Origin` header."""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(text: str) -> str:
    """`scheme://host[:port]`, lowercase, the scheme's default port left out (what a browser sends), or
    ValueError saying what an origin looks like. A trailing `/` is forgiven; any other path is refused: an
    origin is a site, never a page."""
    problem = f"{text!r} is not an origin: give a scheme and a host, like https://shop.example.com"
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError(problem) from None
    if (
        parts.scheme.lower() not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ValueError(problem + " (with a port if it is not the default; no path)")
    scheme = parts.scheme.lower()
    host = parts.hostname
    try:  # browsers send international names in their ASCII (punycode) form
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(problem) from None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    suffix = f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else ""
    return f"{scheme}://{host}{suffix}"
