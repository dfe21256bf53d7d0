"""The entry point of every process the supervisor starts: `python -m sluice.server.child ROLE`.

Roles are chosen by name, and only the chosen role's module is imported (as uvicorn maps names to
implementations): an ingest process never imports DuckDB or Arrow. Each role's `run(child)` sets up,
calls `child.ready()` once it serves, and returns when asked to stop (SIGTERM).
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import signal
import sys

from sluice.datadir import DataDirError
from sluice.server.common import ChildConfig, StartupError

ROLES = {
    "log": "sluice.server.log_role",  # the one writer of log.db, fed over a local socket
    "deliver": "sluice.server.deliver_role",  # delivery workers, the warehouse loader, the admin API
    "ingest": "sluice.server.ingest_role",  # HTTP ingest; N of them share one listening socket
    # The scale-out roles (sluice/server/scaleout.py): the same jobs on the shared engines.
    "shared-ingest": "sluice.server.shared_ingest",  # HTTP ingest appending to JetStream
    "shared-deliver": "sluice.server.shared_deliver",  # workers among deliver nodes, the admin API
}

_PR_SET_PDEATHSIG = 1


class Child:
    """A running child: its configuration and the pipe on which it tells the supervisor it is ready."""

    def __init__(self, config: ChildConfig) -> None:
        self.config = config
        self.settings = config.make_settings()

    def _tell(self, line: str) -> None:
        os.write(self.config.ready_fd, (line.replace("\n", " ") + "\n").encode()[:4000])

    def ready(self) -> None:
        self._tell(f"{self.config.role} {os.getpid()} ready")

    def failed(self, message: str) -> None:
        self._tell(f"{self.config.role} {os.getpid()} error {message}")


def _die_with_parent() -> None:
    """If the supervisor dies (even by SIGKILL), its children go too: none is left holding the ports."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the supervisor's own shutdown still stops them
        return
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os._exit(1)


def main() -> None:
    role = sys.argv[1]
    _die_with_parent()
    # Ctrl-C in a terminal reaches the whole process group: the supervisor alone acts on it, and stops
    # its children in order (ingest first, the log writer last).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s {role}[%(process)d] %(name)s: %(message)s")
    child = Child(ChildConfig.from_env())
    module = importlib.import_module(ROLES[role])
    try:
        module.run(child)
    except (StartupError, DataDirError) as e:
        child.failed(str(e))
        sys.exit(1)


if __name__ == "__main__":
    main()
