"""A message's *shape*: the exact key structure that decides its tables and columns, as a digest.

The loader plans one batch per shape instead of per message: every message of a shape feeds the
same tables through the same leaf paths. So the key must be exact (two structures never share one)
and the same in every process, on every machine and after a restart: a 128-bit BLAKE2b of the
structure serialised by orjson. Ingest computes it while it validates (the objects are already in
hand); the loader recomputes it from the body where a record has none (re-drives, older logs).
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

import orjson

MAX_DEPTH = 64  # objects nested deeper than this cannot become sensible columns anyway
SHAPE_BYTES = 16
# The object each message type carries its payload in.
PAYLOAD_KEY: dict[str, str | None] = {
    "track": "properties",
    "page": "properties",
    "screen": "properties",
    "identify": "traits",
    "group": "traits",
    "alias": None,
}


class TooDeep(ValueError):
    pass


def structure(obj: dict[str, Any], depth: int = 1) -> tuple[Any, ...]:
    """Keys in order, and the key structure of nested objects (an empty object is `(key, ())`, a leaf
    is its key alone): all a loader needs to know to name the columns."""
    for value in obj.values():
        if type(value) is dict:
            if depth >= MAX_DEPTH:
                raise TooDeep(f"objects are nested more than {MAX_DEPTH} levels deep")
            return tuple([(k, structure(v, depth + 1)) if type(v) is dict else k for k, v in obj.items()])
    return tuple(obj)  # flat: the common case, done in C


_DIGESTS: dict[tuple[Any, ...], bytes] = {}
_MAX_DIGESTS = 4096


def digest(mtype: str, event: str | None, payload: tuple[Any, ...], context: tuple[Any, ...]) -> bytes:
    """The shape's digest, remembered per key structure: a source sends few distinct structures, and a
    dict lookup (the tuple's hash is computed in C) costs a third of serialising and hashing it again.
    The memo only saves work: the digest is the same function of the structure, in every process."""
    key = (mtype, event, payload, context)
    found = _DIGESTS.get(key)
    if found is None:
        if len(_DIGESTS) >= _MAX_DIGESTS:  # a sender inventing structures: start over rather than grow
            _DIGESTS.clear()
        found = _DIGESTS[key] = blake2b(orjson.dumps(key), digest_size=SHAPE_BYTES).digest()
    return found


def shape_of(msg: dict[str, Any]) -> bytes:
    """The shape of a canonical message read back from the log (what ingest computed for it)."""
    mtype = msg["type"]
    key = PAYLOAD_KEY.get(mtype)
    payload = msg.get(key) if key else None
    context = msg.get("context")
    return digest(
        mtype,
        msg.get("event") if mtype == "track" else None,
        structure(payload) if isinstance(payload, dict) else (),
        structure(context) if isinstance(context, dict) else (),
    )
