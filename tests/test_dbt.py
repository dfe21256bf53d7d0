"""dbt on sluice's warehouse, as on Segment's: tests/dbt's models select what public Segment dbt packages read
from `pages`, `tracks` and `identifies` (context_ip, context_user_agent, the utm columns, the page and referrer,
the ids and timestamps), and they run on sluice's DuckDB file (read-only, with the server stopped) and on its
PostgreSQL destination. dbt runs from its own venv (`make dbt`, from tests/dbt/requirements.txt), so its pins
never meet the app's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
from browser import ROOT, missing
from conftest import Sluice, poll

DBT = Path(os.environ.get("SLUICE_TEST_DBT", ROOT / ".venv-dbt" / "bin" / "dbt"))
PROJECT = ROOT / "tests" / "dbt"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0 Safari/537.36"


def page(i: int, anonymous_id: str, minute: int, **context: Any) -> dict[str, Any]:
    path = f"/p{i}"
    return {
        "type": "page", "anonymousId": anonymous_id, "messageId": f"page-{i}", "name": f"P{i}",
        "timestamp": f"2026-01-05T10:{minute:02d}:00Z",
        "properties": {"path": path, "url": f"https://shop.example.com{path}?utm_source=news", "title": f"P{i}",
                       "search": "?utm_source=news", "referrer": "https://www.google.com/"},
        "context": {"userAgent": UA, "campaign": {"source": "news", "medium": "email", "name": "spring",
                                                  "term": "shoes", "content": "hero"}, **context},
    }


EVENTS = [
    page(1, "anon-1", 0), page(2, "anon-1", 5), page(3, "anon-1", 50),  # a gap of 45 minutes: two sessions
    page(4, "anon-2", 1, ip="198.51.100.9"),
    {"type": "identify", "anonymousId": "anon-1", "userId": "u1", "messageId": "id-1",
     "traits": {"email": "u1@example.com"}, "context": {"userAgent": UA}},
    {"type": "track", "anonymousId": "anon-1", "userId": "u1", "event": "Order Completed", "messageId": "t-1",
     "properties": {"total": 42.5}, "timestamp": "2026-01-05T10:06:00Z"},
    {"type": "track", "anonymousId": "anon-2", "event": "Order Completed", "messageId": "t-2",
     "timestamp": "2026-01-05T11:00:00Z"},
]




def profiles(directory: Path, warehouse: Path, pg_database: str) -> Path:
    """profiles.yml as docs/warehouse-schema.md shows it: sluice's file attached read-only under the alias
    `sluice`, dbt's own tables in a file of its own; and the PostgreSQL destination's database."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "profiles.yml").write_text(f"""
sluice:
  target: duckdb
  outputs:
    duckdb:
      type: duckdb
      path: {directory / "dbt.duckdb"}
      schema: analytics
      threads: 1
      attach:
        - path: {warehouse}
          alias: sluice
          read_only: true
    postgres:
      type: postgres
      host: 127.0.0.1
      port: 5432
      user: postgres
      password: ""
      dbname: {pg_database}
      schema: analytics
      threads: 1
""")
    return directory


def dbt(profiles_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DBT_PROFILES_DIR": str(profiles_dir),
        "DBT_TARGET_PATH": str(profiles_dir / "target"),  # nothing written into the repository
        "DBT_LOG_PATH": str(profiles_dir / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",  # no network
        "DO_NOT_TRACK": "1",
    }
    result = subprocess.run([str(DBT), *args, "--project-dir", str(PROJECT)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result


def check_models(rows: dict[str, list[tuple[Any, ...]]]) -> None:
    views = rows["segment_web_page_views"]
    assert len(views) == 4
    by_id = {r[0]: r for r in views}
    # context_ip from the request (the test runs on 127.0.0.1) unless the page sent its own.
    assert {k: v[3] for k, v in by_id.items()} == {"page-1": "127.0.0.1", "page-2": "127.0.0.1",
                                                   "page-3": "127.0.0.1", "page-4": "198.51.100.9"}
    assert all(r[1:3] == ("news", "hero") and r[4] == UA and r[5] == "Desktop" for r in views)
    assert sorted(rows["segment_sessions"]) == [("anon-1", 1, "u1", 2), ("anon-1", 2, "u1", 1),
                                                ("anon-2", 1, "anon-2", 1)]
    assert rows["segment_user_stitching"] == [("anon-1", "u1")]
    assert sorted(rows["segment_daily_events"]) == [("order_completed", "Order Completed", 2, 2)]


QUERIES = {
    "segment_web_page_views": "select page_view_id, utm_source, utm_content, ip, user_agent, device_category"
                              " from analytics.segment_web_page_views",
    "segment_sessions": "select anonymous_id, session_number, blended_user_id, page_views"
                        " from analytics.segment_sessions",
    "segment_user_stitching": "select anonymous_id, blended_user_id from analytics.segment_user_stitching",
    "segment_daily_events": "select event, event_text, events, people from analytics.segment_daily_events",
}


def test_segment_dbt_models_run_on_duckdb_and_postgres(tmp_path: Path, pg_database: str) -> None:
    if not DBT.exists():
        missing(f"dbt at {DBT}: `make dbt` (a venv of its own from tests/dbt/requirements.txt)")
    server = Sluice(tmp_path / "data", env={"SLUICE_LOAD_LINGER_SECONDS": "0.05"})
    server.start()
    try:
        key = server.create_source("http", "web")["write_key"]
        server.cli("destinations", "add", "web", "postgres", "--name", "pg", "--url", pg_database)
        r = httpx.post(f"{server.url}/v1/batch", json={"batch": EVENTS}, auth=(key, ""))
        assert r.status_code == 200 and r.json()["stored"] == len(EVENTS), r.text
        poll(server, "select id from web.pages", 4)
        poll(server, "select id from web.identifies", 1)
        poll(server, "select id from web.tracks", 2)
        with psycopg.connect(pg_database) as conn:
            for _ in range(200):
                counts = [conn.execute(f"select count(*) from web.{t}").fetchone()[0]  # type: ignore[index]
                          for t in ("pages", "tracks", "identifies")
                          if conn.execute("select to_regclass(%s)", (f"web.{t}",)).fetchone()[0]]  # type: ignore[index]
                conn.commit()
                if counts == [4, 2, 1]:
                    break
                poll(server, "select 1", 1, timeout=1)  # a moment, through the server
            assert counts == [4, 2, 1]
    finally:
        server.stop()  # DuckDB lets one process open the file: dbt reads it with the server stopped

    profiles_dir = profiles(tmp_path / "dbt", tmp_path / "data" / "warehouse.duckdb", pg_database.rsplit("/", 1)[1])
    dbt(profiles_dir, "run", "--target", "duckdb")
    with duckdb.connect(str(profiles_dir / "dbt.duckdb"), read_only=True) as db:
        check_models({name: db.execute(sql).fetchall() for name, sql in QUERIES.items()})

    dbt(profiles_dir, "run", "--target", "postgres", "--vars", f"segment_database: {pg_database.rsplit('/', 1)[1]}")
    with psycopg.connect(pg_database) as conn:
        check_models({name: conn.execute(sql).fetchall() for name, sql in QUERIES.items()})  # type: ignore[arg-type]
