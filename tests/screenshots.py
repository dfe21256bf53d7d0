"""`make screenshots`: drives Debian's Chromium through every console page of a real `sluice serve` filled by
`sluice demo`, and writes docs/screenshots/*.png (at 1280 px, and the Sources page on a phone).

Run it to refresh the pictures the README shows; the tests never write into the tree.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from browser import ROOT, chromium
from conftest import Sluice, free_port
from drip_payloads import webhook
from receiver import Receiver

OUT = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def wait_for(check, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for the demo data")
        time.sleep(0.5)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = Sluice(Path(tmp) / "data")
        receiver = Receiver(free_port())
        receiver.respond = lambda message: 422 if message.get("event") == "Email Bounced" else 200
        receiver.start()
        server.start()
        try:
            shoot(server, receiver, Path(tmp))
        finally:
            server.stop()
            receiver.stop()


def shoot(server: Sluice, receiver: Receiver, tmp: Path) -> None:
    server.cli("demo")
    demo = json.loads(server.cli("sources", "show", "demo_drip", "--json").stdout)
    server.cli("destinations", "add", "demo_drip", "webhook", "--name", "crm-hook", "--url", receiver.url)
    wait_for(lambda: json.loads(server.cli("report", "email", "--source", "demo_drip", "--format", "json").stdout))
    token = (server.data_dir / "admin-token").read_text().strip()
    with chromium(tmp / "profile") as (context, _console):
        page = context.new_page()
        page.set_viewport_size(DESKTOP)
        page.goto(f"{server.admin_url}/sign-in")
        page.screenshot(path=OUT / "sign-in.png")
        page.get_by_label("Admin token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("h1:has-text('Sources')")
        page.screenshot(path=OUT / "sources.png", full_page=True)
        page.goto(f"{server.admin_url}/sources/{demo['id']}")
        page.screenshot(path=OUT / "source.png", full_page=True)
        page.goto(f"{server.admin_url}/live?source={demo['id']}")
        page.wait_for_selector("#live-status:has-text('Connected')")
        httpx.post(demo["webhook_url"], json=webhook("subscriber.clicked_email"))
        httpx.post(demo["webhook_url"], json={"event": "subscriber.opened_email"})  # refused: no data
        page.wait_for_selector("article.event")
        page.wait_for_selector("article.refused")
        page.screenshot(path=OUT / "live-events.png")
        page.goto(f"{server.admin_url}/schema?source={demo['id']}")
        page.screenshot(path=OUT / "schema.png")
        page.goto(f"{server.admin_url}/destinations")
        page.screenshot(path=OUT / "destinations.png", full_page=True)
        consumer = page.get_by_role("link", name="crm-hook").get_attribute("href")
        page.goto(f"{server.admin_url}{consumer}")
        page.screenshot(path=OUT / "destination.png", full_page=True)
        page.goto(f"{server.admin_url}/reports?source=demo_drip&since=365d&by=campaign")
        page.screenshot(path=OUT / "reports.png", full_page=True)
        page.goto(f"{server.admin_url}/sql")
        page.get_by_label("Query").fill("select event, count(*) as n from demo_drip.tracks group by 1 order by 2 desc")
        page.get_by_role("button", name="Run").click()
        page.screenshot(path=OUT / "sql.png")
        page.set_viewport_size(PHONE)
        page.goto(f"{server.admin_url}/sources")
        page.screenshot(path=OUT / "phone-sources.png", full_page=True)
        page.goto(f"{server.admin_url}/reports?source=demo_drip&since=365d&by=campaign")
        page.screenshot(path=OUT / "phone-reports.png")
    print(f"wrote {len(list(OUT.glob('*.png')))} screenshots to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
