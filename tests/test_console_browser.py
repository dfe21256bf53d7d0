"""The web console end to end in headless Chromium against a real `sluice serve`: sign in, the seed's setup flow
for Drip, live events and a refused request, a webhook destination's dead letter re-driven, sign out."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from browser import chromium
from conftest import Sluice, free_port
from drip_payloads import webhook
from receiver import Receiver


@pytest.fixture
def receiver():
    r = Receiver(free_port())
    r.start()
    yield r
    r.stop()


def test_console_end_to_end(sluice: Sluice, receiver: Receiver, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    token = (sluice.data_dir / "admin-token").read_text().strip()
    with chromium(tmp_path / "profile") as (context, console):
        page = context.new_page()

        # Closed before signing in: the sign-in form, nothing else.
        page.goto(f"{sluice.admin_url}/sources")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.get_by_label("Admin token").fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("not the admin token")
        page.get_by_label("Admin token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Sources")).to_be_visible()
        for name in ("Sources", "Live events", "Schema", "Destinations", "Reports", "SQL"):
            expect(page.get_by_role("navigation").get_by_role("link", name=name, exact=True)).to_be_visible()

        # The seed's flow: type, nickname, schema -> write key and Drip webhook URL, with the setup steps.
        page.get_by_role("link", name="Create a source").click()
        page.get_by_label("Drip (email events").check()
        page.get_by_label("Nickname").fill("Drip")
        page.get_by_label("Schema name").fill("drip")
        page.get_by_role("button", name="Create source").click()
        expect(page.get_by_role("status")).to_contain_text("Created Drip")
        webhook_url = page.get_by_label("Drip webhook URL").input_value()
        assert webhook_url == sluice.cli("sources", "show", "drip", "--json").stdout.split('"webhook_url": "')[1] \
            .split('"')[0]
        expect(page.get_by_text("Settings > Webhooks")).to_be_visible()
        page.locator('button[data-copy="webhook-url"]').click()
        expect(page.locator('button[data-copy="webhook-url"]')).to_have_text("Copied")

        # Live events: a Drip webhook appears, as received and as loaded; a bad one appears with its reason.
        page.get_by_role("link", name="Watch its events arrive").click()
        expect(page.locator("#live-status")).to_contain_text("Connected")
        r = httpx.post(webhook_url, json=webhook("subscriber.opened_email"))
        assert r.status_code == 200, r.text
        event = page.locator("article.event").filter(has_text="Email Opened").first
        expect(event).to_be_visible(timeout=10_000)
        expect(event).to_contain_text('"email_opened"')  # the event's own table, as loaded
        expect(event).to_contain_text("Your May product update")
        r = httpx.post(webhook_url, json={"event": "subscriber.opened_email"})  # no data: not a Drip webhook
        assert r.status_code == 400
        refused = page.locator("article.refused").filter(has_text="not a Drip webhook")
        expect(refused).to_be_visible(timeout=10_000)
        expect(refused).to_contain_text("400 bad_drip_webhook")

        # A webhook destination that refuses everything: a dead letter with its reason, then re-driven.
        receiver.respond = lambda message: 422
        page.get_by_role("link", name="Destinations", exact=True).click()
        page.get_by_label("Type", exact=True).select_option("webhook")
        page.get_by_label("Name", exact=True).fill("hook")
        page.get_by_label("URL", exact=True).fill(receiver.url)
        page.get_by_role("button", name="Add destination").click()
        expect(page.get_by_role("status")).to_contain_text("Added hook")
        deadline = time.monotonic() + 20
        while not page.get_by_text("HTTP 422").count() and time.monotonic() < deadline:
            time.sleep(0.3)
            page.reload()
        expect(page.locator("td.reason").first).to_contain_text("422")
        receiver.respond = lambda message: 200
        page.get_by_role("button", name="Re-drive all").click()
        expect(page.get_by_role("status")).to_contain_text("1 dead letter will be sent again")
        deadline = time.monotonic() + 20
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [m["event"] for m in receiver.received] == ["Email Opened"]
        deadline = time.monotonic() + 20
        while page.get_by_text("No dead letters.").count() == 0 and time.monotonic() < deadline:
            time.sleep(0.3)
            page.reload()
        expect(page.get_by_text("No dead letters.")).to_be_visible()

        # Schema and SQL over what loaded.
        page.get_by_role("link", name="SQL", exact=True).click()
        page.get_by_label("Query").fill("select event, context_library_name from drip.tracks")
        page.get_by_role("button", name="Run").click()
        expect(page.get_by_role("cell", name="email_opened")).to_be_visible()

        # Sign out: every page is closed again.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        for path in ("/sources", "/live", "/destinations", "/schema", "/sql", "/reports"):
            page.goto(f"{sluice.admin_url}{path}")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            assert "Drip" not in page.content().replace("Drip webhook", "")
        assert console.refused == []  # the console loaded nothing from elsewhere
        # The only error a page logged: the 401 answering the wrong token.
        errors = [m for m in console.messages if m.startswith("error")]
        assert errors == ["error: Failed to load resource: the server responded with a status of 401 (Unauthorized)"]


def test_email_report_matches_the_cli(sluice: Sluice, tmp_path: Path) -> None:
    """The Reports page shows the numbers `sluice report email` prints, for the demo's campaigns."""
    from playwright.sync_api import expect

    sluice.cli("demo")
    deadline = time.monotonic() + 60
    rows: list[dict] = []
    while not rows and time.monotonic() < deadline:  # the demo's events load within a second or two
        rows = json.loads(sluice.cli("report", "email", "--source", "demo_drip", "--by", "campaign", "--since",
                                     "365d", "--format", "json").stdout)
        time.sleep(0.3)
    assert rows, "the demo's email events never loaded"
    token = (sluice.data_dir / "admin-token").read_text().strip()
    with chromium(tmp_path / "profile") as (context, _console):
        page = context.new_page()
        page.goto(f"{sluice.admin_url}/sign-in")
        page.get_by_label("Admin token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("link", name="Reports", exact=True).click()
        page.get_by_label("Source").select_option("demo_drip")
        page.get_by_label("Since").fill("365d")
        page.get_by_label("Group by").select_option("campaign")
        page.get_by_role("button", name="Show").click()
        table = page.locator("#email-report")
        expect(table).to_be_visible()
        shown = table.locator("tbody tr")
        assert shown.count() == len(rows)
        for i, row in enumerate(rows):
            cells = {c: shown.nth(i).locator(f'td[data-col="{c}"]').inner_text() for c in
                     ("key", "deliveries", "unique_opens", "open_rate", "unique_clicks", "click_rate",
                      "hard_bounces", "complaints", "unsubscribe_rate")}
            assert cells["key"] == row["key"]
            for count in ("deliveries", "unique_opens", "unique_clicks", "hard_bounces", "complaints"):
                assert cells[count] == str(row[count]), (row["key"], count)
            for rate in ("open_rate", "click_rate", "unsubscribe_rate"):
                assert cells[rate] == f"{row[rate] * 100:.1f}%", (row["key"], rate)
        assert page.locator("figure.chart svg").count() == 3  # rates by campaign, over time, attribution
        # The CSV download holds the CLI's exact values.
        with page.expect_download() as download:
            page.get_by_role("link", name="Download CSV").first.click()
        csv_text = Path(download.value.path()).read_text()
        cli_csv = sluice.cli("report", "email", "--source", "demo_drip", "--by", "campaign", "--since", "365d",
                             "--format", "csv").stdout
        assert csv_text.splitlines()[0] == cli_csv.splitlines()[0]
        assert len(csv_text.splitlines()) == len(rows) + 1
        page.get_by_role("link", name="How each number is defined").click()
        expect(page.get_by_role("heading", name="Report definitions")).to_be_visible()
