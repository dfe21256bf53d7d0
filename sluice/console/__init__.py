"""The web console: server-rendered pages on the admin listener, over the same service layer as the CLI.

`session.py` holds the sign-in, session and CSRF rules; `guard.py` applies them to every console path
(the admin API paths keep their Bearer token, sluice/api/app.py). Each page is a module of its own.
"""
