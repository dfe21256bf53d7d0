"""Warehouse load, measured in-process: sluice's loader beside a raw DuckDB insert and dlt.

    python -m bench.load prepare DIR N      fill DIR/log.db with N canonical email events
    python -m bench.load sluice DIR RUNS    SqliteLog.read + DuckDBWarehouse.load into fresh files
    python -m bench.load raw DIR RUNS       the same typed rows, Arrow INSERT INTO t SELECT * (the limit)
    python -m bench.load dlt DIR RUNS [EVENTS [FORMAT]]
                                            the same events as dicts through dlt.pipeline(...).run

Each prints one JSON object. Rows are counted the same way for all three: rows written into
`tracks` plus the per-event tables (so 2 per event; dlt's own _dlt_* tables are not counted).
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import orjson

SOURCE_ID = 1
SCHEMA = "web"
CONSUMER = "warehouse-1"
BATCH = 20_000  # the server's load_batch_max_events default
MAX_IDENT = 255


def _batch_size() -> int:
    try:
        from sluice.settings import Settings

        return int(Settings.from_env().load_batch_max_events)
    except Exception:
        return BATCH


def _batch_bytes() -> int | None:
    try:
        from sluice.settings import Settings

        return int(Settings.from_env().load_batch_max_bytes)
    except Exception:
        return None


def prepare(d: Path, n: int) -> dict[str, Any]:
    from bench.events import canonical_messages
    from sluice.ingest.canonical import Arrival, Limits, canonicalize
    from sluice.log.sqlite import SqliteLog
    from sluice.settings import Settings

    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    settings = Settings()
    limits = Limits(settings.max_message_bytes, settings.max_message_id_chars)
    messages = canonical_messages(n)
    t0 = time.perf_counter()
    records = []
    for i in range(0, n, 100):  # one Arrival per 100, as a /v1/batch request would have
        arrival = Arrival.now()
        records.extend(canonicalize(m, None, arrival, limits, SOURCE_ID) for m in messages[i : i + 100])
    canon_s = time.perf_counter() - t0
    log = SqliteLog(d / "log.db", settings.dedup_window_seconds)

    async def fill() -> None:
        for i in range(0, len(records), 5000):
            await log.append(records[i : i + 5000])

    t0 = time.perf_counter()
    asyncio.run(fill())
    append_s = time.perf_counter() - t0
    log.close()
    body_bytes = sum(len(r.body) for r in records)
    meta = {
        "events": n,
        "shapes": len({r.shape for r in records}),
        "mean_body_bytes": body_bytes / n,
        "canonicalize_per_s": n / canon_s,
        "log_append_per_s": n / append_s,
    }
    (d / "meta.json").write_bytes(orjson.dumps(meta))
    return meta


def _entries(d: Path) -> list[Any]:
    from sluice.log.sqlite import SqliteLog

    log = SqliteLog(d / "log.db", 86400)
    try:
        out: list[Any] = []
        after = 0
        while batch := log.read(SOURCE_ID, after, 50_000):
            out.extend(batch)
            after = batch[-1].seq
        return out
    finally:
        log.close()


def sluice_runs(d: Path, runs: int) -> dict[str, Any]:
    from sluice.log.sqlite import SqliteLog
    from sluice.warehouse.duckdb_engine import DuckDBWarehouse
    from sluice.warehouse.readonly import QueryLimits

    batch = _batch_size()
    max_bytes = _batch_bytes()
    results = []
    for i in range(runs):
        path = d / f"sluice-{i}.duckdb"
        path.unlink(missing_ok=True)
        log = SqliteLog(d / "log.db", 86400)
        wh = DuckDBWarehouse(path)
        read_s = load_s = 0.0
        rows = 0
        after = 0
        first: tuple[int, float] | None = None  # the first batch creates the tables and infers types
        cpu0 = _cpu()
        t_all = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            entries = log.read(SOURCE_ID, after, batch, max_bytes)
            t1 = time.perf_counter()
            read_s += t1 - t0
            if not entries:
                break
            counts = wh.load(CONSUMER, SCHEMA, entries)
            load_s += time.perf_counter() - t1
            rows += sum(v for k, v in counts.items() if k != "discards")
            if first is None:
                first = (rows, time.perf_counter() - t1)
            after = entries[-1].seq
        check = _count_rows(functools.partial(wh.query, limits=QueryLimits(600, 10**9)), SCHEMA)
        t_close = time.perf_counter()
        wh.close()  # the final checkpoint is part of loading: without it the rows are only in the WAL
        load_s += time.perf_counter() - t_close
        total_s = time.perf_counter() - t_all
        cpu1 = _cpu()
        log.close()
        results.append(
            {
                "rows": rows,
                "rows_in_tables": check,
                "load_s": load_s,
                "read_s": read_s,
                "rows_per_s": rows / load_s,
                "rows_per_s_with_read": rows / total_s,
                "first_batch_s": first[1] if first else 0.0,
                "rows_per_s_after_first": (rows - first[0]) / (load_s - first[1]) if first and rows > first[0] else 0.0,
                "peak_rss_mb": _peak_rss_mb(),
                "own_cpu": (cpu1[0] - cpu0[0]) / total_s,
                "cpu_us_per_row": (cpu1[0] - cpu0[0]) / rows * 1e6,
                "other_cpu": max(0.0, (cpu1[1] - cpu0[1]) - (cpu1[0] - cpu0[0])) / total_s,
            }
        )
    return {"runs": results, "batch_events": batch}


def _cpu() -> tuple[float, float]:
    """(this process's CPU seconds, the whole machine's busy CPU seconds)."""
    from bench.client import machine_cpu_seconds, self_cpu_seconds

    return self_cpu_seconds(), machine_cpu_seconds()


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _count_rows(query: Any, schema: str) -> int:
    tables = query(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'"
        " AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\' AND table_name <> 'discards'"
    )["rows"]
    total = 0
    for (t,) in tables:
        total += int(query(f'SELECT count(*) FROM "{schema}"."{t}"')["rows"][0][0])
    return total


def raw_runs(d: Path, runs: int) -> dict[str, Any]:
    """The physical limit: sluice's own output rows, as Arrow, into identically-typed fresh tables, in one
    transaction (the cheapest way DuckDB takes rows), timed to the end of the final checkpoint."""
    import duckdb

    src = duckdb.connect(str(d / "sluice-0.duckdb"), read_only=True)
    tables = [
        r[0]
        for r in src.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_name <> 'discards'"
            " ORDER BY table_name",
            [SCHEMA],
        ).fetchall()
    ]
    data = {}
    ddl = {}
    for t in tables:
        cols = src.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [SCHEMA, t],
        ).fetchall()
        ddl[t] = ", ".join(f'"{c}" {typ}' for c, typ in cols)
        data[t] = src.sql(f'SELECT * FROM "{SCHEMA}"."{t}"').to_arrow_table()
    src.close()
    results = []
    for i in range(runs):
        path = d / f"raw-{i}.duckdb"
        path.unlink(missing_ok=True)
        con = duckdb.connect(str(path))
        con.execute(f'CREATE SCHEMA "{SCHEMA}"')
        for t in tables:
            con.execute(f'CREATE TABLE "{SCHEMA}"."{t}" ({ddl[t]})')
        rows = 0
        t0 = time.perf_counter()
        con.execute("BEGIN")
        for t, arrow_table in data.items():
            con.register("arrow_table", arrow_table)
            con.execute(f'INSERT INTO "{SCHEMA}"."{t}" SELECT * FROM arrow_table')
            con.unregister("arrow_table")
            rows += arrow_table.num_rows
        con.execute("COMMIT")
        insert_s = time.perf_counter() - t0
        check = _count_rows(lambda q, c=con: {"rows": c.execute(q).fetchall()}, SCHEMA)
        t_close = time.perf_counter()
        con.close()  # its final checkpoint counts, as it does for sluice's load
        insert_s += time.perf_counter() - t_close
        results.append({"rows": rows, "rows_in_tables": check, "load_s": insert_s, "rows_per_s": rows / insert_s})
    return {"runs": results, "tables": len(tables)}


def dlt_runs(d: Path, runs: int, limit: int | None = None, file_format: str | None = None) -> dict[str, Any]:
    """dlt's normal usage: Python dicts -> pipeline.run(...) -> DuckDB, default normalisation.

    `file_format` None is dlt's default for DuckDB (insert_values); "parquet" is its fast path.
    """
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt

    from sluice.warehouse.naming import table_name

    bodies = [e.body for e in _entries(d)]
    if limit:
        bodies = bodies[:limit]
    results = []
    for i in range(runs):
        path = d / f"dlt-{file_format or 'default'}-{i}.duckdb"
        path.unlink(missing_ok=True)
        pipes = d / f"dlt-pipelines-{file_format or 'default'}-{i}"
        shutil.rmtree(pipes, ignore_errors=True)
        # The same canonical events as dicts: tracks gets the message without its properties
        # (Segment's tracks table), each event table the whole message.
        events = [orjson.loads(b) for b in bodies]
        tracks = [{k: v for k, v in m.items() if k != "properties"} for m in events]
        pipeline = dlt.pipeline(
            pipeline_name=f"sluice_bench_{i}",
            pipelines_dir=str(pipes),
            destination=dlt.destinations.duckdb(str(path)),
            dataset_name=SCHEMA,
        )
        t0 = time.perf_counter()
        info = pipeline.run(
            [
                dlt.resource(tracks, name="tracks"),
                dlt.resource(events, name="events", table_name=lambda m: table_name(m["event"], MAX_IDENT)),
            ],
            loader_file_format=file_format,  # type: ignore[arg-type]
        )
        load_s = time.perf_counter() - t0
        info.raise_on_failed_jobs()
        import duckdb

        con = duckdb.connect(str(path), read_only=True)
        rows = _count_rows(lambda q, c=con: {"rows": c.execute(q).fetchall()}, SCHEMA)
        con.close()
        results.append({"rows": rows, "rows_in_tables": rows, "load_s": load_s, "rows_per_s": rows / load_s})
        shutil.rmtree(pipes, ignore_errors=True)
    return {
        "runs": results,
        "events": len(bodies),
        "dlt_version": dlt.__version__,
        "file_format": file_format or dlt.destinations.duckdb().capabilities().preferred_loader_file_format,
    }


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _fresh_pg_db(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def _drop_pg_db(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_runs(d: Path, runs: int) -> dict[str, Any]:
    """sluice's PostgreSQL warehouse: the same batches, plan run by DuckDB, rows COPYed in."""
    import psycopg

    from sluice.log.sqlite import SqliteLog
    from sluice.warehouse.postgres_engine import PostgresWarehouse

    batch = _batch_size()
    max_bytes = _batch_bytes()
    results = []
    for i in range(runs):
        name = f"sluice_bench_pg_{i}"
        url = _fresh_pg_db(name)
        log = SqliteLog(d / "log.db", 86400, readonly=True)
        wh = PostgresWarehouse(url)
        rows, after, load_s = 0, 0, 0.0
        while True:
            entries = log.read(SOURCE_ID, after, batch, max_bytes)
            if not entries:
                break
            t0 = time.perf_counter()
            counts = wh.load(CONSUMER, SCHEMA, entries)
            load_s += time.perf_counter() - t0
            rows += sum(counts.values())
            after = entries[-1].seq
        wh.close()
        log.close()
        with psycopg.connect(url) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                " AND table_name NOT IN ('discards', 'users', 'identifies')", [SCHEMA]).fetchall()]
            check = sum(conn.execute(f'SELECT count(*) FROM "{SCHEMA}"."{t}"').fetchone()[0] for t in tables)
        _drop_pg_db(name)
        results.append({"rows": rows, "rows_in_tables": check, "load_s": load_s, "rows_per_s": rows / load_s})
    return {"runs": results, "batch_events": batch}


