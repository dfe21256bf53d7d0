"""Wide events and property floods: loading cost must grow with the data, and one source's flood must not
hold up another source.

    python -m bench.wide [--quick]

1. Width: one track with K distinct integer properties, K from 100 to 2,000, loaded into a fresh
   DuckDB warehouse (issue 8 measured 0.8 s for 100, 10.5 s for 1,000 and 81.7 s for 2,000 on sluice
   0.1). Reported per property (ms per column); the ratio of the 2,000 case to the 100 case says
   whether the cost is linear (about 1) or worse. Run twice: with the column cap raised to 2,500
   (every property becomes a column) and with the default cap of 500 (the rest go to discards).
2. Flood: source A sends 10 messages of 1,000 new properties each (10,000 distinct) in one batch while
   source B loads a 1,000-event batch every 0.1 s on its own connection. Reports A's columns and
   discards, A's load time, and B's slowest batch during the flood beside B's median without it.

Prints one JSON object (bench/run.py reads it).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from sluice.ingest.canonical import Arrival, Limits, canonicalize, iso_ms
from sluice.log.base import Entry
from sluice.warehouse.duckdb_engine import DuckDBWarehouse
from sluice.warehouse.loader import Caps
from sluice.warehouse.readonly import QueryLimits

_LIMITS = Limits(10 * 1024 * 1024, 100)  # the bench builds wide messages directly: no 32 KB cap here
_seq = iter(range(1, 10**12))


def _entries(messages: list[dict[str, Any]]) -> list[Entry]:
    now = int(time.time() * 1000)
    arrival = Arrival(now, iso_ms(now))
    out = []
    for m in messages:
        r = canonicalize({"messageId": str(uuid.uuid4()), **m}, None, arrival, _LIMITS, 1)
        out.append(Entry(next(_seq), r.shape, r.received_ms, r.body))
    return out


def _wide(k: int, messages: int, tag: str) -> list[dict[str, Any]]:
    return [{"type": "track", "userId": f"u{m}", "event": "Wide",
             "properties": {f"{tag}{m}_{i}": i for i in range(k)}} for m in range(messages)]


def width(d: Path, widths: list[int], messages: int, max_columns: int, runs: int) -> list[dict[str, Any]]:
    out = []
    for k in widths:
        times = []
        for r in range(runs):
            path = d / f"wide-{k}-{max_columns}-{r}.duckdb"
            wh = DuckDBWarehouse(path, Caps(max_columns=max_columns))
            batch = _entries(_wide(k, messages, "p"))
            t0 = time.perf_counter()
            wh.load("c", "wide", batch)
            times.append(time.perf_counter() - t0)
            counted = wh.query("SELECT count(*) FROM wide.discards", QueryLimits(60, 10))["rows"][0][0]
            wh.close()
            path.unlink()
        load_s = statistics.median(times)
        out.append({"properties": k, "messages": messages, "load_s": load_s, "discards": counted,
                    "ms_per_value": load_s * 1000 / (k * messages)})
    return out


def flood(d: Path, quick: bool) -> dict[str, Any]:
    wh = DuckDBWarehouse(d / "flood.duckdb", Caps())
    size, per, every = (200, 200, 0.05) if quick else (1000, 1000, 0.1)
    normal = [{"type": "track", "userId": "u", "event": "Email Opened", "properties": {"email_id": "e1"}}] * per
    warm = [time.perf_counter()]
    # B's baseline: a few batches alone.
    alone = []
    for _ in range(5):
        t0 = time.perf_counter()
        wh.load("warehouse-2", "b", _entries(normal))
        alone.append(time.perf_counter() - t0)
    during: list[float] = []
    done = threading.Event()

    def loader_b() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            wh.load("warehouse-2", "b", _entries(normal))
            during.append(time.perf_counter() - t0)
            time.sleep(every)

    thread = threading.Thread(target=loader_b)
    flood_batch = _entries(_wide(size, 10, "f"))
    thread.start()
    t0 = time.perf_counter()
    wh.load("warehouse-1", "a", flood_batch)
    flood_s = time.perf_counter() - t0
    time.sleep(every * 3)
    done.set()
    thread.join()
    q = QueryLimits(60, 10_000)
    cols = wh.query("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'a' AND table_name = 'wide'",
                    q)["rows"][0][0]
    discards = wh.query("SELECT count(*) FROM a.discards", q)["rows"][0][0]
    wh.close()
    del warm
    return {
        "flood_properties": size * 10, "flood_load_s": flood_s, "columns": cols, "discards": discards,
        "b_batches_during": len(during), "b_max_during_s": max(during) if during else None,
        "b_median_alone_s": statistics.median(alone),
    }


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    widths = [100, 200] if quick else [100, 500, 1000, 2000]
    runs = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        result = {
            "all_columns": width(d, widths, 1, 2500, runs),
            "capped": width(d, widths, 1, 500, runs),
            "flood": flood(d, quick),
        }
    for key in ("all_columns", "capped"):
        rows = result[key]
        result[f"{key}_ratio"] = rows[-1]["ms_per_value"] / rows[0]["ms_per_value"]
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
