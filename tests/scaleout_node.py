"""A node of the scale-out deployment run as an operator runs it (`sluice serve --role ...`), for the
scale-out tests, and a generous wait for a condition."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import psycopg
from conftest import Sluice


def eventually(check: Callable[[], Any], what: str, seconds: float = 90) -> Any:
    """Until `check()` is truthy; generous, since this machine may be busy (never a timing assertion)."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError, psycopg.Error, OSError, ValueError, KeyError):
            last = check()
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {seconds} s (last: {last!r})")


@dataclass
class Node(Sluice):
    """A sluice node of the scale-out deployment, started with its role."""

    role: str = "ingest"
    args: list[str] = field(default_factory=list)

    def start(self, timeout: float = 120) -> None:
        self.log_path = self.data_dir.parent / f"{self.role}-{self.port}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "--data-dir", str(self.data_dir), "serve", "--role", self.role,
             "--port", str(self.port), "--admin-port", str(self.admin_port), "--workers", str(self.workers)],
            stdout=self._log, stderr=subprocess.STDOUT, env=self._env(), start_new_session=True,
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 120) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice serve --role {self.role} exited: {self.log_path.read_text()}")
            info = orjson.loads((self.data_dir / "server.json").read_bytes())
            if not info["processes"] or not all(p["ready"] for p in info["processes"]):
                return False
            return self.role == "deliver" or httpx.get(f"{self.url}/health", timeout=2).status_code == 200

        try:
            eventually(ready, f"the {self.role} node on {self.data_dir.name}", timeout)
        except AssertionError:
            raise RuntimeError(f"sluice serve --role {self.role} did not start: {self.log_path.read_text()}") from None

    def admin(self, path: str) -> Any:
        token = (self.data_dir / "admin-token").read_text().strip()
        r = httpx.get(f"{self.admin_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        r.raise_for_status()
        return r.json()
