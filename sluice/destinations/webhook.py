"""Webhook destination: POST events as JSON, one per request or in batches, optionally signed.

With a secret, every request carries `X-Sluice-Signature: sha256=<hex>`, the HMAC-SHA256 of the
exact body bytes with the secret, so the receiver can verify it came from this sluice.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import httpx

from sluice import __version__
from sluice.catalog.models import Destination, Source
from sluice.destinations.base import Failure, Target, TransientError
from sluice.destinations.http import retry_after, transient_status
from sluice.log.base import Entry

SIGNATURE_HEADER = "X-Sluice-Signature"


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    url = config.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("a webhook destination needs --url http(s)://...")
    headers = config.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValueError("headers must be NAME=VALUE pairs")
    batch_size = int(config.get("batch_size", 1))
    if not 1 <= batch_size <= 1000:
        raise ValueError("--batch-size must be between 1 and 1000")
    return {"url": url, "headers": headers, "secret": config.get("secret") or None, "batch_size": batch_size}


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookTarget(Target):
    def __init__(self, destination: Destination, timeout: float) -> None:
        self.config = validate_config(destination.config)
        self.label = destination.name
        self.consumer = destination.consumer
        self._client = httpx.Client(timeout=timeout, headers={"User-Agent": f"sluice/{__version__}"})

    def close(self) -> None:
        self._client.close()

    def _post(self, body: bytes) -> httpx.Response:
        headers = {"Content-Type": "application/json", **self.config["headers"]}
        if self.config["secret"]:
            headers[SIGNATURE_HEADER] = sign(self.config["secret"], body)
        return self._client.post(self.config["url"], content=body, headers=headers)

    def deliver(self, source: Source, entries: Sequence[Entry], replay: bool = False) -> list[Failure]:
        failures: list[Failure] = []
        done: int | None = None
        size = self.config["batch_size"]
        for i in range(0, len(entries), size):
            chunk = entries[i : i + size]
            # The log holds each event's canonical JSON: send those bytes as they are.
            body = chunk[0].body if size == 1 else b'{"batch":[' + b",".join(e.body for e in chunk) + b"]}"
            try:
                response = self._post(body)
            except httpx.HTTPError as e:
                raise TransientError(f"{self.config['url']}: {type(e).__name__}: {e}", None, done, failures) from None
            status = response.status_code
            if 300 <= status < 400:  # not followed: a moved endpoint is a config problem, not the event's
                raise TransientError(f"{self.config['url']} redirects ({status}); configure the final URL",
                                     None, done, failures)
            if transient_status(status):
                raise TransientError(
                    f"{self.config['url']} answered {status}", retry_after(response), done, failures
                )
            if status >= 400:
                if len(chunk) > 1:  # one bad event must not sink its batch: find it alone
                    failures += self._one_by_one(chunk, failures, done)
                else:
                    failures.append(Failure(chunk[0], f"webhook refused it: {status} {response.text[:300]}"))
            done = chunk[-1].seq
        return failures

    def _one_by_one(self, chunk: Sequence[Entry], failures: list[Failure], done: int | None) -> list[Failure]:
        refused: list[Failure] = []
        for entry in chunk:
            try:
                response = self._post(entry.body)
            except httpx.HTTPError as e:
                raise TransientError(f"{type(e).__name__}: {e}", None, done, failures + refused) from None
            if transient_status(response.status_code):
                raise TransientError(f"answered {response.status_code}", retry_after(response), done,
                                     failures + refused)
            if response.status_code >= 400:
                refused.append(Failure(entry, f"webhook refused it: {response.status_code} {response.text[:300]}"))
            done = entry.seq
        return refused
