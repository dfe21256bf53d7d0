"""Realistic demo traffic for a Drip account, as data only (no I/O).

Two halves, because a Drip account reaches sluice two ways: Drip's own webhooks (envelopes
for `POST /webhooks/drip/<token>`, including a few retried duplicates), and Drip's Segment
integration (ready-made `track` messages, which Segment's Webhooks destination forwards to
`/webhooks/segment/<token>`) for a second set of campaigns.
A third half-and-more: a product's own events (identifies, `Signed Up`, `Order Completed` with revenue)
for the same people, some of them ordering within days of opening or clicking an email, so attribution
has something to show; newsletter-only subscribers who sign up become known by a userId only then.
Everything is drawn from one `random.Random(seed)` and a fixed `now`, so a seed always
produces the same traffic.
"""

from __future__ import annotations

import copy
import itertools
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.sources.drip import EMAIL_EVENTS, map_webhook

ACCOUNT_ID = "9999999"
DUPLICATES_KEY = "duplicate webhooks (Drip retries)"
EMAILS_PER_CAMPAIGN = 2

# Rates per delivered email (per sent email for bounces), roughly a healthy newsletter.
BOUNCE_RATE = 0.02
OPEN_RATE = 0.40
CLICK_RATE_OF_OPENS = 0.25  # 10% of delivered, and only ever after an open
COMPLAINT_RATE = 0.003
CAMPAIGN_UNSUBSCRIBE_RATE = 0.01
UNSUBSCRIBE_ALL_RATE = 0.004
TAG_ON_CLICK_RATE = 0.5
DUPLICATE_RATE = 0.03
# The product's side (attribution's conversions).
SIGNUP_RATE_AFTER_EMAIL = 0.5  # of newsletter-only subscribers who opened or clicked
ORDER_RATE_AFTER_EMAIL = 0.5  # of signed-up people who opened or clicked: an order within 3 days
ORGANIC_ORDER_RATE = 0.08  # of the others: an order no email touched
_PRICES = [19.0, 49.0, 99.0, 149.0]

_FIRST = ["Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Liam"]
_LAST = ["Novak", "Okafor", "Patel", "Quinn", "Rossi", "Schmidt", "Tanaka", "Ueda", "Varga", "Weber"]
_DOMAINS = ["gmail.com", "outlook.com", "acme.example", "globex.example", "yahoo.com", "fastmail.com"]
_ZONES = [
    ("America/New_York", -240),
    ("America/Los_Angeles", -420),
    ("Europe/Berlin", 120),
    ("Asia/Tokyo", 540),
]
_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
]
_WEBHOOK_CAMPAIGNS = ["Spring onboarding", "Product updates", "Win-back", "Webinar series", "Black Friday"]
_SEGMENT_CAMPAIGNS = [
    "Weekly digest",
    "Feature announcements",
    "Trial nurture",
    "Customer stories",
    "Renewals",
]
_SUBJECTS = ["Welcome aboard, {first}", "3 tips to get more from your account", "We miss you, {first}"]
_LINKS = [
    "https://www.example.com/pricing",
    "https://www.example.com/blog/automation",
    "https://www.example.com/demo",
]


@dataclass
class DemoTraffic:
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    tracks: list[dict[str, Any]] = field(default_factory=list)
    product: list[dict[str, Any]] = field(default_factory=list)  # the product source's identifies and tracks

    def summary(self) -> dict[str, int]:
        """Items sent, by the Segment event they become; repeated webhooks are counted apart."""
        counts: Counter[str] = Counter()
        seen: set[str] = set()
        for envelope in self.webhooks:
            track = map_webhook(envelope).messages[-1]
            if track["messageId"] in seen:
                counts[DUPLICATES_KEY] += 1
            else:
                seen.add(track["messageId"])
                counts[track["event"]] += 1
        counts.update(message["event"] for message in self.tracks)
        counts.update(m.get("event", "identify") for m in self.product)
        return dict(counts)


