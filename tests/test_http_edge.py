"""The HTTP edge (sluice/ingest/edge.py): what a client may hold of the server before it is cut off.

Issue 9 found headers of 1 MiB to 100 MiB and 200,000 separate headers all parsed (one 100 MiB header
blocked the server for 12.6 s), and slowloris, idle and slow-body connections kept open for as long as
the client liked. Each case here runs against uvicorn with sluice's protocol, in-process, with small
limits; the answers are JSON and the connection is closed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
import uvicorn
from conftest import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sluice.ingest.edge import protocol_for
from sluice.settings import Settings

LIMITS = Settings(
    max_header_bytes=2048, max_header_count=20, header_timeout_seconds=0.5, body_timeout_seconds=0.5,
    max_connections=4, keep_alive_timeout_seconds=5,
)


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"received": len(body)})


async def early(request: Request) -> JSONResponse:
    return JSONResponse({"answered": "before reading the body"}, status_code=400)


@pytest.fixture(scope="module")
def edge() -> Iterator[tuple[str, int]]:
    app = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/early", early, methods=["POST"])])
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol_for(LIMITS), lifespan="off",
                            log_level="warning", loop="uvloop")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(10)


def connect(edge: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(edge, timeout=10)
    return sock


def answer(sock: socket.socket) -> tuple[int, dict[str, object], bool]:
    """(status, JSON body, closed by the server) of what the server sends back."""
    data = b""
    closed = False
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and b"content-length:" in head.lower():
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(body) >= length:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, orjson.loads(body), closed or _closed(sock)


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return False


def still_serves(edge: tuple[str, int]) -> None:
    r = httpx.post(f"http://{edge[0]}:{edge[1]}/echo", content=b"hello", timeout=10)
    assert r.status_code == 200 and r.json() == {"received": 5}


def test_a_huge_header_is_431_before_it_ends(edge: tuple[str, int]) -> None:
    sock = connect(edge)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * 1024)  # no end of headers sent
    status, body, closed = answer(sock)
    assert (status, closed) == (431, True)
    assert "larger than the limit of 2,048 bytes" in str(body["error"])
    still_serves(edge)


def test_a_header_just_over_the_limit_is_431_and_one_under_is_fine(edge: tuple[str, int]) -> None:
    base = f"http://{edge[0]}:{edge[1]}/echo"
    assert httpx.post(base, content=b"x", headers={"X-Pad": "a" * 1500}).status_code == 200
    r = httpx.post(base, content=b"x", headers={"X-Pad": "a" * 2100, "Origin": "http://shop.test"})
    assert r.status_code == 431 and r.json()["success"] is False
    assert r.headers["access-control-allow-origin"] == "*"  # a browser page can read why


def test_too_many_headers_is_431(edge: tuple[str, int]) -> None:
    headers = {f"X-H{i}": "1" for i in range(30)}
    r = httpx.post(f"http://{edge[0]}:{edge[1]}/echo", content=b"x", headers=headers)
    assert r.status_code == 431 and "more than 20 request headers" in r.json()["error"]


@pytest.mark.parametrize("sent", [b"", b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Slow: "], ids=["idle", "slowloris"])
def test_headers_that_never_finish_get_408_and_the_connection_is_closed(edge: tuple[str, int], sent: bytes) -> None:
    sock = connect(edge)
    sock.sendall(sent)
    if sent:
        time.sleep(0.2)
        sock.sendall(b"a")  # a byte now and then does not extend the deadline
    status, body, closed = answer(sock)
    assert (status, closed) == (408, True)
    assert "request headers did not arrive" in str(body["error"])


def test_a_body_that_never_finishes_gets_408_and_the_connection_is_closed(edge: tuple[str, int]) -> None:
    sock = connect(edge)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    status, body, closed = answer(sock)
    assert (status, closed) == (408, True)
    assert "request body did not arrive" in str(body["error"])
    still_serves(edge)


def test_open_connections_are_capped_and_freed_by_the_timeouts(edge: tuple[str, int]) -> None:
    idle = [connect(edge) for _ in range(4)]
    time.sleep(0.1)
    extra = connect(edge)
    status, body, closed = answer(extra)
    assert (status, closed) == (503, True) and "too many open connections" in str(body["error"])
    for sock in idle:  # the header timeout frees every slot
        assert answer(sock)[0] == 408
    time.sleep(0.1)
    still_serves(edge)


def test_bytes_that_are_not_http_get_a_json_400(edge: tuple[str, int]) -> None:
    sock = connect(edge)
    sock.sendall(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")
    status, body, closed = answer(sock)
    assert (status, closed) == (400, True) and "invalid HTTP request" in str(body["error"])


def test_keep_alive_requests_each_get_their_own_deadline(edge: tuple[str, int]) -> None:
    with httpx.Client(base_url=f"http://{edge[0]}:{edge[1]}") as client:
        for _ in range(3):
            assert client.post("/echo", content=b"abc").json() == {"received": 3}
            time.sleep(0.3)  # less than the header timeout each time, more than it in total


def test_an_app_that_answered_early_is_never_followed_by_a_408(edge: tuple[str, int]) -> None:
    sock = connect(edge)
    sock.sendall(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.count(b"HTTP/1.1 ") == 1 and data.startswith(b"HTTP/1.1 400"), data
