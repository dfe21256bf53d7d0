"""Segment's real browser library, `@segment/analytics-next` from npm (tests/js), in headless Chromium, on a page
served from another origin than sluice's, loaded with the snippet docs/tracking-api.md documents: its page,
track, identify, group and alias calls arrive in the warehouse with context_ip and context_user_agent, and the
page needs nothing from anywhere but its own server and sluice. With an allow-list that does not name the page's
origin, the page is refused, the reason is in its console, and nothing is stored."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import ROOT, chromium, npm_file, require_chromium, static_site
from conftest import Sluice, poll, try_query

STANDALONE = "@segment/analytics-next/dist/umd/standalone.js"
SCRIPT_PATH = "/js/analytics.min.js"


def documented_snippet() -> str:
    """The snippet of docs/tracking-api.md's analytics.js section, as a reader would copy it."""
    text = (ROOT / "docs" / "tracking-api.md").read_text()
    section = text.split("## Browsers: analytics.js", 1)[1]
    return re.search(r"```html\n(.*?)```", section, flags=re.S).group(1)  # type: ignore[union-attr]


def page_html(write_key: str, sluice_url: str, calls: str) -> bytes:
    snippet = documented_snippet()
    for placeholder, value in (('"WRITE_KEY"', f'"{write_key}"'), ('"https://sluice.example.com"', f'"{sluice_url}"'),
                               ('"/js/analytics.min.js"', f'"{SCRIPT_PATH}"')):
        assert placeholder in snippet, f"the documented snippet no longer has {placeholder}"
        snippet = snippet.replace(placeholder, value)
    return f"""<!doctype html><html><head><title>Pricing</title>{snippet}</head>
<body><h1>Pricing</h1><script>{calls}</script></body></html>""".encode()


CALLS = """
analytics.identify("u-browser", {email: "u-browser@example.com", plan: "pro"});
analytics.track("Plan Chosen", {plan: "pro", seats: 3});
analytics.group("acme", {name: "Acme"});
analytics.alias("u-browser");
"""


@pytest.fixture
def server(tmp_path: Path):
    require_chromium()
    npm_file(STANDALONE)
    s = Sluice(tmp_path / "data")
    s.start()
    yield s
    s.stop()


def wait_for_ready(page: Any) -> None:
    page.wait_for_function("() => window.analytics && window.analytics.initialized === true", timeout=20_000)


def test_analytics_js_on_another_origin_loads_all_five_call_types(server: Sluice, tmp_path: Path) -> None:
    web = server.create_source("http", "web")
    files = {SCRIPT_PATH: ("text/javascript", npm_file(STANDALONE).read_bytes())}
    with static_site(files) as site, chromium(tmp_path / "profile") as (browser, console):
        assert site.split(":")[2] != str(server.port)  # another origin: host and port both differ
        files["/pricing"] = ("text/html", page_html(web["write_key"], server.url, CALLS))
        page = browser.new_page()
        page.goto(f"{site}/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring")
        wait_for_ready(page)

        expected = {"pages": 1, "tracks": 1, "identifies": 1, "groups": 1, "aliases": 1}
        for table, n in expected.items():
            rows = poll(server, f"select context_ip, context_user_agent from web.{table}", n, timeout=30)
            assert [r["context_ip"] for r in rows] == ["127.0.0.1"] * n, table
            assert all("Chrome" in r["context_user_agent"] for r in rows), rows
        [pageview] = poll(server, "select url, path, title, search, referrer, context_page_url, context_library_name,"
                                  " context_campaign_source, context_campaign_medium, context_campaign_name"
                                  " from web.pages", 1)
        assert pageview["path"] == "/pricing" and pageview["title"] == "Pricing"
        assert pageview["context_library_name"] == "analytics.js"
        assert (pageview["context_campaign_source"], pageview["context_campaign_medium"],
                pageview["context_campaign_name"]) == ("newsletter", "email", "spring")
        assert poll(server, "select seats, plan from web.plan_chosen", 1) == [{"seats": 3, "plan": "pro"}]
        assert poll(server, "select previous_id, user_id from web.aliases", 1)[0]["user_id"] == "u-browser"
        # Everything came from the page's server and sluice: nothing from Segment's CDN or API.
        assert console.refused == [], console.refused
        assert any("/v1/projects/" in u for u in console.requests)
        assert not [m for m in console.messages if m.startswith("error")], console.messages


def test_allow_list_refuses_a_page_from_another_origin_and_stores_nothing(server: Sluice, tmp_path: Path) -> None:
    shop = server.create_source("http", "shop")
    server.cli("sources", "update", "shop", "--allowed-origin", "https://shop.example.com")
    files = {SCRIPT_PATH: ("text/javascript", npm_file(STANDALONE).read_bytes())}
    with static_site(files) as site, chromium(tmp_path / "profile") as (browser, console):
        files["/pricing"] = ("text/html", page_html(shop["write_key"], server.url, CALLS))
        page = browser.new_page()
        page.goto(f"{site}/pricing")
        deadline = time.monotonic() + 20
        while not any("may not send to the source 'shop'" in m for m in console.messages):
            assert time.monotonic() < deadline, f"no refusal in the console: {console.messages}"
            page.wait_for_timeout(100)
        # The event paths refuse too, with a reason the page can read (not an opaque CORS failure).
        answer = page.evaluate("""async ([url, key]) => {
            const r = await fetch(url + "/v1/t", {method: "POST", headers: {"Content-Type": "text/plain",
                "Authorization": "Basic " + btoa(key + ":")}, body: JSON.stringify({userId: "u1", event: "E"})});
            return {status: r.status, body: await r.json()};
        }""", [server.url, shop["write_key"]])
        assert answer["status"] == 403 and site in answer["body"]["error"], answer

    # Nothing stored: a server-side event (no Origin) sent after the refusals is the only row that loads.
    marker = httpx.post(f"{server.url}/v1/track", json={"userId": "server", "event": "Marker"},
                        auth=(shop["write_key"], ""))
    assert marker.status_code == 200
    poll(server, "select id from shop.marker", 1)
    assert try_query(server, "select count(*) as n from shop.tracks") == [{"n": 1}]
    for table in ("pages", "identifies", "groups", "aliases"):
        assert try_query(server, f"select count(*) as n from shop.{table}") is None, table  # never created
