"""`sluice query` and the server's /admin/query: formats, the same answer with or without a running server,
the admin token, and clear errors."""

from __future__ import annotations

import base64
import csv
import io
import signal
import stat
from pathlib import Path
from typing import Any

import httpx
import orjson
from conftest import Sluice

SQL = "select id, user_id, label, n, ratio, ok, seen from web.loaded order by id"


def load_rows(sluice: Sluice, web: dict[str, Any]) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "Loaded", "messageId": "m1",
         "properties": {"label": 'comma, "quote"', "n": 1, "ratio": 0.5, "ok": True, "seen": "2024-01-02T03:04:05Z"}},
        {"type": "track", "userId": "u2", "event": "Loaded", "messageId": "m2",
         "properties": {"label": "ünïcode ✓", "n": 2, "ratio": 1.25, "ok": False, "seen": "2024-06-01T00:00:00Z"}},
        {"type": "track", "userId": "u3", "event": "Loaded", "messageId": "m3",
         "properties": {"label": "line\nbreak", "n": None, "ratio": 2, "seen": "2025-01-01T00:00:00.5Z"}},
    ]
    r = httpx.post(f"{sluice.url}/v1/batch", json={"batch": batch}, auth=(web["write_key"], ""))
    assert r.status_code == 200
    sluice.wait_for_rows(SQL, 3)


def run_all_formats(sluice: Sluice) -> dict[str, str]:
    return {fmt: sluice.cli("query", SQL, "--format", fmt).stdout for fmt in ("table", "csv", "json")}


def test_formats_are_the_same_with_the_server_running_stopped_or_crashed(sluice: Sluice, web: dict[str, Any]) -> None:
    load_rows(sluice, web)
    running = run_all_formats(sluice)

    rows = orjson.loads(running["json"])
    assert [(r["id"], r["user_id"], r["label"], r["n"], r["ratio"], r["ok"]) for r in rows] == [
        ("m1", "u1", 'comma, "quote"', 1, 0.5, True),
        ("m2", "u2", "ünïcode ✓", 2, 1.25, False),
        ("m3", "u3", "line\nbreak", None, 2.0, None),
    ]
    assert [r["seen"][:19] for r in rows] == ["2024-01-02T03:04:05", "2024-06-01T00:00:00", "2025-01-01T00:00:00"]

    parsed = list(csv.reader(io.StringIO(running["csv"])))
    assert parsed[0] == ["id", "user_id", "label", "n", "ratio", "ok", "seen"]
    assert [r[:6] for r in parsed[1:]] == [
        ["m1", "u1", 'comma, "quote"', "1", "0.5", "True"],
        ["m2", "u2", "ünïcode ✓", "2", "1.25", "False"],
        ["m3", "u3", "line\nbreak", "", "2.0", ""],
    ]

    table = running["table"].splitlines()
    assert table[0].split() == ["id", "user_id", "label", "n", "ratio", "ok", "seen"]
    assert set(table[1].replace(" ", "")) == {"-"}
    assert table[2].startswith("m1") and "u1" in table[2]
    assert table[-1] == "(3 rows)"

    sluice.stop()
    assert run_all_formats(sluice) == running

    sluice.start()
    sluice.stop(signal.SIGKILL)  # a crashed server leaves its files behind; queries still work
    assert sluice.cli("query", SQL, "--format", "json").stdout == running["json"]


def test_empty_result_and_single_row_footer(sluice: Sluice, web: dict[str, Any]) -> None:
    load_rows(sluice, web)
    out = sluice.cli("query", "select id from web.loaded where id = 'none'").stdout
    assert out.splitlines()[0].strip() == "id" and out.splitlines()[-1] == "(0 rows)"
    assert sluice.cli("query", "select 1 as one").stdout.splitlines()[-1] == "(1 row)"
    assert orjson.loads(sluice.cli("query", "select id from web.loaded where false", "--format", "json").stdout) == []
    assert sluice.cli("query", "select id from web.loaded where false", "--format", "csv").stdout == "id\n"


def admin(sluice: Sluice, headers: dict[str, str], sql: str = "select 1 as one") -> httpx.Response:
    return httpx.post(f"{sluice.admin_url}/admin/query", json={"sql": sql}, headers=headers, timeout=30)


def test_admin_query_needs_the_admin_token(sluice: Sluice, web: dict[str, Any]) -> None:
    token_file: Path = sluice.data_dir / "admin-token"
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert stat.S_IMODE(token_file.stat().st_mode) & 0o077 == 0  # readable by its owner only
    key = web["write_key"]
    refused = {
        "no header": {},
        "write key as bearer": {"Authorization": f"Bearer {key}"},
        "write key as basic": {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()},
        "token as basic": {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()},
        "wrong token": {"Authorization": "Bearer " + "x" * len(token)},
        "token prefix": {"Authorization": f"Bearer {token[:-1]}"},
        "bearer without token": {"Authorization": "Bearer"},
    }
    for name, headers in refused.items():
        r = admin(sluice, headers)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert "one" not in r.text
    r = admin(sluice, {"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert r.json() == {"columns": ["one"], "rows": [[1]], "truncated": False}
    # The write key does not open the status page either.
    assert httpx.get(f"{sluice.admin_url}/admin/status", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_bad_sql_gets_a_clear_error_and_non_zero_exit(sluice: Sluice, web: dict[str, Any]) -> None:
    load_rows(sluice, web)
    token = (sluice.data_dir / "admin-token").read_text().strip()
    r = admin(sluice, {"Authorization": f"Bearer {token}"}, "selec nope")
    assert r.status_code == 400
    assert "syntax" in r.json()["error"].lower()

    cases = {
        "selec nope": "syntax",
        "select missing_column from web.loaded": "missing_column",
        "select * from web.no_such_table": "no_such_table",
    }

    def check(fmt: str) -> None:
        for sql, word in cases.items():
            res = sluice.cli("query", sql, "--format", fmt, check=False)
            assert res.returncode != 0, (sql, res.stdout)
            assert res.stdout == ""
            assert word in res.stderr.lower(), res.stderr
            assert "Traceback" not in res.stderr, res.stderr

    check("table")
    check("json")
    sluice.stop()
    check("csv")


def test_query_without_any_warehouse_is_a_clear_error(tmp_path: Path) -> None:
    never_started = Sluice(tmp_path / "fresh")
    res = never_started.cli("query", "select 1", check=False)
    assert res.returncode != 0
    assert "warehouse" in res.stderr.lower() and "Traceback" not in res.stderr


def test_hugeint_results_are_the_same_running_or_stopped(sluice: Sluice) -> None:
    sql = "select 9223372036854775807::HUGEINT * 4 as big"
    running = sluice.cli("query", sql, "--format", "csv", check=False)
    sluice.stop()
    stopped = sluice.cli("query", sql, "--format", "csv", check=False)
    assert stopped.stdout == "big\n36893488147419103228\n"
    assert (running.returncode, running.stdout) == (0, stopped.stdout), running.stderr[-300:]


def test_nan_and_infinity_are_the_same_running_or_stopped(sluice: Sluice) -> None:
    sql = "select 'nan'::double as n, 'inf'::double as i, ln(0) as neg"
    running = {fmt: sluice.cli("query", sql, "--format", fmt).stdout for fmt in ("table", "csv")}
    sluice.stop()
    stopped = {fmt: sluice.cli("query", sql, "--format", fmt).stdout for fmt in ("table", "csv")}
    assert stopped["csv"] == "n,i,neg\nnan,inf,-inf\n"
    assert running == stopped
