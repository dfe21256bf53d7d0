"""A `sluice serve` subprocess started as a user starts it: fresh data dir, its own port; and the memory of
all its processes (the supervisor and its children)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status_kb(pid: int, key: str) -> int:
    """A /proc/<pid>/status field in kB (VmHWM = peak RSS, VmRSS = current RSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class SluiceServer:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, workers: int | None = None,
                 args: list[str] | None = None) -> None:
        self.workers = workers  # ingest processes; None: sluice's default (one per core)
        self.args = args or []  # more `serve` flags (`--role ingest`)
        self.data_dir = data_dir
        self.port = free_port()
        self.admin_port = free_port()  # the admin API listens on a port of its own
        self.env = {**os.environ, "SLUICE_BENCH_ENDPOINTS": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-serve.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "sluice.cli", "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, env=self.env, timeout=120, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"sluice {' '.join(args)} failed: {out.stdout}{out.stderr}")
        return out.stdout

    def create_source(self, schema: str = "web") -> dict[str, Any]:
        out = self.cli("sources", "create", "http", "--name", schema.title(), "--schema", schema, "--json")
        return orjson.loads(out)

    def start(self, timeout: float = 30) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "--data-dir", str(self.data_dir), "serve", "--port", str(self.port),
             "--admin-port", str(self.admin_port), *(["--workers", str(self.workers)] if self.workers else []),
             *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice serve exited: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                    info = orjson.loads((self.data_dir / "server.json").read_bytes())
                    if r.status == 200 and all(p["ready"] for p in info["processes"]):
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"sluice serve did not start: {self.log_path.read_text()}")

    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/health", timeout=10) as r:
            return orjson.loads(r.read())

    def query(self, sql: str) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.admin_url}/admin/query", data=orjson.dumps({"sql": sql}), method="POST",
            headers={"Authorization": f"Bearer {self.admin_token()}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            return orjson.loads(r.read())

    def processes(self) -> dict[int, str]:
        """pid -> role of every process of the server: the supervisor and its children."""
        info = orjson.loads((self.data_dir / "server.json").read_bytes())
        return {int(info["pid"]): "supervisor", **{int(p["pid"]): p["role"] for p in info["processes"]}}

    @property
    def pids(self) -> list[int]:
        return list(self.processes())

    def rss_mb(self, key: str = "VmRSS") -> dict[str, float]:
        """RSS (or, with VmHWM, each one's peak) of every process, in MB, by role (ingest processes summed)."""
        out: dict[str, float] = {}
        for pid, role in self.processes().items():
            with contextlib.suppress(OSError, KeyError):
                out[role] = out.get(role, 0.0) + proc_status_kb(pid, key) / 1024
        return out

    def peak_rss_mb(self) -> float:
        """The sum of every process's own peak: an upper bound of the peak of their total."""
        return sum(self.rss_mb("VmHWM").values())

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> SluiceServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RssSampler:
    """Samples the total RSS of all the server's processes while a phase runs; `peak` is the highest total."""

    def __init__(self, server: SluiceServer, every: float = 0.2) -> None:
        self.server = server
        self.every = every
        self.peak = 0.0
        self.peak_by_role: dict[str, float] = {}
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._halt.wait(self.every):
            by_role = self.server.rss_mb()
            total = sum(by_role.values())
            if total > self.peak:
                self.peak, self.peak_by_role = total, by_role
