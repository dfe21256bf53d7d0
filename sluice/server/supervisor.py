"""`sluice serve`: a small supervisor and the processes it runs.

    supervisor ── log writer    (one: the only writer of log.db; a Unix socket in <data-dir>/run)
               ├─ delivery      (one: delivery workers, the warehouse loader, the admin API; owns DuckDB)
               └─ ingest x N    (HTTP ingest, one per core by default, all on the one ingest socket)

Why this layout: one Python process is one GIL, and the profile showed ingest, the log writer and the
loader each waiting for it (docs/benchmarks.md). Ingest parses and validates in Python, so it scales
with processes; the loader's DuckDB work and the log's fsyncs need one owner each (DuckDB allows one
writing process; SQLite one writer at a time, which sluice makes one writer, period). So ingest runs
N-fold, and hands its records to the log writer over a local socket (a 200 still means fsynced);
the delivery process reads the log itself and owns the warehouse, so admin SQL is served there.

The supervisor binds every listening socket itself before any child starts (a busy port is one line,
and clients that connect early wait in the backlog rather than being refused), hands them down, and
stays small: it imports neither the HTTP stack nor DuckDB. It restarts a child that dies (at once,
then with doubling delays while it keeps dying), and stops them all on SIGTERM or SIGINT in order:
ingest first (no new events; answers for what is in flight), then delivery, then the log writer.
Children die with it even when it is killed (PR_SET_PDEATHSIG), so none is left holding a port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sluice.backends import embedded
from sluice.catalog.store import Catalog
from sluice.datadir import WAREHOUSE_FILE
from sluice.server.common import (
    ADMIN_TOKEN_FILE,
    CHILD_ENV,
    METRICS_DIR,
    SERVER_FILE,
    SUPERVISOR_ENV,
    ChildConfig,
    StartupError,
    admin_token,
    fresh_run_dir,
    listen,
    listen_unix,
    lock,
    settings_dict,
    settings_from,
)
from sluice.settings import Settings

logger = logging.getLogger("sluice.supervisor")
_STOP_ORDER = ("ingest", "deliver", "log")
_STOP_WAIT_SECONDS = {"ingest": 15.0, "deliver": 45.0, "log": 15.0}
_HEALTHY_AFTER_SECONDS = 30.0  # a child that ran this long and then died is restarted at once


@dataclass
class Slot:
    """One child the supervisor keeps running."""

    role: str
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready: bool = False
    crashes: int = 0  # in a row, each soon after its start
    restart_at: float | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.role if self.role != "ingest" else f"ingest {self.index + 1}"


@dataclass
class Supervisor:
    settings: Settings
    data_dir: Path
    sockets: dict[str, socket.socket]
    log_socket: str
    run_dir: Path
    workers: int
    slots: list[Slot] = field(default_factory=list)
    stopping: int = 0
    started_at: float | None = None  # set once every child served for the first time

    def __post_init__(self) -> None:
        self._ready_r, self._ready_w = os.pipe()
        os.set_blocking(self._ready_r, False)
        # Ingest processes import while delivery starts, then wait for this pipe: /health answers only once
        # the warehouse is open and the admin API listens, as it always has.
        self._go_r, self._go_w = os.pipe()
        self._buffer = b""
        self._env = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(self.run_dir / METRICS_DIR),
        }
        self.slots = [Slot("log", 0), Slot("deliver", 0), *(Slot("ingest", i) for i in range(self.workers))]

    # -- children ---------------------------------------------------------------------------------

    def spawn(self, slot: Slot) -> None:
        fds = {"log": self.sockets["log"].fileno()} if slot.role == "log" else {}
        if slot.role == "deliver":
            fds["admin"] = self.sockets["admin"].fileno()
        if slot.role == "ingest":
            fds["ingest"] = self.sockets["ingest"].fileno()
            fds["go"] = self._go_r
        config = ChildConfig(
            role=slot.role, settings=settings_dict(self.settings), data_dir=str(self.data_dir),
            run_dir=str(self.run_dir), log_socket=self.log_socket, ready_fd=self._ready_w, fds=fds,
        )
        slot.proc = subprocess.Popen(
            # The data dir in the command line is for `ps` only: the configuration comes in the environment.
            [sys.executable, "-m", "sluice.server.child", slot.role, str(self.data_dir)],
            env={**self._env, CHILD_ENV: config.to_env()},
            pass_fds=[self._ready_w, *fds.values()],
        )
        slot.started = time.monotonic()
        slot.ready = False
        slot.restart_at = None
        slot.error = None

    def go(self, count: int) -> None:
        os.write(self._go_w, b"g" * count)

    def _read_ready(self, timeout: float) -> None:
        """Take the children's `<role> <pid> ready|error <message>` lines."""
        with contextlib.suppress(InterruptedError):
            select.select([self._ready_r], [], [], timeout)
        try:
            self._buffer += os.read(self._ready_r, 65536)
        except BlockingIOError:
            return
        *lines, self._buffer = self._buffer.split(b"\n")
        by_pid = {s.proc.pid: s for s in self.slots if s.proc is not None}
        changed = False
        for line in lines:
            try:
                _role, pid, word, *rest = line.decode(errors="replace").split(" ", 3)
                slot = by_pid.get(int(pid))
            except ValueError:  # not a line a child wrote: ignore it
                continue
            if slot is None:
                continue
            if word == "ready":
                slot.ready = changed = True
                if slot.crashes:
                    logger.warning("the %s process is running again (pid %s)", slot.name, pid)
            else:
                slot.error = rest[0] if rest else "failed"
        if changed and self.started_at is not None:
            self.write_server_file()

    def wait_until_ready(self, slots: list[Slot]) -> None:
        """Until each of `slots` says it serves; StartupError with the first child's reason otherwise."""
        while not all(s.ready for s in slots):
            if self.stopping:
                raise KeyboardInterrupt
            self._read_ready(0.05)
            for s in slots:
                if s.error is not None:
                    raise StartupError(s.error)
                if s.proc is not None and s.proc.poll() is not None and not s.ready:
                    self._read_ready(0)  # its last words may still be in the pipe
                    if s.error is not None:
                        raise StartupError(s.error)
                    raise StartupError(f"the {s.name} process exited with status {s.proc.returncode} while starting")

    def start(self) -> None:
        log, deliver, *ingest = self.slots
        self.spawn(log)
        self.wait_until_ready([log])  # delivery checks its cursors against the log: the log comes first
        self.spawn(deliver)
        for slot in ingest:
            self.spawn(slot)
        self.wait_until_ready([deliver])
        # Written before ingest serves: whoever sees /health answer finds the admin API through it.
        self.write_server_file()
        self.go(len(ingest))
        self.wait_until_ready(ingest)
        self.started_at = time.monotonic()

    def watch(self) -> None:
        """Restart children that die, until asked to stop."""
        while not self.stopping:
            self._read_ready(0.1)
            now = time.monotonic()
            for slot in self.slots:
                proc = slot.proc
                if proc is not None and proc.poll() is not None and slot.restart_at is None:
                    lived = now - slot.started
                    slot.crashes = slot.crashes + 1 if lived < _HEALTHY_AFTER_SECONDS else 1
                    delay = 0.0 if slot.crashes == 1 else min(
                        0.25 * 2 ** (slot.crashes - 2), self.settings.restart_backoff_max_seconds
                    )
                    reason = f": {slot.error}" if slot.error else ""
                    logger.warning("the %s process (pid %d) exited with status %s%s; restarting in %.1f s",
                                   slot.name, proc.pid, proc.returncode, reason, delay)
                    slot.restart_at = now + delay
                if slot.restart_at is not None and now >= slot.restart_at and not self.stopping:
                    self.spawn(slot)
                    if slot.role == "ingest":
                        self.go(1)
                    self.write_server_file()

    def stop(self) -> None:
        """Stop every child in order; SIGKILL one that does not stop in time."""
        for role in _STOP_ORDER:
            procs = [s.proc for s in self.slots if s.role == role and s.proc is not None and s.proc.poll() is None]
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + _STOP_WAIT_SECONDS[role]
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    logger.warning("the %s process (pid %d) did not stop in time: killed", role, proc.pid)
                    proc.kill()
                    proc.wait()
        for slot in self.slots:  # any left from an aborted start
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.kill()
                slot.proc.wait()
        for fd in (self._ready_r, self._ready_w, self._go_r, self._go_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- what others see ------------------------------------------------------------------------------

    def processes(self) -> list[dict[str, Any]]:
        return [{"role": s.role, "pid": s.proc.pid, "ready": s.ready} for s in self.slots if s.proc is not None]

    def write_server_file(self) -> None:
        s = self.settings
        info = {
            "pid": os.getpid(),
            "url": f"http://{s.host}:{self.sockets['ingest'].getsockname()[1]}",
            "admin_url": f"http://{s.admin_host}:{self.sockets['admin'].getsockname()[1]}",
            "public_url": s.public_url,  # what every printed URL starts with, when set (sources/public_url.py)
            "processes": self.processes(),
        }
        tmp = self.data_dir / (SERVER_FILE + ".tmp")
        tmp.write_bytes(orjson.dumps(info))
        os.replace(tmp, self.data_dir / SERVER_FILE)


def _banner(supervisor: Supervisor, catalog: Catalog) -> str:
    s = supervisor.settings
    data_dir = supervisor.data_dir
    ingest_url = f"http://{s.host}:{supervisor.sockets['ingest'].getsockname()[1]}"
    admin_url = f"http://{s.admin_host}:{supervisor.sockets['admin'].getsockname()[1]}"
    return (
        f"sluice is listening on {ingest_url}\n"
        f"  admin API: {admin_url} (token in {data_dir / ADMIN_TOKEN_FILE})\n"
        f"  data dir:  {data_dir}\n"
        f"  warehouse: {data_dir / WAREHOUSE_FILE} (query it with: sluice query \"show all tables\")\n"
        f"  processes: {supervisor.workers} ingest, 1 delivery and warehouse loader, 1 log writer\n"
        + (
            ""
            if catalog.list_sources()
            else "  no sources yet; create one with:\n"
            "    sluice sources create http --name Web --schema web\n"
            "    sluice sources create drip --name Drip --schema drip\n"
        )
    )


def main() -> None:
    """`sluice serve` after the CLI has read its flags (cli/serve.py): one line and status 1 if it cannot
    start, status 0 once stopped."""
    from sluice.datadir import DataDirError

    settings = settings_from(orjson.loads(os.environ.pop(SUPERVISOR_ENV)))
    os.umask(0o077)  # as the CLI: the data dir holds write keys and everyone's events
    try:
        serve(settings)
    except (StartupError, DataDirError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C while still starting (once running, the server handles it itself)
        print("stopped before the server started", file=sys.stderr, flush=True)
    except OSError as e:  # the disk, the data dir's permissions: one line, as every command
        print(f"error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", file=sys.stderr, flush=True)
        sys.exit(1)


def workers_for(settings: Settings) -> int:
    return settings.workers if settings.workers > 0 else (len(os.sched_getaffinity(0)) or 1)


def serve(settings: Settings) -> None:
    try:
        scale_out = not embedded(settings)
    except ValueError as e:
        raise StartupError(str(e)) from None
    if scale_out:  # the backends exist (sluice/backends.py); running them in `serve` comes with --role
        raise StartupError(
            "SLUICE_LOG / SLUICE_CATALOG name scale-out backends, which `sluice serve` does not run yet"
            " (docs/scale-out.md#what-is-not-wired-yet); unset them to serve from the data dir"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = lock(data_dir)
    sockets: dict[str, socket.socket] = {}
    supervisor: Supervisor | None = None
    server_file = data_dir / SERVER_FILE
    try:
        sockets["ingest"] = listen(settings.host, settings.port, "--port")
        sockets["admin"] = listen(settings.admin_host, settings.admin_port, "--admin-port")
        catalog = Catalog(data_dir)  # a missing or damaged catalog: one line, before any child starts
        admin_token(data_dir)
        run_dir = fresh_run_dir(data_dir)
        sockets["log"], log_socket = listen_unix(run_dir)
        supervisor = Supervisor(settings, data_dir, sockets, log_socket, run_dir, workers_for(settings))

        def stop(signum: int, frame: Any) -> None:
            assert supervisor is not None
            supervisor.stopping += 1
            if supervisor.stopping > 1:  # a second Ctrl-C: stop waiting for open requests
                for slot in supervisor.slots:
                    if slot.proc is not None and slot.proc.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            slot.proc.send_signal(signal.SIGTERM)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        supervisor.start()
        supervisor.write_server_file()
        print(_banner(supervisor, catalog), end="", flush=True)
        supervisor.watch()
    finally:
        with contextlib.suppress(FileNotFoundError):
            server_file.unlink()
        if supervisor is not None:
            supervisor.stop()
        for sock in sockets.values():
            sock.close()
        if "log" in sockets and supervisor is not None:
            with contextlib.suppress(OSError):
                os.unlink(supervisor.log_socket)
                if Path(supervisor.log_socket).parent != supervisor.run_dir:  # a private temporary directory
                    os.rmdir(Path(supervisor.log_socket).parent)
        os.close(lock_fd)
