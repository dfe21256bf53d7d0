"""The `sluice` command: one module per command group."""

from __future__ import annotations

from sluice.cli import console, deliveries, demo, destinations, query, recover, report, serve, sources  # noqa: F401 - registers commands
from sluice.cli.base import accept_data_dir_anywhere, main

accept_data_dir_anywhere(main)

__all__ = ["main"]
