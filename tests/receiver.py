"""A real HTTP endpoint for webhook-destination tests: records what arrives, can fail on demand."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class Receiver:
    """Listens on 127.0.0.1:`port` once started; `respond` decides the status for each message."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[dict[str, Any]] = []  # every message accepted, in arrival order
        self.requests: list[tuple[int, dict[str, str], bytes]] = []  # (status, headers, body)
        self.respond: Callable[[dict[str, Any]], int] = lambda message: 200
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                payload = orjson.loads(body)
                messages = payload.get("batch", [payload])
                statuses = [receiver.respond(m) for m in messages]
                status = max(statuses)  # one bad message fails the whole request, like real APIs
                with receiver._lock:
                    receiver.requests.append((status, dict(self.headers), body))
                    if status < 300:
                        receiver.received.extend(messages)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if status < 300 else b'{"error": "refused"}')

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