@dataclass
class _Activity:
    """One thing that happened, before it is rendered as a webhook or a Segment track."""

    at: datetime
    drip_event: str
    subscriber: dict[str, Any]
    properties: dict[str, Any]
    campaign: dict[str, str] | None = None


def generate(seed: int = 7, campaigns: int = 3, subscribers: int = 60, now: datetime | None = None) -> DemoTraffic:
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    start = now - timedelta(days=4)
    people = [_subscriber(rng, i, start) for i in range(subscribers)]

    created = [
        _Activity(datetime.fromisoformat(p["created_at"]), "subscriber.created", copy.deepcopy(p), {}) for p in people
    ]
    # Webhook campaigns run over days 1-2, the Segment-integration ones over days 2-3, so all
    # activity (opens trail sends by up to ~10 hours) stays in the past.
    webhook_activity = created + _campaign_activity(
        rng, people, _WEBHOOK_CAMPAIGNS, campaigns, start + timedelta(hours=12), 1000
    )
    segment_activity = _campaign_activity(rng, people, _SEGMENT_CAMPAIGNS, campaigns, start + timedelta(days=2), 5000)
    webhook_activity.sort(key=lambda a: a.at)
    segment_activity.sort(key=lambda a: a.at)

    webhooks = [_webhook(a) for a in webhook_activity]
    # Drip retries: the identical envelope arrives again, a little later in the stream. Inserting
    # from the back keeps the earlier indices valid.
    retries = min(len(webhooks), max(1, round(len(webhooks) * DUPLICATE_RATE)))
    for index in sorted(rng.sample(range(len(webhooks)), retries), reverse=True):
        webhooks.insert(min(len(webhooks), index + rng.randint(1, 5)), copy.deepcopy(webhooks[index]))
    tracks = [_track(rng, a) for a in segment_activity if a.drip_event in EMAIL_EVENTS]
    touches: dict[str, list[datetime]] = {}
    for a in webhook_activity + segment_activity:
        if a.drip_event in ("subscriber.opened_email", "subscriber.clicked_email"):
            touches.setdefault(a.subscriber["email"], []).append(a.at)
    product = _product(rng, people, touches, now)
    return DemoTraffic(webhooks=webhooks, tracks=tracks, product=product)


def _subscriber(rng: random.Random, index: int, start: datetime) -> dict[str, Any]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    zone, offset = rng.choice(_ZONES)
    return {
        "id": "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=20)),
        "status": "active",
        "email": f"{first.lower()}.{last.lower()}{index}@{rng.choice(_DOMAINS)}",
        "first_name": first,
        "last_name": last,
        "custom_fields": {"company": f"{last} & Co", "plan": rng.choice(["free", "starter", "pro"])},
        "tags": rng.sample(["Newsletter", "Customer", "Trial", "Webinar"], k=rng.randint(0, 2)),
        "time_zone": zone,
        "utc_offset": offset,
        "created_at": _iso(start + timedelta(minutes=rng.randint(0, 600))),
        "ip_address": f"203.0.113.{rng.randint(1, 254)}",
        "user_agent": rng.choice(_AGENTS),
        "lifetime_value": rng.choice([0, 0, 4900, 12900]),
        "original_referrer": rng.choice(["https://www.google.com/", "https://news.ycombinator.com/", None]),
        "landing_url": rng.choice(["https://www.example.com/", "https://www.example.com/pricing"]),
        "prospect": rng.random() < 0.7,
        "base_lead_score": 30,
        "lead_score": rng.randint(20, 90),
        # Known app users have a user_id; newsletter-only subscribers are just an email.
        "user_id": f"u-{1000 + index}" if rng.random() < 0.6 else None,
    }


