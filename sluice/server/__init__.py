"""`sluice serve`: a supervisor and the processes it runs (supervisor.py says which and why).

Light on purpose: the CLI imports this package for the server file and the admin token, and the
supervisor imports nothing heavy (DuckDB and Arrow live only in the delivery process)."""

from sluice.datadir import WAREHOUSE_FILE
from sluice.server.common import ADMIN_TOKEN_FILE, SERVER_FILE, AlreadyRunning, StartupError, admin_token
from sluice.server.supervisor import serve

__all__ = ["ADMIN_TOKEN_FILE", "SERVER_FILE", "WAREHOUSE_FILE", "AlreadyRunning", "StartupError", "admin_token",
           "serve"]
