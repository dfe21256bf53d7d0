"""sluice's benchmark suite: one command, one table.

    make bench                       # = .venv/bin/python -m bench.run (about 5 minutes)
    python -m bench.run --quick      # tiny sizes, seconds: checks the suite still works
    python -m bench.run --profile    # also record py-spy profiles of the server (bench-out/profiles)

Starts `sluice serve` as a user would (a subprocess, fresh data dir, SLUICE_BENCH_ENDPOINTS=1),
drives it over loopback from a separate client process (bench/client.py), measures the loader
in-process (bench/load.py), prints one table and, in a full run, writes it to
docs/benchmarks.md with the machine it ran on. Every number is the median of --runs runs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import wrk
from bench.machine import describe
from bench.server import RssSampler, SluiceServer

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
KEEP_MARKER = "<!-- Everything below this line is kept when `make bench` rewrites this file. -->"


@dataclass(frozen=True)
class Config:
    runs: int = 3
    # 1. durable batched ingest
    batch_events: int = 100
    batch_concurrency: int = 8
    batch_warmup: float = 1.0
    batch_seconds: float = 8.0
    # 2. single-event ingest vs the no-op endpoint (same client, same bodies)
    single_concurrency: int = 64
    single_warmup: float = 1.0
    single_seconds: float = 5.0
    single_wrk: bool = True  # use wrk for phase 2 when it is installed (apt-get install wrk)
    # 3. warehouse load
    load_events: int = 200_000
    dlt_events: int = 10_000  # dlt is slow: a subset, reported per row like the others
    # 4. freshness: fresh_rate requests/s of fresh_events events each
    fresh_rate: float = 10.0
    fresh_events: int = 100
    fresh_seconds: float = 20.0
    # 7. ingest through JetStream beside the embedded log, one ingest process vs two (bench/scaleout.py)
    scaleout_seconds: float = 5.0


QUICK = Config(
    runs=1,
    batch_warmup=0.3,
    batch_seconds=1.0,
    single_concurrency=16,
    single_warmup=0.2,
    single_seconds=0.8,
    single_wrk=False,
    load_events=2_000,
    dlt_events=300,
    fresh_rate=10.0,
    fresh_events=20,
    fresh_seconds=2.0,
    scaleout_seconds=0.5,
)

TARGETS = {
    "batch_events_per_s": 50_000,
    "track_over_noop": 0.60,
    "load_rows_per_s": 100_000,
    "load_over_dlt": 10.0,
    "load_over_raw": 0.50,
    "fresh_p99_s": 1.0,
    "client_headroom": 2.0,
    "peak_rss_mb": 300.0,
}


# -- plumbing ---------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    import os

    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{':' + path if path else ''}"}


def _json_subprocess(args: list[str], timeout: float) -> Any:
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=timeout, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{out.stderr[-3000:]}")
    return orjson.loads(out.stdout.strip().splitlines()[-1])


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    budget = spec.get("warmup", 0) + spec["duration"] + spec.get("drain_timeout", 0) + 120
    return _json_subprocess(["-m", "bench.client", orjson.dumps(spec).decode()], budget)


def missing_requirements() -> list[str]:
    """Bench-only packages (dlt; py-spy for --profile) absent from this venv. `make bench` installs them from
    bench/requirements.txt; the suite never pip-installs anything itself (the tests run it in the app's venv)."""
    from importlib import metadata

    missing = []
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        name = name.split("[", 1)[0]
        try:
            if metadata.version(name) != version:
                missing.append(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


class Profiler:
    """py-spy attached to the server for one phase (only with --profile)."""

    def __init__(self, enabled: bool, out_dir: Path) -> None:
        self.py_spy = Path(sys.executable).parent / "py-spy"
        self.enabled = enabled and self.py_spy.exists()
        if enabled and not self.enabled:
            print(f"--profile: {self.py_spy} not found; pip install -r {REQUIREMENTS}", flush=True)
        self.out_dir = out_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.files: list[Path] = []

    def start(self, name: str, pid: int) -> None:
        """Sample every thread of the server; --gil: only the thread holding the GIL (what limits it)."""
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / f"{name}.txt"
        self.files.append(out)
        self.proc = subprocess.Popen(
            [str(self.py_spy), "record", "--pid", str(pid), "--rate", "200", "--threads", "--gil", "--nonblocking",
             "--format", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def summaries(self) -> str:
        from bench.profile_summary import summarise

        return "\n\n".join(summarise(f, top=15) for f in self.files if f.exists())

    def stop(self) -> None:
        if self.proc is not None:
            import signal

            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


# -- the phases -------------------------------------------------------------------------------


def _server(workdir: Path, name: str) -> tuple[SluiceServer, dict[str, Any]]:
    data = workdir / name
    shutil.rmtree(data, ignore_errors=True)
    server = SluiceServer(data)
    source = server.create_source("web")
    server.start()
    return server, source


def _base_spec(server: SluiceServer, source: dict[str, Any]) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.port, "admin_port": server.admin_port, "write_key": source["write_key"],
            "server_pids": server.pids}


def phase_batch(cfg: Config, workdir: Path, prof: Profiler) -> dict[str, Any]:
    server, source = _server(workdir, "batch")
    try:
        prof.start("ingest-batch", server.pid)
        runs, noop = [], []
        with RssSampler(server) as rss:
            for i in range(cfg.runs):
                spec = {
                    **_base_spec(server, source),
                    "kind": "batch", "path": "/v1/batch", "events_per_request": cfg.batch_events,
                    "concurrency": cfg.batch_concurrency, "warmup": cfg.batch_warmup, "duration": cfg.batch_seconds,
                    "run": 0x1000 + i, "seed": i + 1,
                }
                runs.append(run_client(spec))
                # The same client and bodies against the no-op: how far the client itself can go.
                noop.append(run_client({**spec, "path": "/bench/noop", "run": 0x1100 + i}))
        prof.stop()
        acked = sum(r["acked_events_total"] for r in runs)
        head = int(server.health()["log_head"])
        hwm = server.rss_mb("VmHWM")
        processes = len(server.pids)
    finally:
        prof.stop()
        server.stop()
    return {"runs": runs, "noop": noop, "acked_events": acked, "log_head": head, "peak_rss_mb": rss.peak,
            "peak_rss_by_role": rss.peak_by_role, "hwm_by_role": hwm, "processes": processes}


def phase_single(cfg: Config, workdir: Path, prof: Profiler) -> dict[str, Any]:
    server, source = _server(workdir, "single")
    try:
        prof.start("ingest-track", server.pid)
        track, noop = [], []
        use_wrk = wrk.available() and cfg.single_wrk
        for i in range(cfg.runs):
            common = {
                **_base_spec(server, source),
                "kind": "track", "concurrency": cfg.single_concurrency,
                "warmup": cfg.single_warmup, "duration": cfg.single_seconds, "seed": i + 1,
            }
            # Alternate which goes first, so neither always runs on a warmer (or fuller) server.
            order = [("/bench/noop", noop), ("/v1/track", track)]
            for path, out in order if i % 2 == 0 else order[::-1]:
                spec = {**common, "path": path, "run": 0x2000 + 2 * i + (path == "/v1/track")}
                out.append(wrk.run(spec) if use_wrk else run_client(spec))
        prof.stop()
        rss = server.peak_rss_mb()
    finally:
        prof.stop()
        server.stop()
    ratios = [t["requests_per_s"] / n["requests_per_s"] for t, n in zip(track, noop, strict=True)]
    return {"track": track, "noop": noop, "ratios": ratios, "peak_rss_mb": rss,
            "client": "wrk" if use_wrk else "bench/client.py"}


def phase_fresh(cfg: Config, workdir: Path, prof: Profiler) -> dict[str, Any]:
    server, source = _server(workdir, "fresh")
    try:
        prof.start("freshness", server.pid)
        runs = []
        token = server.admin_token()
        for i in range(cfg.runs):
            spec = {
                **_base_spec(server, source),
                "kind": "batch", "path": "/v1/batch", "events_per_request": cfg.fresh_events,
                "rate": cfg.fresh_rate, "duration": cfg.fresh_seconds, "concurrency": 4,
                "poll": True, "poll_table": "web.tracks", "poll_interval": 0.05, "admin_token": token,
                "drain_timeout": 30, "run": 0x3000 + i, "seed": i + 1,
            }
            runs.append(run_client(spec))
        prof.stop()
        rss = server.peak_rss_mb()
    finally:
        prof.stop()
        server.stop()
    return {"runs": runs, "peak_rss_mb": rss}


def phase_scaleout(cfg: Config, workdir: Path) -> dict[str, Any]:
    from bench import scaleout

    def spec_for(server: SluiceServer, source: dict[str, Any], i: int) -> dict[str, Any]:
        return {
            **_base_spec(server, source),
            "kind": "batch", "path": "/v1/batch", "events_per_request": cfg.batch_events,
            "concurrency": cfg.batch_concurrency, "warmup": cfg.batch_warmup, "duration": cfg.scaleout_seconds,
            "run": 0x7000 + i, "seed": i + 1,
        }

    return scaleout.phase(workdir, cfg.runs, spec_for, run_client)


def phase_load(cfg: Config, workdir: Path, with_dlt: bool) -> dict[str, Any]:
    d = workdir / "load"
    budget = 900
    meta = _json_subprocess(["-m", "bench.load", "prepare", str(d), str(cfg.load_events)], budget)
    sluice = _json_subprocess(["-m", "bench.load", "sluice", str(d), str(cfg.runs)], budget)
    raw = _json_subprocess(["-m", "bench.load", "raw", str(d), str(cfg.runs)], budget)
    dlt_default = dlt_parquet = None  # --quick without dlt installed: rows 3c-3e say so
    if with_dlt:
        dlt_default = _json_subprocess(["-m", "bench.load", "dlt", str(d), str(cfg.runs), str(cfg.dlt_events)], budget)
        dlt_parquet = _json_subprocess(
            ["-m", "bench.load", "dlt", str(d), str(cfg.runs), str(cfg.dlt_events), "parquet"], budget
        )
    pg = _json_subprocess(["-m", "bench.load", "pg", str(d), str(cfg.runs)], budget)
    pg_raw = _json_subprocess(["-m", "bench.load", "pgraw", str(d), str(cfg.runs)], budget)
    return {
        "meta": meta, "sluice": sluice, "raw": raw, "dlt": dlt_default, "dlt_parquet": dlt_parquet,
        "pg": pg, "pg_raw": pg_raw,
    }


# -- the table --------------------------------------------------------------------------------


def _dlt_rows(ld: dict[str, Any], head: dict[str, Any]) -> list[list[str]]:
    """Rows 3c-3e: sluice's load against dlt's (absent from a --quick run without dlt installed)."""
    if ld["dlt"] is None:
        skipped = "not run: dlt is not installed (`make bench` installs bench/requirements.txt)"
        head["dlt_rows_per_s"] = head["dlt_parquet_rows_per_s"] = head["load_over_dlt"] = None
        return [[row, what, skipped, "", "", "", "", ""] for row, what in (
            ("3c", "dlt → DuckDB, default settings"), ("3d", "dlt → DuckDB, loader_file_format=parquet"),
            ("3e", "sluice load ÷ dlt (default)"))]
    dl = [x["rows_per_s"] for x in ld["dlt"]["runs"]]
    dlp = [x["rows_per_s"] for x in ld["dlt_parquet"]["runs"]]
    head["dlt_rows_per_s"], head["dlt_parquet_rows_per_s"] = _median(dl), _median(dlp)
    head["load_over_dlt"] = head["load_rows_per_s"] / head["dlt_rows_per_s"]
    return [
        [
            "3c", f"dlt {ld['dlt']['dlt_version']} → DuckDB, default settings ({ld['dlt']['file_format']}): "
            f"the same events as dicts, pipeline.run; {ld['dlt']['events']:,} events → "
            f"{ld['dlt']['runs'][0]['rows']:,} rows",
            f"{_n(head['dlt_rows_per_s'])} rows/s", _spread(dl, _n), "extract + normalize + load", "in-process", "",
            "",
        ],
        [
            "3d", f"dlt {ld['dlt_parquet']['dlt_version']} → DuckDB, loader_file_format=parquet (its fast path; "
            "not the target's baseline)",
            f"{_n(head['dlt_parquet_rows_per_s'])} rows/s", _spread(dlp, _n), "", "in-process", "", "",
        ],
        [
            "3e", "sluice load ÷ dlt (default)", f"{head['load_over_dlt']:.1f}x", "",
            f"{head['load_rows_per_s'] / head['dlt_parquet_rows_per_s']:.1f}x dlt with parquet", "",
            f"≥ {TARGETS['load_over_dlt']:.0f}x", _met(head["load_over_dlt"] >= TARGETS["load_over_dlt"]),
        ],
    ]


def _n(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def _spread(values: list[float], fmt: Callable[[float], str]) -> str:
    if len(values) < 2:
        return "1 run"
    return f"{fmt(min(values))} to {fmt(max(values))}"


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("**met**" if ok else "**not met**")


def build_rows(cfg: Config, r: dict[str, Any]) -> tuple[list[list[str]], dict[str, Any]]:
    """The table rows and the headline medians (for tests and results.json)."""
    rows: list[list[str]] = []
    head: dict[str, Any] = {}
    pct = lambda v: f"{v * 100:.0f}%"  # noqa: E731
    cpu = lambda runs: f"{_median([x['client_cpu'] for x in runs]) * 100:.0f}%"  # noqa: E731

    def load(runs: list[dict[str, Any]]) -> str:
        server = _median([x["server_cpu"] for x in runs]) * 100
        other = _median([x.get("other_cpu", 0.0) for x in runs]) * 100
        return f"CPU: server {server:.0f}%, other processes {other:.0f}%"


    b = r["batch"]["runs"]
    eps = [x["events_per_s"] for x in b]
    head["batch_events_per_s"] = _median(eps)
    rows.append([
        "1", f"Durable batched ingest: /v1/batch, {cfg.batch_events} events/request, "
        f"{cfg.batch_concurrency} keep-alive connections, 200 after fsync",
        f"{_n(head['batch_events_per_s'])} events/s", _spread(eps, _n),
        f"p50 {_median([x['latency_p50_ms'] for x in b]):.0f} ms, p99 {_median([x['latency_p99_ms'] for x in b]):.0f}"
        f" ms/request; {load(b)}",
        cpu(b), f"≥ {_n(TARGETS['batch_events_per_s'])} events/s",
        _met(head["batch_events_per_s"] >= TARGETS["batch_events_per_s"]),
    ])
    bn = r["batch"]["noop"]
    noop_eps = [x["events_per_s"] for x in bn]
    head["batch_noop_events_per_s"] = _median(noop_eps)
    head["client_headroom"] = head["batch_noop_events_per_s"] / head["batch_events_per_s"]
    rows.append([
        "1b", "The load client's reach: the same client, connections and 100-event bodies against /bench/noop"
        " (same server)", f"{_n(head['batch_noop_events_per_s'])} events/s", _spread(noop_eps, _n),
        f"{head['client_headroom']:.1f}x row 1; {load(bn)}", cpu(bn),
        f"≥ {TARGETS['client_headroom']:.0f}x row 1 (the client is not the bottleneck)",
        _met(head["client_headroom"] >= TARGETS["client_headroom"]),
    ])
    s = r["single"]
    t_rps = [x["requests_per_s"] for x in s["track"]]
    n_rps = [x["requests_per_s"] for x in s["noop"]]
    head["track_rps"], head["noop_rps"] = _median(t_rps), _median(n_rps)
    head["track_over_noop"] = _median(s["ratios"])
    rows.append([
        "2a", f"Single-event ingest: /v1/track, one ~640-byte event per request, {cfg.single_concurrency} connections,"
        f" client: {s['client']}",
        f"{_n(head['track_rps'])} requests/s", _spread(t_rps, _n),
        f"p50 {_median([x['latency_p50_ms'] for x in s['track']]):.1f} ms/request; {load(s['track'])}",
        cpu(s["track"]), "", "",
    ])
    rows.append([
        "2b", "No-op: /bench/noop, same server stack, same client and bodies",
        f"{_n(head['noop_rps'])} requests/s", _spread(n_rps, _n),
        f"p50 {_median([x['latency_p50_ms'] for x in s['noop']]):.1f} ms/request; {load(s['noop'])}",
        cpu(s["noop"]), "", "",
    ])
    rows.append([
        "2c", "/v1/track ÷ no-op (median of per-run ratios)", pct(head["track_over_noop"]),
        _spread(s["ratios"], pct), "", "", f"≥ {pct(TARGETS['track_over_noop'])}",
        _met(head["track_over_noop"] >= TARGETS["track_over_noop"]),
    ])
    ld = r["load"]
    rows_per = lambda key: [x["rows_per_s"] for x in ld[key]["runs"]]  # noqa: E731
    sl, raw = rows_per("sluice"), rows_per("raw")
    with_read = [x["rows_per_s_with_read"] for x in ld["sluice"]["runs"]]
    steady = [x["rows_per_s_after_first"] for x in ld["sluice"]["runs"]]
    first_s = [x["first_batch_s"] for x in ld["sluice"]["runs"]]
    head["load_rows_per_s"], head["raw_rows_per_s"] = _median(sl), _median(raw)
    head["load_over_raw"] = head["load_rows_per_s"] / head["raw_rows_per_s"]
    n_ev = ld["meta"]["events"]
    rows.append([
        "3a", f"Warehouse load, sluice → DuckDB: DuckDBWarehouse.load over SqliteLog.read batches of "
        f"{ld['sluice']['batch_events']:,}; {n_ev:,} events → {ld['sluice']['runs'][0]['rows']:,} rows "
        "(tracks + per-event tables)",
        f"{_n(head['load_rows_per_s'])} rows/s", _spread(sl, _n),
        f"{_n(_median(with_read))} rows/s counting the log reads too; "
        + (f"{_n(_median(steady))} rows/s after the first batch" if _median(steady) else "one batch only")
        + f" (the first creates the tables and infers types: {_median(first_s):.2f} s); loader process"
        f" peak RSS {max(x['peak_rss_mb'] for x in ld['sluice']['runs']):.0f} MB; CPU: loader"
        f" {_median([x['own_cpu'] for x in ld['sluice']['runs']]) * 100:.0f}%, other processes"
        f" {_median([x['other_cpu'] for x in ld['sluice']['runs']]) * 100:.0f}%",
        "in-process",
        f"≥ {_n(TARGETS['load_rows_per_s'])} rows/s", _met(head["load_rows_per_s"] >= TARGETS["load_rows_per_s"]),
    ])
    rows.append([
        "3b", "Raw DuckDB insert (the limit): the same typed rows as Arrow, INSERT INTO t SELECT * FROM "
        "arrow_table into identically-typed tables, insert only",
        f"{_n(head['raw_rows_per_s'])} rows/s", _spread(raw, _n), "", "in-process", "", "",
    ])
    rows += _dlt_rows(ld, head)
    rows.append([
        "3f", "sluice load ÷ raw insert", pct(head["load_over_raw"]), "", "", "",
        f"≥ {pct(TARGETS['load_over_raw'])}", _met(head["load_over_raw"] >= TARGETS["load_over_raw"]),
    ])
    pgs = [x["rows_per_s"] for x in ld["pg"]["runs"]]
    pgr = [x["rows_per_s"] for x in ld["pg_raw"]["runs"]]
    head["pg_rows_per_s"], head["pg_raw_rows_per_s"] = _median(pgs), _median(pgr)
    rows.append([
        "3g", "Warehouse load, sluice → PostgreSQL 15 (local): PostgresWarehouse.load over the same batches "
        "(plan run by DuckDB, COPY into a temp table, INSERT ... ON CONFLICT (id))",
        f"{_n(head['pg_rows_per_s'])} rows/s", _spread(pgs, _n), "", "in-process", "", "",
    ])
    rows.append([
        "3h", "Raw PostgreSQL COPY (the limit): the same rows as CSV, COPY into identically-typed tables "
        "(id primary key), one transaction", f"{_n(head['pg_raw_rows_per_s'])} rows/s", _spread(pgr, _n), "", "",
        "", "",
    ])
    rows.append([
        "3i", "sluice PostgreSQL load ÷ raw COPY", pct(head["pg_rows_per_s"] / head["pg_raw_rows_per_s"]), "", "",
        "", "", "",
    ])
    f = r["fresh"]["runs"]
    p50 = [x["fresh_observed_p50_s"] for x in f]
    p99 = [x["fresh_observed_p99_s"] for x in f]
    head["fresh_p50_s"], head["fresh_p99_s"] = _median(p50), _median(p99)
    rate = cfg.fresh_rate * cfg.fresh_events
    rows.append([
        "4", f"Freshness at {_n(rate)} events/s ({_n(cfg.fresh_rate)} x {cfg.fresh_events}-event /v1/batch per s, "
        f"{cfg.fresh_seconds:.0f} s): 200 → row visible to `POST /admin/query` polling every 50 ms",
        f"p50 {head['fresh_p50_s']:.2f} s, p99 {head['fresh_p99_s']:.2f} s",
        f"p99 {_spread(p99, lambda v: f'{v:.2f}')}",
        f"by loaded_at - ack: p50 {_median([x['fresh_loaded_at_p50_s'] for x in f]):.2f} s, "
        f"p99 {_median([x['fresh_loaded_at_p99_s'] for x in f]):.2f} s; "
        f"{sum(x['fresh_missing'] for x in f)} rows never seen; {load(f)}",
        cpu(f), f"p99 ≤ {TARGETS['fresh_p99_s']:.0f} s", _met(head["fresh_p99_s"] <= TARGETS["fresh_p99_s"]),
    ])
    bt = r["batch"]
    head["peak_rss_mb"] = bt["peak_rss_mb"]
    by_role = ", ".join(f"{k} {v:.0f}" for k, v in sorted(bt["peak_rss_by_role"].items()))
    hwm = bt["hwm_by_role"]
    rows.append([
        "5", f"Total RSS of all sluice processes ({bt['processes']}: supervisor, ingest, log writer, delivery)"
        " under the batched load of row 1, sampled every 0.2 s: the highest total",
        f"{head['peak_rss_mb']:.0f} MB", "",
        f"at that moment (MB): {by_role}; sum of each process's own peak (VmHWM): {sum(hwm.values()):.0f} MB;"
        f" single-event phase: {r['single']['peak_rss_mb']:.0f} MB, freshness phase: {r['fresh']['peak_rss_mb']:.0f} MB"
        " (sums of VmHWM)", "", f"≤ {TARGETS['peak_rss_mb']:.0f} MB",
        _met(head["peak_rss_mb"] <= TARGETS["peak_rss_mb"]),
    ])
    w = r["wide"]
    head["wide_ratio"] = w["all_columns_ratio"]
    per = lambda rows: ", ".join(f"{x['properties']:,}: {x['load_s']:.2f} s" for x in rows)  # noqa: E731
    rows.append([
        "6a", "Wide event: one track with 100 to 2,000 new integer properties into a fresh warehouse, cap raised"
        " to 2,500 columns (every property a column); cost per column, 2,000 ÷ 100",
        f"{w['all_columns_ratio']:.2f}x", "", f"load time by properties: {per(w['all_columns'])}", "in-process",
        "flat (≈ 1x)", _met(w["all_columns_ratio"] <= 1.5),
    ])
    rows.append([
        "6b", "The same with the default cap of 500 columns (the rest go to discards); cost per property, 2,000 ÷ 100",
        f"{w['capped_ratio']:.2f}x", "", f"load time by properties: {per(w['capped'])}", "in-process", "", "",
    ])
    fl = w["flood"]
    rows.append([
        "6c", f"Flood: {fl['flood_properties']:,} new properties in 10 messages into source A while source B loads"
        " 1,000-event batches on its own connection",
        f"A: {fl['flood_load_s']:.2f} s", "",
        f"A capped at {fl['columns']} columns, {fl['discards']:,} values in discards; B's slowest batch during the"
        f" flood {fl['b_max_during_s']:.2f} s (alone {fl['b_median_alone_s']:.2f} s, {fl['b_batches_during']}"
        " batches meanwhile)", "in-process", "B never stalls", _met(fl["b_batches_during"] > 0),
    ])
    from bench import scaleout

    rows += scaleout.rows(r["scaleout"], _median, _n, _spread, head)
    return rows, head


HEADER = ["#", "measurement", "median", "range over runs", "detail", "client CPU", "target", "target met?"]


def markdown_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out)


def checks(r: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, warnings): what the suite checks about its own measurements, printed under the table.

    Problems are wrong results (an ack not stored, a row not counted); warnings are conditions that
    make the numbers less trustworthy (a busy machine, a saturated or late client)."""
    notes: list[str] = []
    warnings: list[str] = []
    b = r["batch"]
    if b["log_head"] != b["acked_events"]:
        notes.append(f"batch: the log holds {b['log_head']:,} events but {b['acked_events']:,} were acknowledged")
    errors = sum(x["errors"] for x in b["runs"]) + sum(x["errors"] for k in ("track", "noop") for x in r["single"][k])
    if errors:
        notes.append(f"ingest: {errors} requests failed or were refused")
    ld = r["load"]
    for key in ("sluice", "raw", "dlt", "dlt_parquet"):
        for x in (ld[key] or {"runs": []})["runs"]:
            if x["rows"] != x["rows_in_tables"]:
                notes.append(f"load {key}: counted {x['rows']:,} rows but the tables hold {x['rows_in_tables']:,}")
    expect = 2 * ld["meta"]["events"]
    if ld["sluice"]["runs"][0]["rows_in_tables"] != expect:
        held = ld["sluice"]["runs"][0]["rows_in_tables"]
        notes.append(f"load sluice: expected {expect:,} rows, tables hold {held:,}")
    for x in r["fresh"]["runs"]:
        if x["fresh_missing"]:
            notes.append(f"freshness: {x['fresh_missing']} acknowledged events never became visible")
        if x["late_sends"]:
            warnings.append(f"freshness: the client sent {x['late_sends']} requests late (> 50 ms behind schedule)")
    from bench import scaleout

    notes += scaleout.checks(r["scaleout"])
    measured = [*b["runs"], *r["single"]["track"], *r["single"]["noop"], *r["fresh"]["runs"], *ld["sluice"]["runs"]]
    other = _median([x.get("other_cpu", 0.0) for x in measured])
    if other > 0.25:
        warnings.append(
            f"other processes on this machine used {other * 100:.0f}% of a core (median over the measurements):"
            " the numbers understate what sluice does on a quiet machine"
        )
    busy = [
        x["client_cpu"]
        for x in [*b["runs"], *r["single"]["track"], *r["single"]["noop"], *r["fresh"]["runs"]]
    ]
    if busy and max(busy) > 0.8:
        warnings.append(f"the client used up to {max(busy) * 100:.0f}% of a core: it may be limiting the numbers")
    return notes, warnings


# -- the document -----------------------------------------------------------------------------


def render_doc(
    cfg: Config, machine: dict[str, str], table: str, notes: list[str], warnings: list[str], elapsed: float, kept: str
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Measured by the benchmark suite (`bench/`). Run it with **`make bench`**"
        " (= `.venv/bin/python -m bench.run`, about 5 minutes; it installs its own extra requirement,"
        " `bench/requirements.txt`, into the venv when missing). `python -m bench.run --quick` runs tiny"
        " sizes in seconds (the smoke test does); `--profile` also records py-spy profiles of the server"
        " into `bench-out/profiles/`. This file is rewritten by every full run: edit only below the marker"
        " at the end.",
        "",
        f"## Results ({machine['date']}, median of {cfg.runs} runs, whole suite {elapsed / 60:.1f} min)",
        "",
        table,
        "",
    ]
    if notes:
        lines += ["**Checks that did not pass in this run:**", "", *[f"- {n}" for n in notes], ""]
    if warnings:
        lines += ["Conditions of this run:", "", *[f"- {n}" for n in warnings], ""]
    lines += [
        "## Machine",
        "",
        f"- cores (nproc): {machine['nproc']}",
        f"- CPU: {machine['cpu']}",
        f"- memory: {machine['memory']}",
        f"- OS: {machine['os']}; data dirs on {machine['disk']}",
        f"- Python: {machine['python']}",
        f"- packages: {machine['packages']}",
        "",
        "Server, client and loader share these cores: the numbers are for everything on one small box.",
        "",
        "## How each number is measured",
        "",
        "- **Server.** Each ingest phase (1, 2, 4) starts its own `sluice serve` (the default process layout: a"
        " supervisor, one ingest process per core, a log writer and a delivery process) with a fresh data"
        " dir, `SLUICE_BENCH_ENDPOINTS=1` and one `http` source (schema `web`), exactly as a user would; its"
        " warehouse loader runs continuously during the phase, as it always does.",
        "- **Client.** `bench/client.py`, a separate process: HTTP/1.1 keep-alive connections on raw asyncio"
        " protocols (uvloop), one request in flight per connection, bodies pre-serialised with unique"
        " fixed-width messageIds patched in place. It reports its own CPU (getrusage) and the server's, all its"
        " processes added up (/proc/<pid>/stat), over the measured window (100% = one core). Row 1b shows how"
        " far it reaches against the no-op endpoint with the same bodies, so that it is not what limits row 1."
        " The single-event phase uses wrk (Debian's `wrk` package, a C client; `apt-get install wrk`) when it"
        " is installed, with a Lua script that sends the same bodies with unique messageIds; row 2a says which.",
        "- **Events.** Segment Email-spec tracks as Drip's Segment integration sends them (Email Delivered,"
        " Opened, Link Clicked, Bounced, Unsubscribed, Marked as Spam) with email_id, email_subject,"
        " campaign_id, campaign_name, link_url (clicks), context.traits.email, context.library, userId or"
        " anonymousId, unique messageIds and ISO timestamps; ~640 bytes each as sent (`bench/events.py`).",
        f"- **1. Batched ingest.** Closed loop, {cfg.batch_concurrency} connections, {cfg.batch_events} events per"
        f" request, {cfg.batch_warmup:.0f} s warm-up then {cfg.batch_seconds:.0f} s measured; events/s counts"
        " events in 200 answers (every 200 is after the group commit's fsync). Checked afterwards: the log"
        " head equals the number of events acknowledged. Each run is followed by the same run against"
        " `/bench/noop` (row 1b).",
        f"- **2. Single events.** Closed loop, {cfg.single_concurrency} connections, {cfg.single_seconds:.0f} s"
        " measured, alternating `/bench/noop` and `/v1/track` with the same client and the same bodies.",
        f"- **3. Warehouse load.** In-process (`bench/load.py`). {cfg.load_events:,} canonical events (made"
        " with `sluice.ingest.canonical.canonicalize`) are appended to a `SqliteLog`; then"
        " `DuckDBWarehouse.load` is timed over batches read with `SqliteLog.read` (the server's batch size)"
        " into a fresh warehouse file. **Rows are counted the same way for all: rows written into `tracks`"
        " plus the per-event tables** (2 per event; discards and dlt's `_dlt_*` tables not counted), checked"
        " against `count(*)`. The raw insert takes the very rows sluice produced (read back as Arrow) into"
        " tables with the same column types, all tables in one transaction, timed over the inserts only."
        f" dlt gets the same canonical events as Python dicts ({cfg.dlt_events:,} of them: it is too slow"
        " for all within the time budget), `tracks` without properties plus one table per event through"
        " `dlt.resource(..., table_name=<event table>)`, one `pipeline.run` timed end to end (extract,"
        " normalize, load) with dlt's default normalisation.",
        f"- **4. Freshness.** Paced open loop: {_n(cfg.fresh_rate)} requests/s of {cfg.fresh_events} events for"
        f" {cfg.fresh_seconds:.0f} s. The client records each request's ack wall-clock time and polls"
        " `POST /admin/query` every 50 ms for `select id, epoch_ms(loaded_at) from web.tracks where loaded_at"
        " >= <last seen>`; an event's freshness is the wall-clock time the first answer containing it arrived"
        " minus its ack time (an upper bound, by up to one poll). The `loaded_at - ack` figure beside it is a"
        " lower bound: DuckDB's now() is the load transaction's start, before its commit.",
        "- **5. Memory.** The RSS (VmRSS in /proc/<pid>/status) of every process of the server (the supervisor"
        " and its children, from `server.json`), summed, sampled every 0.2 s during the batched phase: the highest"
        " sum. Beside it, the sum of each process's own peak (VmHWM), an upper bound.",
        f"- **7. Scale-out ingest.** Row 1's client and bodies ({cfg.scaleout_seconds:.0f} s measured per run) against"
        " a fresh server per configuration: the embedded default (`--workers 1`, then `2`; delivery loads DuckDB"
        " alongside, as in row 1), and `sluice serve --role ingest` with the catalog in PostgreSQL, appending to"
        " JetStream: one nats-server (1 replica) and a 3-server cluster (3 replicas, a 200 once 2 of 3 stored"
        " each event), all on this machine (`bench/scaleout.py`). Checked afterwards: the stream's last"
        " sequence equals the events acknowledged. Ratios: 7f JetStream ÷ embedded, 7g two processes ÷ one.",
        "",
        KEEP_MARKER,
    ]
    return "\n".join(lines) + "\n" + kept


def _kept_part() -> str:
    if not DOC.exists():
        return ""
    text = DOC.read_text()
    i = text.find(KEEP_MARKER)
    return text[i + len(KEEP_MARKER) + 1 :] if i >= 0 else ""


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke test in seconds")
    parser.add_argument("--runs", type=int, help="repetitions of each measurement (default 3; 1 with --quick)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench-out", help="data dirs, profiles, results.json")
    parser.add_argument("--doc", type=Path, help="write the table here (default docs/benchmarks.md for a full run)")
    parser.add_argument("--no-doc", action="store_true", help="print only; write no document")
    parser.add_argument("--profile", action="store_true", help="record py-spy profiles of the server phases")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs afterwards")
    args = parser.parse_args(argv)

    cfg = QUICK if args.quick else Config()
    if args.runs:
        cfg = Config(**{**asdict(cfg), "runs": args.runs})
    workdir = args.workdir.resolve() / ("quick" if args.quick else "run")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    missing = missing_requirements()
    with_dlt = "dlt" not in missing
    if not with_dlt and not args.quick:
        raise SystemExit(f"bench requirements missing ({', '.join(missing)}): run `make bench`, which installs"
                         f" {REQUIREMENTS.relative_to(ROOT)}")
    prof = Profiler(args.profile, args.workdir.resolve() / "profiles")

    started = time.perf_counter()
    results: dict[str, Any] = {"config": asdict(cfg)}
    for name, fn in (
        ("batch", lambda: phase_batch(cfg, workdir, prof)),
        ("single", lambda: phase_single(cfg, workdir, prof)),
        ("fresh", lambda: phase_fresh(cfg, workdir, prof)),
        ("load", lambda: phase_load(cfg, workdir, with_dlt)),
        ("wide", lambda: _json_subprocess(["-m", "bench.wide", *(["--quick"] if args.quick else [])], 1800)),
        ("scaleout", lambda: phase_scaleout(cfg, workdir)),
    ):
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        results[name] = fn()
        print(f"[bench] {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
        if not args.keep:
            for p in workdir.iterdir():
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
    elapsed = time.perf_counter() - started

    rows, head = build_rows(cfg, results)
    notes, warnings = checks(results)
    table = markdown_table(rows)
    machine = describe(workdir)
    results.update(
        {"headline": head, "rows": rows, "notes": notes, "warnings": warnings, "machine": machine, "elapsed_s": elapsed}
    )
    (workdir / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))

    print()
    print(table)
    for n in notes:
        print(f"! {n}")
    for n in warnings:
        print(f"note: {n}")
    if prof.files:
        print("\nserver profiles (py-spy --gil: samples where a thread held the GIL):\n" + prof.summaries())
    print(f"\n{machine['nproc']} cores, {machine['cpu']}, {machine['memory']}; {machine['python']}; "
          f"{elapsed / 60:.1f} min; details in {workdir / 'results.json'}")
    # A quick or profiled run is not the record: it writes the document only when --doc names one.
    doc = args.doc if args.doc else (None if args.quick or args.profile else DOC)
    if doc is not None and not args.no_doc:
        kept = _kept_part() if doc == DOC else ""
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(render_doc(cfg, machine, table, notes, warnings, elapsed, kept))
        print(f"wrote {doc}")
    return results


if __name__ == "__main__":
    main()