def _campaign_activity(
    rng: random.Random,
    people: list[dict[str, Any]],
    names: list[str],
    campaigns: int,
    first_send: datetime,
    id_base: int,
) -> list[_Activity]:
    """Sends, opens, clicks, bounces, complaints and unsubscribes for a run of campaign emails.

    `people` is updated in place (tags, status), so each snapshot shows the subscriber's state then.
    """
    out: list[_Activity] = []

    def emit(at: datetime, kind: str, i: int, props: dict[str, Any], campaign: dict[str, str]) -> None:
        out.append(_Activity(at, kind, copy.deepcopy(people[i]), copy.deepcopy(props), campaign))

    delivery_ids = itertools.count(id_base * 100_000)
    stopped: set[int] = set()  # bounced, complained or unsubscribed from everything
    delivered: list[tuple[int, dict[str, Any], dict[str, str]]] = []
    spacing = timedelta(hours=24) / max(1, campaigns * EMAILS_PER_CAMPAIGN)
    for c in range(campaigns):
        campaign = {"campaign_id": str(id_base + 100 + c), "campaign_name": _name(names, c)}
        left_campaign: set[int] = set()
        for e in range(EMAILS_PER_CAMPAIGN):
            sent_at = first_send + spacing * (c * EMAILS_PER_CAMPAIGN + e)
            email_id = str(id_base * 10 + c * EMAILS_PER_CAMPAIGN + e)
            for i, person in enumerate(people):
                skip = i in stopped or i in left_campaign or person["status"] != "active"
                if skip or rng.random() < 0.03:  # a few are simply not sent this email (filters, timing)
                    continue
                at = sent_at + timedelta(seconds=rng.randint(5, 900))
                props = {
                    "delivery_id": str(next(delivery_ids)),
                    "email_id": email_id,
                    "email_subject": _SUBJECTS[e % len(_SUBJECTS)].format(first=person["first_name"]),
                }
                if rng.random() < BOUNCE_RATE:
                    stopped.add(i)
                    emit(at, "subscriber.bounced", i, props, campaign)
                    continue
                delivered.append((i, props, campaign))
                emit(at, "subscriber.received_email", i, props, campaign)
                if rng.random() < OPEN_RATE:
                    at += timedelta(minutes=rng.randint(2, 600))
                    emit(at, "subscriber.opened_email", i, props, campaign)
                    if rng.random() < CLICK_RATE_OF_OPENS:
                        at += timedelta(seconds=rng.randint(10, 300))
                        click = {
                            **props,
                            "url": rng.choice(_LINKS),
                            "user_agent": rng.choice(_AGENTS),
                            "ip_address": f"198.51.100.{rng.randint(1, 254)}",
                        }
                        emit(at, "subscriber.clicked_email", i, click, campaign)
                        tag = f"Clicked: {campaign['campaign_name']}"
                        if rng.random() < TAG_ON_CLICK_RATE and tag not in person["tags"]:
                            person["tags"].append(tag)
                            emit(at + timedelta(seconds=2), "subscriber.applied_tag", i, {"tag": tag}, campaign)
                roll = rng.random()
                at += timedelta(minutes=rng.randint(1, 30))
                if roll < COMPLAINT_RATE:
                    stopped.add(i)
                    emit(at, "subscriber.complained", i, props, campaign)
                elif roll < COMPLAINT_RATE + UNSUBSCRIBE_ALL_RATE:
                    stopped.add(i)
                    person["status"] = "unsubscribed"
                    emit(at, "subscriber.unsubscribed_all", i, {}, campaign)
                elif roll < COMPLAINT_RATE + UNSUBSCRIBE_ALL_RATE + CAMPAIGN_UNSUBSCRIBE_RATE:
                    left_campaign.add(i)
                    emit(at, "subscriber.unsubscribed_from_campaign", i, campaign, campaign)

    # Rates this small can round to zero on a small list, yet the demo must show every kind: add
    # one each after the last send, from a delivery whose subscriber is still reachable.
    after = first_send + timedelta(hours=25)
    for kind in (
        "subscriber.complained",
        "subscriber.unsubscribed_from_campaign",
        "subscriber.unsubscribed_all",
    ):
        candidates = [d for d in delivered if d[0] not in stopped]
        if any(a.drip_event == kind for a in out) or not candidates:
            continue
        i, props, campaign = rng.choice(candidates)
        after += timedelta(minutes=rng.randint(5, 60))
        if kind == "subscriber.unsubscribed_all":
            people[i]["status"] = "unsubscribed"
        if kind != "subscriber.unsubscribed_from_campaign":
            stopped.add(i)
        properties = {"subscriber.complained": props, "subscriber.unsubscribed_all": {}}.get(kind, campaign)
        emit(after, kind, i, properties, campaign)
    return out


