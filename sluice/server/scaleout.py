"""`sluice serve --role ingest|deliver|all` on the scale-out backends (docs/scale-out.md).

    --role ingest    ingest x N   (HTTP ingest appending to JetStream; answers once the stream acknowledged)
    --role deliver   delivery     (the workers this node owns among the deliver nodes, the admin API)
    --role all       both

The same supervisor as on one machine (restarts, ordered stop, die-with-parent), without the log-writer
process: JetStream is the log and its own writer. Delivery has no embedded DuckDB warehouse: every
node's events load into a PostgreSQL destination, which the deliver nodes share. The data dir keeps
only this node's admin token, lock and run files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

import orjson

from sluice.server.common import (
    ADMIN_TOKEN_FILE,
    SERVER_FILE,
    StartupError,
    admin_token,
    fresh_run_dir,
    listen,
    lock,
)
from sluice.server.supervisor import Slot, Supervisor, workers_for
from sluice.settings import Settings

logger = logging.getLogger("sluice.supervisor")
ROLES = ("ingest", "deliver", "all")


@dataclass
class ScaleOutSupervisor(Supervisor):
    role: str = "all"

    def __post_init__(self) -> None:
        super().__post_init__()
        deliver = [Slot("deliver", 0)] if self.role in ("deliver", "all") else []
        ingest = [Slot("ingest", i) for i in range(self.workers)] if self.role in ("ingest", "all") else []
        self.slots = [*deliver, *ingest]

    def child_fds(self, slot: Slot) -> dict[str, int]:
        return {"admin" if slot.role == "deliver" else "ingest": self.sockets[
            "admin" if slot.role == "deliver" else "ingest"].fileno()}

    def child_role(self, slot: Slot) -> str:
        return f"shared-{slot.role}"

    def start(self) -> None:
        deliver = [s for s in self.slots if s.role == "deliver"]
        ingest = [s for s in self.slots if s.role == "ingest"]
        for slot in self.slots:
            self.spawn(slot)
        # Ingest needs nothing from this node's delivery (both talk to the shared engines): they start together.
        self.wait_until_ready(deliver)
        self.write_server_file()
        self.wait_until_ready(ingest)
        self.started_at = time.monotonic()

    def write_server_file(self) -> None:
        s = self.settings
        info: dict[str, Any] = {"pid": os.getpid(), "role": self.role, "processes": self.processes()}
        if "ingest" in self.sockets:
            info["url"] = f"http://{s.host}:{self.sockets['ingest'].getsockname()[1]}"
        if "admin" in self.sockets:
            info["admin_url"] = f"http://{s.admin_host}:{self.sockets['admin'].getsockname()[1]}"
        tmp = self.data_dir / (SERVER_FILE + ".tmp")
        tmp.write_bytes(orjson.dumps(info))
        os.replace(tmp, self.data_dir / SERVER_FILE)


def _banner(supervisor: ScaleOutSupervisor) -> str:
    s = supervisor.settings
    roles = "ingest and deliver" if supervisor.role == "all" else supervisor.role
    lines = [f"sluice is running the {roles} role of a scale-out deployment (docs/scale-out.md)"]
    if "ingest" in supervisor.sockets:
        lines.append(f"  ingest:    http://{s.host}:{supervisor.sockets['ingest'].getsockname()[1]}"
                     f" ({supervisor.workers} process{'es' if supervisor.workers != 1 else ''})")
    if "admin" in supervisor.sockets:
        lines.append(f"  admin API: http://{s.admin_host}:{supervisor.sockets['admin'].getsockname()[1]}"
                     f" (token in {supervisor.data_dir / ADMIN_TOKEN_FILE})")
    # The URLs may carry passwords: only which engines, never the URLs themselves.
    lines.append(f"  log:       JetStream stream {s.nats_stream} ({len(s.log.split(','))} server address(es))")
    lines.append("  catalog:   PostgreSQL (no embedded DuckDB warehouse: load into a postgres destination)")
    return "\n".join(lines) + "\n"


def serve_scale_out(settings: Settings) -> None:
    if settings.role not in ROLES:
        raise StartupError(f"--role {settings.role!r}: use one of {', '.join(ROLES)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = lock(data_dir)
    sockets: dict[str, socket.socket] = {}
    supervisor: ScaleOutSupervisor | None = None
    try:
        if settings.role in ("ingest", "all"):
            sockets["ingest"] = listen(settings.host, settings.port, "--port")
        if settings.role in ("deliver", "all"):
            sockets["admin"] = listen(settings.admin_host, settings.admin_port, "--admin-port")
        admin_token(data_dir)
        run_dir = fresh_run_dir(data_dir)
        workers = workers_for(settings) if settings.role != "deliver" else 0
        supervisor = ScaleOutSupervisor(settings, data_dir, sockets, "", run_dir, workers, role=settings.role)

        def stop(signum: int, frame: Any) -> None:
            assert supervisor is not None
            supervisor.stopping += 1
            if supervisor.stopping > 1:
                for slot in supervisor.slots:
                    if slot.proc is not None and slot.proc.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            slot.proc.send_signal(signal.SIGTERM)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        supervisor.start()
        supervisor.write_server_file()
        print(_banner(supervisor), end="", flush=True)
        supervisor.watch()
    finally:
        with contextlib.suppress(FileNotFoundError):
            (data_dir / SERVER_FILE).unlink()
        if supervisor is not None:
            supervisor.stop()
        for sock in sockets.values():
            sock.close()
        os.close(lock_fd)
