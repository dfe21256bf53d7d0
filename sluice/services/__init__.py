"""The service layer under the CLI, the admin API and the console: what a user can do, once.

Each function takes what it works on (the catalog, the log, the delivery state's writer, the read-only
query path) as arguments, so the CLI (files, or the running server) and the console (inside the server)
call the same code.
"""