def _product(rng: random.Random, people: list[dict[str, Any]], touches: dict[str, list[datetime]],
             now: datetime) -> list[dict[str, Any]]:
    """The product's events for the demo's people: who signs up (app users before the campaigns; some
    newsletter-only subscribers after an email, under a new userId) and who orders, when."""
    out: list[dict[str, Any]] = []

    def message(kind: dict[str, Any], user_id: str, at: datetime) -> None:
        out.append({**kind, "userId": user_id, "timestamp": _iso(at),
                    "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4))})

    for i, person in enumerate(people):
        seen = sorted(touches.get(person["email"], []))
        user_id = person["user_id"]
        if user_id is not None:
            signed_up = datetime.fromisoformat(person["created_at"]) - timedelta(days=rng.randint(40, 400))
        elif seen and rng.random() < SIGNUP_RATE_AFTER_EMAIL:
            user_id, signed_up = f"u-{2000 + i}", seen[0] + timedelta(minutes=rng.randint(5, 120))
        else:
            continue
        traits = {"email": person["email"], "first_name": person["first_name"], "last_name": person["last_name"]}
        message({"type": "identify", "traits": traits}, user_id, signed_up)
        message({"type": "track", "event": "Signed Up", "properties": {"plan": person["custom_fields"]["plan"]}},
                user_id, signed_up)
        if seen and rng.random() < ORDER_RATE_AFTER_EMAIL:
            ordered = max(rng.choice(seen), signed_up) + timedelta(minutes=rng.randint(10, 3 * 24 * 60))
        elif rng.random() < ORGANIC_ORDER_RATE:
            ordered = now - timedelta(minutes=rng.randint(60, 4 * 24 * 60))
        else:
            continue
        if signed_up < ordered < now:
            order = {"order_id": f"o-{10000 + i}", "revenue": rng.choice(_PRICES), "currency": "USD"}
            message({"type": "track", "event": "Order Completed", "properties": order}, user_id, ordered)
    out.sort(key=lambda m: m["timestamp"])
    return out


def _webhook(activity: _Activity) -> dict[str, Any]:
    return {
        "event": activity.drip_event,
        "data": {
            "account_id": ACCOUNT_ID,
            "subscriber": activity.subscriber,
            "properties": copy.deepcopy(activity.properties),
        },
        "occurred_at": _iso(activity.at),
    }


def _track(rng: random.Random, activity: _Activity) -> dict[str, Any]:
    """The track Drip's Segment integration sends for the same activity (Segment's Email spec)."""
    props = activity.properties
    properties: dict[str, Any] = {key: props[key] for key in ("email_id", "email_subject") if key in props}
    if activity.campaign:
        properties.update(activity.campaign)
    if "url" in props:
        properties["link_url"] = props["url"]
    person = activity.subscriber
    identity = {"userId": person["user_id"]} if person["user_id"] else {"anonymousId": person["email"]}
    context: dict[str, Any] = {"traits": {"email": person["email"]}}
    if "ip_address" in props:
        context.update(ip=props["ip_address"], userAgent=props["user_agent"])
    return {
        "type": "track",
        "event": EMAIL_EVENTS[activity.drip_event],
        **identity,
        "properties": properties,
        "context": context,
        "timestamp": _iso(activity.at),
        "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    }


def _name(names: list[str], index: int) -> str:
    base = names[index % len(names)]
    return base if index < len(names) else f"{base} {index // len(names) + 1}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
