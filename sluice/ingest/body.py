"""Read a request body within the size limit, gunzip it if asked, and decode its JSON once."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import Request


class BadRequest(Exception):
    """Answered with 400 and `{"success": false, "error": message}`; `code` labels the metric."""

    def __init__(self, message: str, code: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def _too_large(limit: int) -> BadRequest:
    return BadRequest(f"request body is larger than the limit of {limit:,} bytes", "too_large")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it passes `limit` (never buffered past it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r}: send gzip or none", "bad_encoding")
    # The limit applies to the decompressed size too, so a small bomb cannot expand unbounded.
    wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        raise BadRequest(f"body is not valid {encoding}: {e}", "bad_encoding") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    if not inflater.eof:
        raise BadRequest(f"body is truncated {encoding} data", "bad_encoding")
    return out


def decode_json(body: bytes) -> Any:
    if not body:
        raise BadRequest("request body is empty; send a JSON object", "invalid_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"request body is not valid JSON: {e}", "invalid_json") from None
