"""The benchmark suite still runs end to end: `python -m bench.run --quick` (tiny sizes, one run).

No timing is asserted (DESIGN: speed is measured by the benchmark suite, never by a timed test);
this only checks that every row of the table is produced and every measured number is positive.
Nothing is installed while it runs: the dlt comparison (rows 3c-3e) runs only where `make bench` has
installed bench/requirements.txt, and says it was not run otherwise.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bench import run

DLT = ("dlt_rows_per_s", "dlt_parquet_rows_per_s", "load_over_dlt")

ROWS = ["1", "1b", "2a", "2b", "2c", "3a", "3b", "3c", "3d", "3e", "3f", "3g", "3h", "3i", "4", "5", "6a", "6b",
        "6c", "7a", "7b", "7c", "7d", "7e", "7f", "7g"]


def test_quick_bench_produces_every_row(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    results = run.main(["--quick", "--workdir", str(tmp_path / "work"), "--doc", str(doc)])

    assert [row[0] for row in results["rows"]] == ROWS
    assert all(len(row) == len(run.HEADER) for row in results["rows"])
    head = results["headline"]
    for key in (
        "batch_events_per_s", "track_rps", "noop_rps", "track_over_noop", "load_rows_per_s", "raw_rows_per_s",
        "load_over_raw", "fresh_p50_s", "fresh_p99_s", "peak_rss_mb", "pg_rows_per_s", "pg_raw_rows_per_s",
        "batch_noop_events_per_s", "client_headroom",
    ):
        assert head[key] > 0, key
    has_dlt = importlib.util.find_spec("dlt") is not None
    for key in DLT:
        assert (head[key] > 0) if has_dlt else head[key] is None, key
    assert head["fresh_p50_s"] <= head["fresh_p99_s"]
    # Correctness checks the suite makes on itself: every ack stored, every row counted, every event seen.
    assert results["notes"] == []
    assert results["batch"]["log_head"] == results["batch"]["acked_events"]
    assert results["load"]["sluice"]["runs"][0]["rows_in_tables"] == 2 * results["load"]["meta"]["events"]

    text = doc.read_text()
    assert "PostgreSQL" in text and "not yet" not in text
    for row in ROWS:
        assert f"\n| {row} |" in text
    assert "## Machine" in text and "nproc" in text
