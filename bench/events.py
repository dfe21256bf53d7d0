"""Realistic email engagement events (Segment's Email spec, as Drip's Segment integration sends them).

Every event is ~600-700 bytes of JSON with a unique messageId. The load generator sends
pre-serialised bodies: a body is built once as a template and, per request, only the
fixed-width messageId slots are overwritten in place, so making a request costs the client
microseconds, not a JSON encode.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

EVENTS = (  # (event, weight): a healthy newsletter's mix
    ("Email Delivered", 50),
    ("Email Opened", 25),
    ("Email Link Clicked", 12),
    ("Email Bounced", 5),
    ("Email Unsubscribed", 5),
    ("Email Marked as Spam", 3),
)
_NAMES, _WEIGHTS = zip(*EVENTS, strict=True)
_FIRST = ["Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Liam"]
_LAST = ["Novak", "Okafor", "Patel", "Quinn", "Rossi", "Schmidt", "Tanaka", "Ueda", "Varga", "Weber"]
_DOMAINS = ["gmail.com", "outlook.com", "acme.example", "globex.example", "yahoo.com", "fastmail.com"]
_CAMPAIGNS = ["Weekly digest", "Feature announcements", "Trial nurture", "Customer stories", "Renewals"]
_SUBJECTS = [
    "Welcome aboard, {first}: three things to try this week",
    "{first}, your weekly digest of product updates is here",
    "We miss you, {first} - here is 20% off your next month",
    "Last chance to register for Thursday's automation webinar",
]
_LINKS = [
    "https://www.example.com/pricing?utm_source=drip&utm_medium=email&utm_campaign={c}",
    "https://www.example.com/blog/email-automation-playbook?utm_source=drip&utm_campaign={c}",
    "https://www.example.com/demo/book?utm_source=drip&utm_medium=email&utm_campaign={c}",
]
_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
]

# messageId slot: a version-4-looking UUID, fixed width so a body's length never changes.
ID_WIDTH = 36
_PLACEHOLDER = "0" * ID_WIDTH


def message_id(run: int, n: int) -> bytes:
    """The n-th messageId of a run: unique across runs (run < 2**32) and requests (n < 2**48)."""
    return b"%08x-%04x-4%03x-8%03x-%012x" % (run, (n >> 48) & 0xFFFF, 0, 0, n & 0xFFFFFFFFFFFF)


def counter_of(mid: str) -> tuple[int, int]:
    """(run, n) back from a messageId made by message_id (n's low 48 bits, which is all we use)."""
    return int(mid[:8], 16), int(mid[-12:], 16)


def email_event(rng: random.Random, now: datetime) -> dict[str, Any]:
    """One Email spec track, ~600-700 bytes serialised."""
    event = rng.choices(_NAMES, _WEIGHTS)[0]
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    n = rng.randrange(100_000)
    email = f"{first.lower()}.{last.lower()}{n}@{rng.choice(_DOMAINS)}"
    c = rng.randrange(len(_CAMPAIGNS))
    campaign_name = _CAMPAIGNS[c]
    properties: dict[str, Any] = {
        "email_id": str(50_000 + rng.randrange(5_000)),
        "email_subject": rng.choice(_SUBJECTS).format(first=first),
        "campaign_id": str(5_100 + c),
        "campaign_name": campaign_name,
        "email_name": f"{campaign_name} #{rng.randint(1, 60)}",
        "from_email": "news@example.com",
        "delivery_id": str(rng.randrange(10**9, 10**10)),
    }
    if event == "Email Link Clicked":
        properties["link_url"] = rng.choice(_LINKS).format(c=campaign_name.lower().replace(" ", "-"))
    if event == "Email Bounced":
        properties["bounce_type"] = rng.choice(["hard", "soft"])
    context: dict[str, Any] = {
        "traits": {"email": email},
        "library": {"name": "drip-segment", "version": "2.3.1"},
        "locale": "en-US",
        "timezone": rng.choice(["America/New_York", "Europe/Berlin", "Asia/Tokyo"]),
    }
    if event in ("Email Opened", "Email Link Clicked"):
        context["ip"] = f"198.51.100.{rng.randint(1, 254)}"
        context["userAgent"] = rng.choice(_AGENTS)
    identity = {"userId": f"u-{1000 + n}"} if rng.random() < 0.6 else {"anonymousId": email}
    at = now - timedelta(seconds=rng.randint(1, 3600), milliseconds=rng.randint(0, 999))
    return {
        "type": "track",
        "event": event,
        **identity,
        "messageId": _PLACEHOLDER,
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "properties": properties,
        "context": context,
    }


@dataclass
class Template:
    """A serialised body and where its messageIds sit in it."""

    body: bytearray
    slots: list[int]  # byte offsets of each messageId's first character


def _template(obj: Any) -> Template:
    body = bytearray(orjson.dumps(obj))
    needle = b'"messageId":"' + _PLACEHOLDER.encode() + b'"'
    slots: list[int] = []
    start = 0
    while (i := body.find(needle, start)) >= 0:
        slots.append(i + len(b'"messageId":"'))
        start = i + len(needle)
    return Template(body, slots)


def batch_templates(count: int, per_request: int, seed: int = 1) -> list[Template]:
    """`count` distinct /v1/batch bodies of `per_request` events each."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    sent_at = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    out = []
    for _ in range(count):
        out.append(_template({"batch": [email_event(rng, now) for _ in range(per_request)], "sentAt": sent_at}))
    return out


def track_templates(count: int, seed: int = 1) -> list[Template]:
    """`count` distinct /v1/track bodies (one event each, without the "type" a batch item carries)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for _ in range(count):
        ev = email_event(rng, now)
        del ev["type"]
        out.append(_template(ev))
    return out


class Bodies:
    """Unique-id bodies from a ring of templates: fill() patches ids in place (no allocation but one copy)."""

    def __init__(self, templates: list[Template], run: int) -> None:
        self.templates = templates
        self.run = run
        self.next_n = 0
        self._i = 0
        self._high = -1
        prefix = message_id(run, 0)[:24]
        for t in templates:
            for off in t.slots:
                t.body[off : off + 24] = prefix
        self._high = 0

    def fill(self) -> tuple[bytes, int, int]:
        """(body, first counter, events): the events carry counters first .. first + events - 1."""
        t = self.templates[self._i]
        self._i = (self._i + 1) % len(self.templates)
        first = self.next_n
        buf = t.body
        if first >> 48 != self._high:  # the id's prefix changes once every 2**48 events, i.e. never
            self._high = first >> 48
            prefix = message_id(self.run, first)[:24]
            for off in t.slots:
                buf[off : off + 24] = prefix
        for k, off in enumerate(t.slots, first):
            buf[off + 24 : off + ID_WIDTH] = b"%012x" % k
        self.next_n = first + len(t.slots)
        return bytes(buf), first, len(t.slots)


def canonical_messages(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """`n` batch items with unique ids (for the in-process warehouse load benchmark)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        ev = email_event(rng, now)
        ev["messageId"] = message_id(0xBE, i).decode()
        out.append(ev)
    return out
