"""`python -m sluice.server`: the supervisor, as `sluice serve` starts it (see supervisor.py)."""

from sluice.server.supervisor import main

main()
