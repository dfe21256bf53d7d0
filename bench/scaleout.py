"""Rows 7a-7g: ingest through the JetStream log beside the embedded log, and one ingest process vs two.

Each configuration is a fresh `sluice serve` measured with row 1's client and bodies (closed loop,
100-event /v1/batch requests, 8 connections):

- embedded: the default server (log writer with fsync per group commit; delivery loads DuckDB alongside),
  `--workers 1` and `--workers 2`;
- JetStream: `sluice serve --role ingest` (ingest processes only, a 200 after JetStream's acks), the catalog
  in a fresh PostgreSQL database, against one nats-server (stream with 1 replica) and against a 3-server
  cluster on this machine (3 replicas: acknowledged once 2 servers stored it), `--workers 1` and `2`.

The NATS servers are started here on free ports with their own store dirs (`tests/nats_cluster.py`, the
tests' launcher), so the machine's own NATS is never touched. Without a nats-server binary the JetStream
rows say so instead of a number.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.load import _drop_pg_db, _fresh_pg_db
from bench.server import SluiceServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' NATS launcher, not a copy of it
from nats_cluster import NatsCluster, nats_server_binary  # noqa: E402

# (key, what, servers (0: embedded), ingest processes)
CONFIGS = [  # in the table's order, 7a-7e
    ("embedded_1", "embedded log (log.db), 1 ingest process", 0, 1),
    ("js1_1", "JetStream, one nats-server (1 replica), 1 ingest process", 1, 1),
    ("js3_1", "JetStream, 3-server cluster (3 replicas), 1 ingest process", 3, 1),
    ("embedded_2", "embedded log (log.db), 2 ingest processes", 0, 2),
    ("js3_2", "JetStream, 3-server cluster (3 replicas), 2 ingest processes", 3, 2),
]


@contextlib.contextmanager
def _nats(workdir: Path, size: int) -> Iterator[NatsCluster]:
    root = workdir / f"nats{size}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    cluster = NatsCluster(root, size=size)
    cluster.start()
    try:
        cluster.wait_for_jetstream()
        yield cluster
    finally:
        cluster.stop()


def _measure(server: SluiceServer, spec_for: Callable[[SluiceServer, dict[str, Any], int], dict[str, Any]],
             runs: int, run_client: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    shutil.rmtree(server.data_dir, ignore_errors=True)  # a fresh data dir, as every phase
    source = server.create_source("web")
    server.start(timeout=120)
    try:
        out = [run_client(spec_for(server, source, i)) for i in range(runs)]
        acked = sum(r["acked_events_total"] for r in out)
        # /health answers the head its process last knew and refreshes it in the background (it never waits
        # on NATS), and an ingest process that took no request has not looked yet: ask until it has caught up.
        deadline = time.monotonic() + 10
        while (head := int(server.health()["log_head"])) != acked and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.stop()
    return {"runs": out, "acked_events": acked, "log_head": head}


def phase(workdir: Path, runs: int, spec_for: Callable[[SluiceServer, dict[str, Any], int], dict[str, Any]],
          run_client: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """Every configuration's runs; None for the JetStream ones when no nats-server is installed."""
    results: dict[str, Any] = {"nats_server": nats_server_binary()}
    embedded = [c for c in CONFIGS if c[2] == 0]
    for key, _what, _servers, workers in embedded:
        results[key] = _measure(SluiceServer(workdir / key, workers=workers), spec_for, runs, run_client)
    for size in (1, 3):
        configs = [c for c in CONFIGS if c[2] == size]
        if results["nats_server"] is None:
            results.update({c[0]: None for c in configs})
            continue
        with _nats(workdir, size) as cluster:
            for key, _what, _servers, workers in configs:
                db = f"bench_scaleout_{uuid.uuid4().hex[:8]}"
                env = {"SLUICE_LOG": cluster.url, "SLUICE_CATALOG": _fresh_pg_db(db),
                       "SLUICE_NATS_STREAM": f"BENCH_{uuid.uuid4().hex[:8]}", "SLUICE_NATS_REPLICAS": str(size)}
                try:
                    server = SluiceServer(workdir / key, env=env, workers=workers, args=["--role", "ingest"])
                    results[key] = _measure(server, spec_for, runs, run_client)
                finally:
                    _drop_pg_db(db)
    return results


def rows(r: dict[str, Any], median: Callable[[list[float]], float], fmt: Callable[[float], str],
         spread: Callable[[list[float], Callable[[float], str]], str], head: dict[str, Any]) -> list[list[str]]:
    """Rows 7a-7g of the table (and their medians in `head`)."""
    eps: dict[str, float | None] = {}
    out: list[list[str]] = []
    letters = iter("abcde")
    for key, what, _servers, _workers in CONFIGS:
        row = f"7{next(letters)}"
        got = r[key]
        if got is None:
            eps[key] = None
            out.append([row, f"Batched ingest (row 1's client), {what}",
                        "not run: no nats-server (`apt-get install nats-server`)", "", "", "", "", ""])
            continue
        values = [x["events_per_s"] for x in got["runs"]]
        eps[key] = head[f"scaleout_{key}_events_per_s"] = median(values)
        lat = got["runs"]
        out.append([
            row, f"Batched ingest (row 1's client), {what}", f"{fmt(median(values))} events/s",
            spread(values, fmt),
            f"p50 {median([x['latency_p50_ms'] for x in lat]):.0f} ms,"
            f" p99 {median([x['latency_p99_ms'] for x in lat]):.0f} ms/request;"
            f" CPU: server {median([x['server_cpu'] for x in lat]) * 100:.0f}%, other processes (the NATS"
            f" servers among them) {median([x.get('other_cpu', 0.0) for x in lat]) * 100:.0f}%",
            f"{median([x['client_cpu'] for x in lat]) * 100:.0f}%", "", "",
        ])

    def ratio(a: str, b: str) -> str:
        x, y = eps[a], eps[b]
        return f"{x / y:.2f}x" if x and y else "—"

    out.append(["7f", "JetStream ÷ embedded, 1 ingest process: one server (7b ÷ 7a); 3 replicas (7c ÷ 7a)",
                ratio("js1_1", "embedded_1"), "", f"3 replicas: {ratio('js3_1', 'embedded_1')}", "", "", ""])
    out.append(["7g", "2 ingest processes ÷ 1: embedded (7d ÷ 7a); JetStream, 3 replicas (7e ÷ 7c)",
                ratio("embedded_2", "embedded_1"), "", f"JetStream: {ratio('js3_2', 'js3_1')}", "", "", ""])
    return out


def checks(r: dict[str, Any]) -> list[str]:
    """Every acknowledged event is in the log (each configuration has a log or stream of its own)."""
    notes = []
    for key, what, _servers, _workers in CONFIGS:
        got = r[key]
        if got is not None and got["log_head"] != got["acked_events"]:
            notes.append(f"scale-out {what}: the log holds {got['log_head']:,} events but"
                         f" {got['acked_events']:,} were acknowledged")
        if got is not None and sum(x["errors"] for x in got["runs"]):
            notes.append(f"scale-out {what}: {sum(x['errors'] for x in got['runs'])} requests failed")
    return notes
