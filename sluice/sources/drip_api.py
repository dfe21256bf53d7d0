"""A small client of Drip's REST API v2 for what the Drip source reads and sets up: its webhooks, the
broadcasts, campaigns (email series) and workflows, and the email metrics (reference/drip.md and
reference/email-metrics.md).

Basic auth with the API token, a User-Agent naming sluice, paging by `page`/`per_page` until
`meta.total_pages`, and Drip's 429: its `Retry-After` is waited for when it is short (`max_wait`), else
the call fails with the time to try again. Errors carry Drip's own message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from sluice.http_util import retry_after, user_agent

DRIP_API_URL = "https://api.getdrip.com"
PER_PAGE = 100  # Drip's documented maximum page size for listings


class DripAPIError(Exception):
    """Drip refused or failed a call; the message is meant for the user (never holds the token)."""

    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def drip_errors(response: httpx.Response) -> str:
    """Drip's error text: `Email is required (presence_error on email)`, several joined by "; "."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            parts = []
            for err in errors:
                if not isinstance(err, dict):
                    continue
                where = f" on {err['attribute']}" if err.get("attribute") else ""
                code = f" ({err.get('code', 'error')}{where})"
                parts.append(f"{err.get('message', 'error')}{code}")
            if parts:
                return "; ".join(parts)
        if isinstance(data.get("message"), str):
            return data["message"]
    text = response.text.strip()[:200]
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


_HINTS = {
    401: "check the API token (Drip: User Settings > API Token)",
    403: "this API token cannot reach that account: check the account id (the number in your Drip URL)",
}


class DripAPI:
    def __init__(self, account_id: str, api_token: str, base_url: str = DRIP_API_URL, max_wait: float = 60.0,
                 timeout: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> None:
        account_id = str(account_id).strip()
        if not account_id.isdigit():
            raise ValueError(f"a Drip account id is a number (the one in your Drip URL), not {account_id!r}")
        if not api_token.strip():
            raise ValueError("a Drip API token is needed (Drip: User Settings > API Token)")
        self.account_id = account_id
        self.max_wait = max_wait
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=f"{base_url.rstrip('/')}/v2/{account_id}", auth=(api_token.strip(), ""), timeout=timeout,
            headers={"User-Agent": user_agent(), "Accept": "application/json"},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DripAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        for _ in range(3):
            try:
                r = self._client.request(method, path, json=json, params=params)
            except httpx.HTTPError as e:
                raise DripAPIError(f"Drip's API cannot be reached: {e}", 0) from None
            if r.status_code == 429:
                wait = retry_after(r)
                if wait is not None and wait <= self.max_wait:
                    self._sleep(wait)
                    continue
                when = f" (Drip says: retry in {wait:.0f} s)" if wait is not None else ""
                raise DripAPIError(f"Drip's rate limit is reached{when}: {drip_errors(r)}", 429, wait)
            if r.status_code >= 400:
                hint = _HINTS.get(r.status_code)
                message = f"Drip answered {r.status_code} to {method} {path}: {drip_errors(r)}"
                raise DripAPIError(message + (f"; {hint}" if hint else ""), r.status_code, retry_after(r))
            return r.json() if r.content else None
        raise DripAPIError("Drip's rate limit is still reached after waiting", 429)

    def pages(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paged listing (`{key: [...], "meta": {"page", "total_pages"}}`)."""
        page = 1
        while True:
            data = self.request("GET", path, params={**(params or {}), "page": page, "per_page": PER_PAGE}) or {}
            yield from data.get(key) or []
            total = (data.get("meta") or {}).get("total_pages") or 1
            if page >= int(total):
                return
            page += 1

    # -- webhooks (GET/POST /webhooks, GET/DELETE /webhooks/:id) --------------------------------

    def webhooks(self) -> list[dict[str, Any]]:
        return list((self.request("GET", "/webhooks") or {}).get("webhooks") or [])

    def webhook(self, webhook_id: str) -> dict[str, Any]:
        return dict(((self.request("GET", f"/webhooks/{webhook_id}") or {}).get("webhooks") or [{}])[0])

    def create_webhook(self, post_url: str, events: list[str], include_received_email: bool) -> dict[str, Any]:
        body = {"webhooks": [{"post_url": post_url, "events": events,
                              "include_received_email": include_received_email}]}
        return dict(((self.request("POST", "/webhooks", json=body) or {}).get("webhooks") or [{}])[0])

    def delete_webhook(self, webhook_id: str) -> None:
        self.request("DELETE", f"/webhooks/{webhook_id}")
