"""Admin SQL touches nothing but the warehouse: each escape found by attacking the admin endpoint (issue 9)
is reproduced here and must end in a clear refusal, with or without a running server.

Also the harm the escapes did: reading a SQLite file of the data dir from inside the server dropped
SQLite's POSIX locks, so the next CLI command deleted the WAL under the running server (acknowledged
events lost after a restart; a rotated write key ignored)."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import Sluice, poll, try_query

FAST = {"SLUICE_LOAD_LINGER_SECONDS": "0.05"}
ENV = {**FAST, "SLUICE_QUERY_TIME_LIMIT_SECONDS": "2", "SLUICE_QUERY_MAX_ROWS": "5"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sluice]:
    s = Sluice(tmp_path_factory.mktemp("admin") / "data", env=dict(ENV))
    s.start()
    s.key = s.create_source("http", "web")["write_key"]  # type: ignore[attr-defined]
    yield s
    s.stop()


def admin_sql(server: Sluice, sql: str, timeout: float = 30) -> httpx.Response:
    token = (server.data_dir / "admin-token").read_text().strip()
    return httpx.post(f"{server.admin_url}/admin/query", json={"sql": sql},
                      headers={"Authorization": f"Bearer {token}"}, timeout=timeout)


def send(server: Sluice, key: str, n: int = 1, prefix: str = "e") -> list[str]:
    ids = [f"{prefix}-{uuid.uuid4()}" for _ in range(n)]
    batch = [{"type": "track", "userId": "u", "event": "Escape Test", "messageId": i} for i in ids]
    r = httpx.post(f"{server.url}/v1/batch", json={"batch": batch}, auth=(key, ""), timeout=30)
    assert r.status_code == 200 and "rejected" not in r.json(), r.text
    return ids


def refused(r: httpx.Response, *secrets: str) -> str:
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    for secret in secrets:
        assert secret not in r.text
    return str(r.json()["error"])


def test_admin_sql_reads_no_file_of_the_host_or_the_data_dir(server: Sluice) -> None:
    token = (server.data_dir / "admin-token").read_text().strip()
    assert "disabled" in refused(admin_sql(server, "select * from read_csv('/etc/passwd')"), "root:")
    refused(admin_sql(server, f"select * from read_text('{server.data_dir / 'admin-token'}')"), token)
    catalog = admin_sql(server, f"select * from read_blob('{server.data_dir / 'catalog.db'}')")
    refused(catalog, server.key)  # type: ignore[attr-defined]
    refused(admin_sql(server, "select * from glob('/etc/*')"), "passwd")
    refused(admin_sql(server, "select * from '/etc/passwd'"), "root:")


def test_admin_sql_writes_nothing_and_loads_no_extension(server: Sluice, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    for sql in (f"COPY (select 1) TO '{out}'", f"EXPORT DATABASE '{tmp_path / 'export'}'"):
        assert "reading statements" in refused(admin_sql(server, sql))
    assert "reading statements" in refused(admin_sql(server, f"ATTACH '{tmp_path / 'other.duckdb'}' AS other"))
    assert "reading statements" in refused(admin_sql(server, "INSTALL httpfs"))
    assert "reading statements" in refused(admin_sql(server, "LOAD httpfs"))
    assert "reading statements" in refused(admin_sql(server, "create table web.evil (a int)"))
    assert "reading statements" in refused(admin_sql(server, "SET enable_external_access = true"))
    assert "one statement" in refused(admin_sql(server, "select 1; drop table _sluice.cursors"))
    # Reading statements with a side effect are stopped by the read-only transaction and the locked instance.
    refused(admin_sql(server, f"select * from query('copy (select 1) to ''{out}''')"))
    refused(admin_sql(server, "select * from query('create table web.evil2 (a int)')"))
    assert not out.exists() and not (tmp_path / "other.duckdb").exists() and not (tmp_path / "export").exists()
    # What the admin path is for still works: reading the warehouse.
    ok = admin_sql(server, "select count(*) as n from _sluice.cursors")
    assert ok.status_code == 200 and ok.json()["columns"] == ["n"]
    assert admin_sql(server, "show all tables").status_code == 200
    assert admin_sql(server, "explain select 1").status_code == 200


def test_row_cap_says_it_truncated(server: Sluice) -> None:
    body = admin_sql(server, "select * from range(100)").json()
    assert (len(body["rows"]), body["truncated"]) == (5, True)
    assert admin_sql(server, "select * from range(5)").json()["truncated"] is False
    out = server.cli("query", "select * from range(100)", "--format", "csv")
    assert out.stdout.splitlines() == ["range", "0", "1", "2", "3", "4"]
    assert "first 5 rows" in out.stderr


def test_a_slow_query_is_stopped_and_never_stalls_loading(server: Sluice) -> None:
    answer: list[httpx.Response] = []
    slow = threading.Thread(
        target=lambda: answer.append(admin_sql(server, "select count(*) from range(10000000000000) a, range(10) b"))
    )
    slow.start()
    try:
        time.sleep(0.3)
        ids = send(server, server.key, 3, "during-slow-query")  # type: ignore[attr-defined]
        in_list = ", ".join(f"'{i}'" for i in ids)
        poll(server, f"select id from web.tracks where id in ({in_list})", 3, timeout=15)
    finally:
        slow.join(30)
    assert answer, "the slow query never answered"
    assert "longer than the limit of 2 s" in refused(answer[0])


def test_the_same_fences_without_a_server(tmp_path: Path) -> None:
    s = Sluice(tmp_path / "data", env=dict(ENV))
    s.start()
    key = s.create_source("http", "web")["write_key"]
    send(s, key)
    poll(s, "select id from web.tracks", 1)
    s.stop()
    token = (s.data_dir / "admin-token").read_text().strip()
    for sql, word in (
        (f"select * from read_text('{s.data_dir / 'admin-token'}')", "disabled"),
        (f"select * from read_blob('{s.data_dir / 'catalog.db'}')", "disabled"),
        (f"COPY (select 1) TO '{tmp_path / 'x.csv'}'", "reading statements"),
        ("INSTALL httpfs", "reading statements"),
        ("select count(*) from range(10000000000000) a, range(10) b", "longer than the limit"),
    ):
        res = s.cli("query", sql, check=False)
        assert res.returncode != 0 and token not in res.stdout + res.stderr and key not in res.stdout + res.stderr
        assert word in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "x.csv").exists()
    assert s.cli("query", "select count(*) as n from web.tracks", "--format", "json").stdout.count('"n": 1') == 1


def test_a_query_never_releases_the_servers_sqlite_locks(tmp_path: Path) -> None:
    """The original harm: read_blob('log.db') closed a descriptor of log.db inside the server, which
    drops SQLite's POSIX locks; the next CLI command then believed it was alone, checkpointed and
    deleted log.db-wal under the server, and events acknowledged afterwards were gone after a restart."""
    s = Sluice(tmp_path / "data", env=dict(FAST))
    s.start()
    try:
        key = s.create_source("http", "web")["write_key"]
        send(s, key, 5, "before")
        for name in ("log.db", "log.db-wal", "catalog.db", "catalog.db-wal"):
            refused(admin_sql(s, f"select size from read_blob('{s.data_dir / name}')"))
        s.cli("deliveries", "dead-letters", "warehouse")  # opens and closes log.db and catalog.db
        s.cli("sources", "list")
        assert (s.data_dir / "log.db-wal").exists(), "a CLI command deleted the WAL under the running server"
        acked = send(s, key, 20, "after")
        s.stop(signal.SIGKILL)
        s.start()
        in_list = ", ".join(f"'{i}'" for i in acked)
        poll(s, f"select id from web.tracks where id in ({in_list})", len(acked), timeout=20)
    finally:
        s.stop()


def test_a_query_never_makes_the_server_miss_a_rotated_key(tmp_path: Path) -> None:
    s = Sluice(tmp_path / "data", env=dict(FAST))
    s.start()
    try:
        old = s.create_source("http", "web")["write_key"]
        send(s, old)
        refused(admin_sql(s, f"select size from read_blob('{s.data_dir / 'catalog.db'}')"))
        new = orjson.loads(s.cli("sources", "rotate-key", "web", "--json").stdout)["write_key"]

        def answers() -> tuple[int, int]:
            def one(key: str) -> int:
                return httpx.post(f"{s.url}/v1/batch", json={"batch": []}, auth=(key, ""), timeout=10).status_code
            return one(new), one(old)

        deadline = time.monotonic() + 5
        while answers() != (200, 401) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert answers() == (200, 401)
    finally:
        s.stop()


def test_admin_api_is_not_on_the_ingest_listener(server: Sluice) -> None:
    token = (server.data_dir / "admin-token").read_text().strip()
    r = httpx.post(f"{server.url}/admin/query", json={"sql": "select 1"}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    info = orjson.loads((server.data_dir / "server.json").read_bytes())
    assert info["url"] == server.url and info["admin_url"] == server.admin_url
    assert try_query(server, "select 1 as one") == [{"one": 1}]
    # Every API path wants the token; every other path is the console's, closed until signing in.
    assert httpx.get(f"{server.admin_url}/admin/status").status_code == 401
    r = httpx.get(f"{server.admin_url}/health")
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"
