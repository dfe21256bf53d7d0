"""A data directory written by sluice 0.1 keeps working: its tables are adopted into the stored
schema, get `uuid_ts`, keep their column types; its log adopts a generation; new events load once,
and a replay of the old events (whose log rows carry 0.1's per-process shape hashes) loads nothing twice.

tests/fixtures/datadir-0.1.tar.gz was written by sluice 0.1 itself (see make_datadir_0_1.sh).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import httpx
import orjson
from conftest import Sluice, poll, q

FIXTURE = Path(__file__).parent / "fixtures" / "datadir-0.1.tar.gz"


def test_a_data_dir_written_by_sluice_0_1_keeps_working(tmp_path: Path) -> None:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    server = Sluice(tmp_path / "data")
    server.start()
    try:
        web = orjson.loads(server.cli("sources", "show", "web", "--json").stdout)
        # 0.1's catalog gains the columns added since: any origin, IPs kept, a Segment webhook URL and secret.
        assert (web["allowed_origins"], web["store_ips"]) == ([], True)
        assert "/webhooks/segment/" in web["segment_webhook_url"] and web["segment_shared_secret"]
        # What 0.1 loaded is there, once.
        assert q(server, "select id, total, items from web.order_completed order by id") == [
            {"id": "old-1", "total": 42.5, "items": 2}, {"id": "old-2", "total": None, "items": 3},
        ]
        # Adopted into the stored schema with the types 0.1 created, and given uuid_ts.
        stored = {(r["table_name"], r["column_name"]): r["column_type"] for r in q(
            server, "select table_name, column_name, column_type from _sluice.columns where schema_name = 'web'")}
        assert stored[("order_completed", "total")] == "float"
        assert stored[("order_completed", "paid_at")] == "timestamp"
        assert stored[("identifies", "seats")] == "integer"
        for table in ("tracks", "order_completed", "identifies", "users", "pages", "email_opened", "discards"):
            assert stored[(table, "uuid_ts")] == "timestamp", table
        rows = q(server, "select count(*) as n from web.tracks where uuid_ts = loaded_at")
        assert rows == [{"n": 3}]
        # New events load after the old ones, with the old types.
        batch = {"batch": [
            {"type": "track", "userId": "u4", "event": "Order Completed", "messageId": "new-1",
             "properties": {"total": "x", "items": 1, "gift": True}},
            {"type": "identify", "userId": "u1", "messageId": "new-2", "traits": {"seats": 7}},
        ]}
        r = httpx.post(f"{server.url}/v1/batch", json=batch, auth=(web["write_key"], ""))
        assert r.status_code == 200, r.text
        poll(server, "select id from web.order_completed where id = 'new-1'", 1)
        poll(server, "select id from web.users where seats = 7", 1)
        assert q(server, "select total, gift from web.order_completed where id = 'new-1'") == [
            {"total": None, "gift": True}]
        assert q(server, "select value from web.discards where row_id = 'new-1'") == [{"value": "x"}]
        cursor = q(server, "select seq, log_generation from _sluice.cursors")
        assert len(cursor) == 1 and cursor[0]["seq"] > 5 and cursor[0]["log_generation"]
        # A replay of everything, old log rows included, adds nothing.
        server.cli("replay", "warehouse", "--since", "3650d")
        marker = {"userId": "u9", "event": "After Replay", "messageId": "new-3"}
        assert httpx.post(f"{server.url}/v1/track", json=marker, auth=(web["write_key"], "")).status_code == 200
        poll(server, "select id from web.after_replay", 1)
        poll(server, "select count(*) as n from web.tracks having count(*) = 5", 1)
        assert q(server, "select count(*) as n, count(distinct id) as d from web.tracks") == [{"n": 5, "d": 5}]
        assert q(server, "select count(*) as n from web.order_completed") == [{"n": 3}]
    finally:
        server.stop()
