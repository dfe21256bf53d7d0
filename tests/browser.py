"""Headless Chromium for the tests that need a real browser (analytics.js now, the web console later): Debian's
`chromium` driven by Playwright, with a new empty profile each time, never a browser Playwright downloads.

A test that cannot have what it needs is skipped with a message naming what to install; under CI (CI=true, as
.ci/run runs) it fails instead, so that a missing install step can never pass as green.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("SLUICE_TEST_CHROMIUM", "/usr/bin/chromium"))
# What the machine's closed network needs (no background connections, no first-run work, no updates) and
# what running as root in a container needs (no sandbox, no GPU).
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
JS_DIR = ROOT / "tests" / "js"  # npm packages the pages load (package.json, package-lock.json; `npm ci`)


def missing(what: str) -> None:
    """Skip (fail under CI) because `what` is not installed; `what` says how to install it."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide this (.ci/run installs it): {what}", pytrace=False)
    pytest.skip(f"not installed here: {what}")


def require_chromium() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("the playwright Python package: `make install` (it is in requirements.txt)")
    if not CHROMIUM.exists():
        missing(f"Chromium at {CHROMIUM}: `apt-get install chromium` (Debian), or set SLUICE_TEST_CHROMIUM")


def npm_file(relative: str) -> Path:
    """A file of an npm package under tests/js/node_modules, or a skip saying to run `npm ci` there."""
    path = JS_DIR / "node_modules" / relative
    if not path.exists():
        how = "`cd tests/js && npm ci`"
        if not shutil.which("npm"):
            how += " (needs Node.js and npm: `apt-get install npm`)"
        missing(f"{relative} from npm: {how}")
    return path


@dataclass
class Console:
    """What the page printed, and every request it tried, for assertions."""

    messages: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # requests to anywhere but this machine, not let out


@contextmanager
def chromium(profile_dir: Path) -> Iterator[tuple[Any, Console]]:
    """A Playwright browser context in headless Debian Chromium with an empty profile at `profile_dir`. Every
    host but this machine's resolves to nothing, and requests to them are listed in `Console.refused`, so a test
    can prove a page needed nothing from elsewhere. (Not with Playwright's request routing: while it intercepts,
    Chromium's CORS preflights are never answered.)"""
    require_chromium()
    from playwright.sync_api import sync_playwright

    console = Console()

    def request(r: Any) -> None:
        console.requests.append(r.url)
        host = r.url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            console.refused.append(r.url)

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile_dir), executable_path=str(CHROMIUM), headless=True,
            args=[*FLAGS, "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"],
        )
        try:
            context.on("request", request)
            context.on("console", lambda m: console.messages.append(f"{m.type}: {m.text}"))
            yield context, console
        finally:
            context.close()


@contextmanager
def static_site(files: dict[str, tuple[str, bytes]], host: str = "localhost") -> Iterator[str]:
    """Serve `files` ({path: (content type, body)}, which may grow while it runs) on a free port of `host`;
    yields the site's origin. An empty favicon, so that no page logs a 404 for it."""
    files.setdefault("/favicon.ico", ("image/x-icon", b""))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = files.get(self.path.split("?", 1)[0])
            if found is None:
                self.send_error(404)
                return
            kind, body = found
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