def pg_raw_runs(d: Path, runs: int) -> dict[str, Any]:
    """PostgreSQL's limit for the same rows: COPY of sluice's own output rows (as CSV) into
    identically-typed tables in one transaction."""
    import io

    import duckdb
    import psycopg
    import pyarrow.csv as pacsv

    from sluice.warehouse.postgres_engine import PG_TYPES
    from sluice.warehouse.types import from_sql_type

    src = duckdb.connect(str(d / "sluice-0.duckdb"), read_only=True)
    tables = [r[0] for r in src.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_name <> 'discards'"
        " ORDER BY table_name", [SCHEMA]).fetchall()]
    csvs, ddl = {}, {}
    for t in tables:
        cols = src.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", [SCHEMA, t]).fetchall()
        ddl[t] = ", ".join(f'"{c}" {PG_TYPES[from_sql_type(typ)]}' for c, typ in cols)
        buf = io.BytesIO()
        pacsv.write_csv(src.sql(f'SELECT * FROM "{SCHEMA}"."{t}"').to_arrow_table(), buf,
                        pacsv.WriteOptions(include_header=False))
        csvs[t] = buf.getvalue()
    src.close()
    results = []
    for i in range(runs):
        name = f"sluice_bench_pgraw_{i}"
        url = _fresh_pg_db(name)
        with psycopg.connect(url) as conn:
            conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
            for t in tables:
                conn.execute(f'CREATE TABLE "{SCHEMA}"."{t}" ({ddl[t]}, PRIMARY KEY (id))')
            conn.commit()
            t0 = time.perf_counter()
            for t in tables:
                with conn.cursor() as cur, cur.copy(f'COPY "{SCHEMA}"."{t}" FROM STDIN (FORMAT csv)') as copy:
                    copy.write(csvs[t])
            conn.commit()
            load_s = time.perf_counter() - t0
            rows = sum(conn.execute(f'SELECT count(*) FROM "{SCHEMA}"."{t}"').fetchone()[0] for t in tables)
        _drop_pg_db(name)
        results.append({"rows": rows, "load_s": load_s, "rows_per_s": rows / load_s})
    return {"runs": results}


def main(argv: list[str]) -> None:
    cmd, d = argv[0], Path(argv[1])
    if cmd == "prepare":
        out = prepare(d, int(argv[2]))
    elif cmd == "sluice":
        out = sluice_runs(d, int(argv[2]))
    elif cmd == "raw":
        out = raw_runs(d, int(argv[2]))
    elif cmd == "pg":
        out = pg_runs(d, int(argv[2]))
    elif cmd == "pgraw":
        out = pg_raw_runs(d, int(argv[2]))
    elif cmd == "dlt":
        limit = int(argv[3]) if len(argv) > 3 and argv[3] != "all" else None
        out = dlt_runs(d, int(argv[2]), limit, argv[4] if len(argv) > 4 else None)
    else:
        raise SystemExit(f"unknown command {cmd!r}")
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
