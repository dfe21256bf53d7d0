"""Opening the scale-out backends in a child process, or one line saying why not."""

from __future__ import annotations

from sluice.backends import Backends, open_backends
from sluice.server.common import StartupError
from sluice.settings import Settings


def open_shared(settings: Settings) -> Backends:
    """Every backend (sluice/backends.py); a StartupError naming the engine that did not answer otherwise.
    The URLs are never repeated: they may carry passwords."""
    try:
        return open_backends(settings)
    except StartupError:
        raise
    except Exception as e:  # NATS or PostgreSQL unreachable, refused, or misconfigured
        first = str(e).splitlines()[0] if str(e) else ""
        raise StartupError(
            f"cannot open the scale-out backends (JetStream stream {settings.nats_stream}, PostgreSQL catalog):"
            f" {type(e).__name__}: {first}"
        ) from None
