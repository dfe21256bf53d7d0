"""The load generator: a small HTTP/1.1 keep-alive client on raw asyncio protocols (uvloop).

Run as its own process (`python -m bench.client '<json spec>'`, one JSON result on stdout), so
it never shares a GIL with the server. Bodies are pre-serialised templates whose messageIds are
patched in place (bench/events.py); responses are parsed just enough to find the status and the
end of the body. Two modes:

- closed loop (`rate` absent): every connection sends its next request as soon as the previous
  answer arrives; measures throughput over `duration` seconds after `warmup`.
- paced (`rate` requests/s): requests are scheduled at fixed times on a pool of connections;
  records each request's ack wall-clock time, and (with `poll`) polls the warehouse through
  `POST /admin/query` to see when each event became queryable (freshness).

The client reports its own CPU use (getrusage) and the server's (from /proc/<pid>/stat) over
the measured window, so a saturated client is visible.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.events import Bodies, batch_templates, counter_of, track_templates

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine (all cores, all processes), in seconds."""
    with open("/proc/stat", "rb") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / _CLK_TCK  # minus idle and iowait


def self_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


_HEADS: dict[tuple[str, str, str, int], bytes] = {}


def request_head(method: str, path: str, host: str, headers: dict[str, str], length: int) -> bytes:
    key = (method, path, headers.get("Authorization", ""), length)
    head = _HEADS.get(key)
    if head is None:
        head = _HEADS[key] = _request_head(method, path, host, headers, length)
    return head


def _request_head(method: str, path: str, host: str, headers: dict[str, str], length: int) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Conn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionError("connection closed by the server")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        i = head.find(b"content-length:")
        length = int(head[i + 15 : head.find(b"\r\n", i) if head.find(b"\r\n", i) >= 0 else None]) if i >= 0 else 0
        total = end + 4 + length
        if len(buf) < total:
            return
        status = int(head[9:12])
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.lost is not None:
            raise self.lost
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


async def connect(host: str, port: int) -> Conn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(Conn, host, port)
    return conn


@dataclass
class Window:
    """The measured interval: counters start at `start` (after warmup) and stop at `end`."""

    start: float
    end: float
    ok: int = 0
    events: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


def _spec_bodies(spec: dict[str, Any]) -> Bodies:
    if spec["kind"] == "batch":
        templates = batch_templates(spec.get("templates", 32), spec["events_per_request"], seed=spec.get("seed", 1))
    else:
        templates = track_templates(spec.get("templates", 256), seed=spec.get("seed", 1))
    return Bodies(templates, spec["run"])


def _headers(spec: dict[str, Any]) -> dict[str, str]:
    key = base64.b64encode(f"{spec['write_key']}:".encode()).decode()
    return {"Authorization": f"Basic {key}", "Content-Type": "application/json"}


async def closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], spec["port"]
    bodies = _spec_bodies(spec)
    headers = _headers(spec)
    hostport = f"{host}:{port}"
    conns = [await connect(host, port) for _ in range(spec["concurrency"])]
    now = time.perf_counter()
    w = Window(start=now + spec["warmup"], end=now + spec["warmup"] + spec["duration"])
    sent_total = 0
    acked_events_total = 0
    cpu: dict[str, float] = {}

    async def marker() -> None:
        await asyncio.sleep(max(0.0, w.start - time.perf_counter()))
        cpu["client0"], cpu["server0"], cpu["all0"] = self_cpu_seconds(), _server_cpu(spec), machine_cpu_seconds()
        await asyncio.sleep(max(0.0, w.end - time.perf_counter()))
        cpu["client1"], cpu["server1"], cpu["all1"] = self_cpu_seconds(), _server_cpu(spec), machine_cpu_seconds()

    async def worker(conn: Conn) -> None:
        nonlocal sent_total, acked_events_total
        while True:
            body, _, n = bodies.fill()
            data = request_head("POST", spec["path"], hostport, headers, len(body)) + body
            t0 = time.perf_counter()
            if t0 >= w.end:
                return
            try:
                status, _ = await conn.request(data)
            except (ConnectionError, OSError):
                w.errors += 1
                return
            t1 = time.perf_counter()
            sent_total += 1
            if status == 200:
                acked_events_total += n
            if t0 >= w.start and t1 <= w.end:
                w.statuses[status] = w.statuses.get(status, 0) + 1
                if status == 200:
                    w.ok += 1
                    w.events += n
                    w.latencies.append(t1 - t0)
                else:
                    w.errors += 1

    await asyncio.gather(marker(), *(worker(c) for c in conns))
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    seconds = w.end - w.start
    lat = sorted(w.latencies)
    return {
        "seconds": seconds,
        "requests_ok": w.ok,
        "events_ok": w.events,
        "requests_per_s": w.ok / seconds,
        "events_per_s": w.events / seconds,
        "errors": w.errors,
        "statuses": w.statuses,
        "latency_p50_ms": _pct(lat, 0.50) * 1000,
        "latency_p99_ms": _pct(lat, 0.99) * 1000,
        **_cpu_shares(
            seconds, cpu["client1"] - cpu["client0"], cpu["server1"] - cpu["server0"], cpu["all1"] - cpu["all0"]
        ),
        "requests_total": sent_total,
        "acked_events_total": acked_events_total,
    }


def _cpu_shares(seconds: float, client: float, server: float, machine: float) -> dict[str, float]:
    """CPU over the window in cores (1.0 = one core busy): client, server, and everything else."""
    return {
        "client_cpu": client / seconds,
        "server_cpu": server / seconds,
        "other_cpu": max(0.0, machine - client - server) / seconds,
    }


