"""What the supervisor and its processes share: errors for the user, the admin token, the data dir's
run files, listening sockets, and how a child process is told what to do."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sluice.settings import Settings

SERVER_FILE = "server.json"
ADMIN_TOKEN_FILE = "admin-token"
RUN_DIR = "run"  # per-run files: the log socket, the metrics of every process, the delivery process's health
LOG_SOCKET = "log.sock"
HEALTH_FILE = "health.json"
METRICS_DIR = "metrics"
# Unix socket paths are limited to 108 bytes (sun_path); a longer data dir path gets its socket in a
# private directory under the system's temporary directory instead.
_MAX_SOCKET_PATH = 100
CHILD_ENV = "SLUICE_CHILD"
SUPERVISOR_ENV = "SLUICE_SUPERVISOR"


class StartupError(RuntimeError):
    """The server cannot start; the message is one line for the user (what, and what to do)."""


class AlreadyRunning(StartupError):
    pass


def admin_token(data_dir: Path) -> str:
    """The admin token, created on first use, readable only by its owner."""
    path = data_dir / ADMIN_TOKEN_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def lock(data_dir: Path) -> int:
    fd = os.open(data_dir / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(f"another sluice server is already using {data_dir}") from None
    return fd


def listen(host: str, port: int, flag: str) -> socket.socket:
    """A listening socket, or one line saying why not (before anything claims to be listening)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does: restart at once
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        hint = f"; is another sluice (or another program) using it? choose another with {flag}"
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
    return sock


def fresh_run_dir(data_dir: Path) -> Path:
    """`<data-dir>/run`, emptied: what a previous run left there (a socket, metrics) belongs to no one now."""
    run = data_dir / RUN_DIR
    shutil.rmtree(run, ignore_errors=True)
    (run / METRICS_DIR).mkdir(parents=True, mode=0o700)
    return run


def listen_unix(run_dir: Path) -> tuple[socket.socket, str]:
    """The log writer's listening socket, bound by the supervisor so that clients can connect (and wait
    in its backlog) before the writer process has started, and across its restarts."""
    path = str(run_dir / LOG_SOCKET)
    if len(path.encode()) > _MAX_SOCKET_PATH:
        import tempfile

        path = str(Path(tempfile.mkdtemp(prefix="sluice-")) / LOG_SOCKET)  # mkdtemp: mode 0700
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)  # only this user may connect
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(1024)
    return sock, path


@dataclass
class ChildConfig:
    """What a child process is told (as JSON in its environment): its settings, where things are, and
    the descriptors it inherited."""

    role: str
    settings: dict[str, Any]
    data_dir: str
    run_dir: str
    log_socket: str
    ready_fd: int
    fds: dict[str, int] = field(default_factory=dict)

    def to_env(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_env(cls) -> ChildConfig:
        return cls(**orjson.loads(os.environ[CHILD_ENV]))

    def make_settings(self) -> Settings:
        return settings_from(self.settings)


def settings_from(values: dict[str, Any]) -> Settings:
    return Settings(**{**values, "data_dir": Path(values["data_dir"])})


def settings_dict(settings: Settings) -> dict[str, Any]:
    values = asdict(settings)
    values["data_dir"] = str(settings.data_dir)
    return values
