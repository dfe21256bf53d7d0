"""Segment's Webhooks destinations as a way in: what they POST, how it is signed, and what sluice stores.

- Classic *Webhooks*: one request per event; the body is the event's JSON, as Segment's pipeline holds it
  (`type`, `messageId`, `context` with the `ip` Segment filled, `timestamp`, `originalTimestamp`, `sentAt`,
  `receivedAt`, ...).
- *Webhooks (Actions)*: the mapping's `data` (by default the whole event) as the body; with batching on, a
  JSON array of them.

Both sign with the shared secret: `X-Signature` is the hex HMAC-SHA1 of the JSON of the payload. For one event
that is the raw body. For a batch, Segment's actions framework signs the *first* payload only (the request is
extended with the first item's signature; Segment's own tests of the Webhook destination check it that way), so
a batch verifies against the raw JSON of its first element, which is the text between `[` and that element's
end. Nothing with a time is signed: a captured request verifies again, and messageIds make it a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from sluice.ingest.canonical import Arrival, Rejected, epoch_ms, iso_ms, parse_time

SIGNATURE_HEADER = "x-signature"


def _hex_hmac(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha1).hexdigest()


def _first_element(body: bytes) -> bytes | None:
    """The exact bytes of a JSON array's first element, or None when the body is not such an array."""
    text = body.decode("utf-8", errors="strict").lstrip()
    if not text.startswith("["):
        return None
    start = len(text) - len(text[1:].lstrip())  # skip whitespace after "["
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    return text[start:end].encode()


def signature_ok(body: bytes, signature: str | None, secret: str | None) -> bool:
    """Whether `signature` is the source's shared-secret HMAC of this body (or, for a batch, of its first event)."""
    if not signature or not secret:
        return False
    given = signature.strip().lower()
    if hmac.compare_digest(_hex_hmac(secret, body), given):
        return True
    try:
        first = _first_element(body)
    except UnicodeDecodeError:
        return False
    return first is not None and hmac.compare_digest(_hex_hmac(secret, first), given)


def events_of(payload: Any) -> tuple[list[Any], bool]:
    """The events a request carries, and whether it was a batch (an array); ValueError when it is neither."""
    if isinstance(payload, dict):
        return [payload], False
    if isinstance(payload, list):
        return payload, True
    raise ValueError("the body must be a Segment event (a JSON object) or an array of them")


def as_received(event: Any, keep_ip: bool) -> tuple[Any, Arrival]:
    """What to canonicalise for an event Segment already processed, so that the stored message keeps Segment's
    times: the client's `originalTimestamp` as the timestamp sent, with `sentAt`, arriving at Segment's
    `receivedAt`, gives back the same corrected `timestamp` Segment computed. context.ip is Segment's (from the
    browser or server that called Segment): never the address of Segment's servers."""
    if not isinstance(event, dict):
        return event, Arrival.now(keep_ip=keep_ip)  # canonicalize says what is wrong with it
    msg = dict(event)
    if msg.get("originalTimestamp") is not None:
        msg["timestamp"] = msg["originalTimestamp"]
    else:  # no client time to correct: the timestamp stands as Segment sent it
        msg.pop("sentAt", None)
    received = event.get("receivedAt")
    if received is None:
        return msg, Arrival.now(keep_ip=keep_ip)
    received_ms = epoch_ms(parse_time(received, "receivedAt"))
    try:
        received_iso = iso_ms(received_ms)
    except ValueError:
        raise Rejected("receivedAt is outside the years 1 to 9999", "bad_timestamp") from None
    return msg, Arrival(received_ms=received_ms, received_iso=received_iso, keep_ip=keep_ip)