def _server_cpu(spec: dict[str, Any]) -> float:
    """CPU of every process of the server (supervisor, ingest processes, log writer, delivery)."""
    total = 0.0
    for pid in spec.get("server_pids", []):
        with contextlib.suppress(OSError):
            total += proc_cpu_seconds(pid)
    return total


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def paced(spec: dict[str, Any]) -> dict[str, Any]:
    """Fixed-rate requests; per-request ack wall-clock; optional warehouse polling for freshness."""
    host, port = spec["host"], spec["port"]
    bodies = _spec_bodies(spec)
    headers = _headers(spec)
    hostport = f"{host}:{port}"
    rate, duration = spec["rate"], spec["duration"]
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(spec["concurrency"]):
        idle.put_nowait(await connect(host, port))
    acks: list[tuple[int, int, float]] = []  # (first counter, events, ack wall-clock)
    late = 0
    errors = 0
    latencies: list[float] = []
    start = time.perf_counter() + 0.05
    total = int(rate * duration)
    c0, s0, a0 = self_cpu_seconds(), _server_cpu(spec), machine_cpu_seconds()

    async def one(data: bytes, first: int, n: int) -> None:
        nonlocal errors
        conn = await idle.get()
        t0 = time.perf_counter()
        try:
            status, _ = await conn.request(data)
        except (ConnectionError, OSError):
            errors += 1
            return
        wall = time.time()
        latencies.append(time.perf_counter() - t0)
        idle.put_nowait(conn)
        if status == 200:
            acks.append((first, n, wall))
        else:
            errors += 1

    poll_state: dict[str, Any] = {"seen": {}, "polls": 0, "poll_ms": []}
    stop_polling = asyncio.Event()
    poller = asyncio.ensure_future(_poll(spec, poll_state, stop_polling)) if spec.get("poll") else None
    tasks = []
    for k in range(total):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            late += 1
        body, first, n = bodies.fill()
        data = request_head("POST", spec["path"], hostport, headers, len(body)) + body
        tasks.append(asyncio.ensure_future(one(data, first, n)))
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - start
    c1, s1, a1 = self_cpu_seconds(), _server_cpu(spec), machine_cpu_seconds()
    result: dict[str, Any] = {
        "seconds": seconds,
        "requests_ok": len(acks),
        "events_ok": sum(n for _, n, _ in acks),
        "errors": errors,
        "late_sends": late,
        "latency_p50_ms": _pct(sorted(latencies), 0.5) * 1000,
        "latency_p99_ms": _pct(sorted(latencies), 0.99) * 1000,
        **_cpu_shares(seconds, c1 - c0, s1 - s0, a1 - a0),
    }
    if poller is not None:
        # Keep polling until every acknowledged event has been seen (or the drain timeout).
        want = result["events_ok"]
        deadline = time.perf_counter() + spec.get("drain_timeout", 30)
        while len(poll_state["seen"]) < want and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        stop_polling.set()
        await poller
        result.update(_freshness(acks, poll_state))
    return result


async def _poll(spec: dict[str, Any], state: dict[str, Any], stop: asyncio.Event) -> None:
    """Poll `select id, loaded_at` for rows loaded since the last poll; note when each first shows."""
    host, port = spec["host"], spec["admin_port"]  # the admin API has a listener of its own
    conn = await connect(host, port)
    seen: dict[int, tuple[float, int]] = state["seen"]  # counter -> (first seen wall-clock, loaded_at ms)
    run = spec["run"]
    table = spec["poll_table"]
    floor_ms = 0
    headers = {"Authorization": f"Bearer {spec['admin_token']}", "Content-Type": "application/json"}
    while not stop.is_set():
        sql = (
            f"SELECT id, epoch_ms(loaded_at) FROM {table}"
            f" WHERE loaded_at >= make_timestamptz({floor_ms}::BIGINT * 1000)"
        )
        body = orjson.dumps({"sql": sql})
        t0 = time.perf_counter()
        status, answer = await conn.request(
            request_head("POST", "/admin/query", f"{host}:{port}", headers, len(body)) + body
        )
        wall = time.time()
        state["polls"] += 1
        state["poll_ms"].append((time.perf_counter() - t0) * 1000)
        if status == 200:
            for mid, loaded_ms in orjson.loads(answer)["rows"]:
                r, n = counter_of(mid)
                if r == run and n not in seen:
                    seen[n] = (wall, int(loaded_ms))
                floor_ms = max(floor_ms, int(loaded_ms))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), spec.get("poll_interval", 0.05))
    if conn.transport is not None:
        conn.transport.close()


def _freshness(acks: list[tuple[int, int, float]], state: dict[str, Any]) -> dict[str, Any]:
    seen = state["seen"]
    observed: list[float] = []
    by_loaded_at: list[float] = []
    missing = 0
    for first, n, ack in acks:
        for c in range(first, first + n):
            hit = seen.get(c)
            if hit is None:
                missing += 1
                continue
            observed.append(hit[0] - ack)
            by_loaded_at.append(hit[1] / 1000 - ack)
    observed.sort()
    by_loaded_at.sort()
    polls = sorted(state["poll_ms"])
    return {
        "fresh_rows": len(observed),
        "fresh_missing": missing,
        "fresh_observed_p50_s": _pct(observed, 0.5),
        "fresh_observed_p99_s": _pct(observed, 0.99),
        "fresh_observed_max_s": observed[-1] if observed else 0.0,
        "fresh_loaded_at_p50_s": _pct(by_loaded_at, 0.5),
        "fresh_loaded_at_p99_s": _pct(by_loaded_at, 0.99),
        "polls": state["polls"],
        "poll_p50_ms": _pct(polls, 0.5),
    }


def main() -> None:
    spec = orjson.loads(sys.argv[1])
    import uvloop

    runner = paced if spec.get("rate") else closed_loop
    result = uvloop.run(runner(spec))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")


if __name__ == "__main__":
    main()
