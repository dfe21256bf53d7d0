"""Drip's webhooks through a running sluice, checked in the warehouse column by column."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from conftest import Sluice
from drip_payloads import ACCOUNT_ID, OCCURRED_AT, SAMPLE_PROPERTIES, webhook

from sluice.sources.drip import EMAIL_EVENTS, PROFILE_EVENTS
from sluice.warehouse.naming import table_name

EMAIL = "jane.doe@acme.example"
OCCURRED = "2024-05-14T09:31:58+00:00"  # as DuckDB renders OCCURRED_AT


@pytest.fixture
def drip(sluice: Sluice) -> dict[str, Any]:
    return sluice.create_source("drip", "drip", "Drip")


def post(url: str, payload: Any) -> httpx.Response:
    return httpx.post(url, content=orjson.dumps(payload), headers={"Content-Type": "application/json"})


def test_every_documented_event_with_and_without_user_id(sluice: Sluice, drip: dict[str, Any]) -> None:
    events = [*EMAIL_EVENTS, *(e for e in PROFILE_EVENTS if e != "subscriber.performed_custom_event")]
    for event in events:
        for user_id in ("u-1001", None):
            r = post(drip["webhook_url"], webhook(event, user_id=user_id))
            assert r.status_code == 200, (event, r.text)
    sent = 2 * len(events)
    rows = sluice.wait_for_rows("select * from drip.tracks", sent)
    assert len(rows) == sent
    assert {r["event_text"] for r in rows} == {*EMAIL_EVENTS.values(), *(
        n for e, n in PROFILE_EVENTS.items() if e != "subscriber.performed_custom_event")}

    for event, name in EMAIL_EVENTS.items():
        table = table_name(name, 255)
        campaign = SAMPLE_PROPERTIES[event].get("campaign_id")  # tells the two unsubscribe kinds apart
        mine = [r for r in sluice.query(f"select * from drip.{table}") if r.get("campaign_id") == campaign]
        with_id = [r for r in mine if r["user_id"] == "u-1001"]
        without = [r for r in mine if r["user_id"] is None]
        assert with_id and without, event
        assert with_id[0]["anonymous_id"] is None
        assert without[0]["anonymous_id"] == EMAIL  # the Drip Source's identity rule
        for row in (with_id[0], without[0]):
            assert row["event_text"] == name and row["event"] == table
            assert row["context_traits_email"] == EMAIL
            assert row["account_id"] == ACCOUNT_ID
            assert row["original_timestamp"] == OCCURRED and row["timestamp"] == OCCURRED
            for key in ("email_id", "email_subject", "delivery_id", "campaign_id", "campaign_name"):
                if key in SAMPLE_PROPERTIES[event]:
                    assert row[key] == SAMPLE_PROPERTIES[event][key], (event, key)

    click = sluice.query("select * from drip.email_link_clicked")[0]
    props = SAMPLE_PROPERTIES["subscriber.clicked_email"]
    assert click["link_url"] == props["url"]
    assert click["context_ip"] == props["ip_address"]
    assert click["context_user_agent"] == props["user_agent"]

    tag = sluice.query("select _tag, user_id from drip.tag_applied order by user_id")
    assert [r["_tag"] for r in tag] == ["Customer", "Customer"]  # tag is a Redshift reserved word
    lead = sluice.query("select lead_score, previous_lead_score from drip.lead_score_updated limit 1")[0]
    assert lead == {"lead_score": 64, "previous_lead_score": 51}

    # Subscriber state lands in identifies and users (users only for the one with a user_id).
    user = sluice.wait_for_rows("select * from drip.users", 1)[0]
    assert user["id"] == "u-1001"
    assert user["email"] == EMAIL and user["first_name"] == "Jane" and user["lead_score"] == 64
    assert user["custom_fields_company"] == "Acme Ltd"
    assert orjson.loads(user["tags"]) == ["Customer", "Newsletter"]
    anon = sluice.query(f"select count(*) as n from drip.identifies where anonymous_id = '{EMAIL}'")[0]["n"]
    assert anon == len(PROFILE_EVENTS) - 1


def test_custom_event_is_named_by_its_action(sluice: Sluice, drip: dict[str, Any]) -> None:
    assert post(drip["webhook_url"], webhook("subscriber.performed_custom_event")).status_code == 200
    row = sluice.wait_for_rows("select * from drip.upgraded_plan", 1)[0]
    assert row["event_text"] == "Upgraded Plan" and row["plan"] == "pro" and row["value"] == 4900


def test_retried_webhook_loads_once_and_unknown_events_are_kept(sluice: Sluice, drip: dict[str, Any]) -> None:
    hook = webhook("subscriber.opened_email")
    first = post(drip["webhook_url"], hook).json()
    again = post(drip["webhook_url"], hook).json()
    assert first["stored"] == 1 and again == {"success": True, "stored": 0, "duplicates": 1}

    unknown = webhook("subscriber.did_something_new", properties={"foo": "bar"})
    assert post(drip["webhook_url"], unknown).status_code == 200
    rows = sluice.wait_for_rows("select * from drip.drip_event", 1)
    assert rows[0]["drip_event"] == "subscriber.did_something_new" and rows[0]["foo"] == "bar"
    assert len(sluice.query("select id from drip.email_opened")) == 1
    metrics = httpx.get(f"{sluice.url}/metrics").text
    assert 'sluice_drip_unknown_events_total{source="drip"} 1.0' in metrics


def test_wrong_token_and_bad_bodies(sluice: Sluice, drip: dict[str, Any]) -> None:
    base = drip["webhook_url"].rsplit("/", 1)[0]
    wrong = post(base + "/not-the-token", webhook("subscriber.opened_email"))
    nowhere = httpx.post(f"{sluice.url}/no/such/path")
    assert wrong.status_code == 404 and wrong.json() == nowhere.json()  # reveals nothing
    http_key = sluice.create_source("http", "web")["write_key"]
    assert post(base + "/" + http_key, webhook("subscriber.opened_email")).status_code == 404

    bad_json = httpx.post(drip["webhook_url"], content=b"{not json")
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]
    no_subscriber = post(drip["webhook_url"], {"event": "subscriber.opened_email", "data": {}})
    assert no_subscriber.status_code == 400 and "subscriber" in no_subscriber.json()["error"]
    bad_time = webhook("subscriber.applied_tag")
    bad_time["occurred_at"] = "yesterday"
    r = post(drip["webhook_url"], bad_time)
    assert r.status_code == 400 and "ISO-8601" in r.json()["error"]
    # None of them stored anything (the identify of the bad-time webhook included).
    post(drip["webhook_url"], webhook("subscriber.bounced"))
    sluice.wait_for_rows("select id from drip.email_bounced", 1)
    assert len(sluice.query("select id from drip.tracks")) == 1
    assert sluice.query("select count(*) as n from information_schema.tables where table_name = 'identifies'"
                        " and table_schema = 'drip'")[0]["n"] == 0


def test_demo_fills_every_email_table(sluice: Sluice) -> None:
    out = sluice.cli("demo", "--subscribers", "30", "--campaigns", "2").stdout
    assert "Email Delivered" in out and "sluice report email --by campaign" in out
    for table in ("email_delivered", "email_opened", "email_link_clicked", "email_unsubscribed",
                  "email_bounced", "email_marked_as_spam"):
        sluice.wait_for_rows(f"select id from demo_drip.{table}", 1)
    kinds = {r["event"] for r in sluice.query("select distinct event from demo_drip.tracks")}
    assert {"email_delivered", "email_opened", "email_bounced", "email_marked_as_spam"} <= kinds
    both_paths = sluice.query("select distinct context_library_name as lib from demo_drip.email_opened")
    assert len(both_paths) == 2  # webhooks and the Segment integration both arrived


def test_drip_source_overview_shows_setup_steps(sluice: Sluice, drip: dict[str, Any]) -> None:
    out = sluice.cli("sources", "show", "drip").stdout
    assert drip["write_key"] in out and drip["webhook_url"] in out
    assert drip["segment_webhook_url"] in out and drip["segment_shared_secret"] in out
    # Drip's Segment integration sends only to Segment: the way in is Segment's Webhooks destination.
    assert "Settings > Webhooks" in out and "Webhooks destination" in out and "replaces" not in out
    assert OCCURRED_AT  # the fixtures' time is what the rows above compare against
