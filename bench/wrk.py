"""wrk (Debian's `wrk` package), when installed, as the load client of the single-event phase.

A C client with a LuaJIT request generator: it costs far less CPU per request than any Python client,
so on a 2-core machine shared with the server it cannot be what limits the figure. The bodies are the
benchmark's own (bench/events.py), each request with a unique messageId (a per-thread prefix and a
counter), so nothing is deduplicated away.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.client import machine_cpu_seconds, proc_cpu_seconds
from bench.events import ID_WIDTH, message_id, track_templates

_PREFIX = 24  # the run-specific part of a messageId; the rest is a 12-hex-digit counter


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(data: bytes) -> str:
    text = data.decode()
    assert "]==]" not in text
    return f"[==[{text}]==]"


def script(spec: dict[str, Any], threads: int) -> str:
    """A wrk script posting /v1/track-style bodies with unique messageIds."""
    templates = track_templates(spec.get("templates", 64), seed=spec.get("seed", 1))
    parts = []
    for t in templates:
        body = bytes(t.body)
        (slot,) = t.slots
        parts.append(f"{{{_lua_string(body[:slot])}, {_lua_string(body[slot + ID_WIDTH:])}}}")
    prefixes = ", ".join(f'"{message_id(spec["run"] * 64 + i, 0)[:_PREFIX].decode()}"' for i in range(threads))
    key = base64.b64encode(f"{spec['write_key']}:".encode()).decode()
    return f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic {key}"
local templates = {{{", ".join(parts)}}}
local prefixes = {{{prefixes}}}
local next_tid = 1
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
local n = 0
request = function()
  n = n + 1
  local t = templates[(n % #templates) + 1]
  local body = t[1] .. prefixes[tid] .. string.format("%012x", n) .. t[2]
  return wrk.format(nil, nil, nil, body)
end
"""


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """One closed-loop wrk run against spec["path"]; the same keys as bench/client.py's closed loop."""
    threads = spec.get("threads", 1)
    url = f"http://{spec['host']}:{spec['port']}{spec['path']}"
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "track.lua"
        lua.write_text(script(spec, threads))
        args = ["wrk", f"-t{threads}", f"-c{spec['concurrency']}", "--latency", "-s", str(lua)]
        if spec.get("warmup"):
            subprocess.run([*args, f"-d{max(1, round(spec['warmup']))}s", url], capture_output=True, check=False)
        servers = spec.get("server_pids", [])
        s0, a0 = sum(proc_cpu_seconds(p) for p in servers), machine_cpu_seconds()
        t0 = time.perf_counter()
        proc = subprocess.Popen([*args, f"-d{max(1, round(spec['duration']))}s", url],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        s1, a1 = sum(proc_cpu_seconds(p) for p in servers), machine_cpu_seconds()
    if proc.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed: {out[-2000:]}")
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = sum(int(v) for v in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    measured = float(re.search(r"\d+ requests in ([\d.]+)(\w+)", out).group(1))  # type: ignore[union-attr]
    unit = re.search(r"\d+ requests in [\d.]+(\w+)", out).group(1)  # type: ignore[union-attr]
    measured = _seconds(f"{measured}{unit}")
    p50 = re.search(r"50%\s+([\d.]+\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    client = usage.ru_utime + usage.ru_stime
    server = s1 - s0
    return {
        "client": "wrk",
        "seconds": measured,
        "requests_ok": total - bad,
        "requests_per_s": (total - bad) / measured,
        "events_per_s": (total - bad) / measured,
        "errors": bad + errors,
        "latency_p50_ms": _seconds(p50.group(1)) * 1000 if p50 else 0.0,
        "latency_p99_ms": _seconds(p99.group(1)) * 1000 if p99 else 0.0,
        "client_cpu": client / seconds,
        "server_cpu": server / seconds,
        "other_cpu": max(0.0, (a1 - a0) - client - server) / seconds,
    }
