"""The `sluice` command: one module per command group."""

from __future__ import annotations

# Importing registers the commands (drip_connect adds connect-drip and disconnect-drip to `sources`).
from sluice.cli import (  # noqa: F401
    console,
    deliveries,
    demo,
    destinations,
    drip_connect,
    query,
    recover,
    report,
    serve,
    sources,
)
from sluice.cli.base import accept_data_dir_anywhere, main

accept_data_dir_anywhere(main)

__all__ = ["main"]
