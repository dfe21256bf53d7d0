"""`--data-dir` before or after the subcommand, on every command; `sluice sources create|update` with an
origin allow-list, IP storage and a Segment shared secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from test_docs import _command_paths

from sluice.cli import main


@pytest.mark.parametrize("path", _command_paths(main), ids=" ".join)
def test_every_command_takes_data_dir_after_it(path: tuple[str, ...], tmp_path: Path) -> None:
    # --help is eager, but the parser reads every option first: an unknown --data-dir would fail here.
    result = CliRunner().invoke(main, [*path, "--data-dir", str(tmp_path), "--help"])
    assert result.exit_code == 0, result.output


def sluice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice.cli", *args], capture_output=True, text=True, timeout=60)


def test_data_dir_after_the_subcommand_is_the_one_used(tmp_path: Path) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    created = sluice("sources", "create", "http", "--name", "Web", "--schema", "web", "--json", "--data-dir", str(here))
    assert created.returncode == 0, created.stderr
    assert (here / "catalog.db").exists() and not there.exists()
    # After wins over before, as the later flag.
    listed = sluice("--data-dir", str(there), "sources", "list", "--json", "--data-dir", str(here))
    assert [s["schema"] for s in orjson.loads(listed.stdout)] == ["web"]
    query = sluice("query", "select 1", "--data-dir", str(here))  # failed with "No such option" before
    assert query.returncode == 1 and f"no warehouse yet at {here / 'warehouse.duckdb'}" in query.stderr


def test_sources_allowed_origins_ips_and_segment_secret(tmp_path: Path) -> None:
    d = str(tmp_path)
    created = orjson.loads(sluice(
        "sources", "create", "http", "--name", "Shop", "--schema", "shop", "--data-dir", d, "--json",
        "--allowed-origin", "https://Shop.Example.com/", "--allowed-origin", "http://localhost:3000",
    ).stdout)
    assert created["allowed_origins"] == ["https://shop.example.com", "http://localhost:3000"]
    assert created["store_ips"] is True
    assert created["segment_webhook_url"].startswith("http://127.0.0.1:8088/webhooks/segment/")
    assert len(created["segment_shared_secret"]) >= 16

    updated = orjson.loads(sluice("sources", "update", "shop", "--no-store-ips", "--allowed-origin",
                                  "https://www.example.com", "--json", "--data-dir", d).stdout)
    assert updated["allowed_origins"] == ["https://www.example.com"] and updated["store_ips"] is False
    assert updated["write_key"] == created["write_key"]

    bad = sluice("sources", "update", "shop", "--allowed-origin", "www.example.com/shop", "--data-dir", d)
    assert bad.returncode == 1 and "is not an origin" in bad.stderr
    both = sluice("sources", "update", "shop", "--any-origin", "--allowed-origin", "https://a.example", "--data-dir", d)
    assert both.returncode == 1

    shown = sluice("sources", "update", "shop", "--any-origin", "--segment-secret", "typed-into-segment-123",
                   "--data-dir", d).stdout
    assert "origins:     any" in shown and "Segment shared secret: typed-into-segment-123" in shown
    assert "store IPs:   no" in shown
