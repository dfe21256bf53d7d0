"""Drip messageIds are scoped to their source: two sources fed by one Drip account each store a webhook
(messageIds are deduplicated across sources, as Segment does, so unscoped content hashes collided), and
a Drip retry of a webhook stored before the upgrade is still a duplicate within the dedup window."""

from __future__ import annotations

import asyncio
from pathlib import Path

from drip_payloads import webhook
from inprocess import ingest

from sluice.log.base import Record
from sluice.sources.drip import map_webhook


def test_two_drip_sources_each_store_the_same_webhook(tmp_path: Path) -> None:
    with ingest(tmp_path) as app:
        other = app.catalog.create_source("drip", "Drip 2", "drip_two")
        hook = webhook("subscriber.opened_email")
        for source in (app.drip, other):
            r = app.client.post(f"/webhooks/drip/{source.webhook_token}", json=hook)
            assert r.json() == {"success": True, "stored": 1, "duplicates": 0}, r.text
            retry = app.client.post(f"/webhooks/drip/{source.webhook_token}", json=hook)
            assert retry.json() == {"success": True, "stored": 0, "duplicates": 1}
        assert len(app.stored_ids(app.drip)) == len(app.stored_ids(other)) == 1
        assert app.stored_ids(app.drip) != app.stored_ids(other)


def test_a_retry_that_spans_the_upgrade_is_still_a_duplicate(tmp_path: Path) -> None:
    with ingest(tmp_path) as app:
        hook = webhook("subscriber.applied_tag")  # an identify and a track
        before = map_webhook(hook)  # the ids sluice gave it before they were scoped
        stored = asyncio.run(app.log.append(
            [Record(app.drip.id, m["messageId"], 0, 0, b"{}") for m in before.messages]
        ))
        assert stored == [True, True]
        r = app.client.post(f"/webhooks/drip/{app.drip.webhook_token}", json=hook)
        assert r.json() == {"success": True, "stored": 0, "duplicates": 2}
        new = app.client.post(f"/webhooks/drip/{app.drip.webhook_token}", json=webhook("subscriber.removed_tag"))
        assert new.json()["stored"] == 2
