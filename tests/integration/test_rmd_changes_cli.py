"""RMD watch against a real Redis: two imports, the change log kept in the store, listed by
``sipguard rmd changes`` (all, --upstreams, --since, jsonl), and the memory store's refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import redis_fixtures
from tests.integration.test_store_cli import DATA, sipguard
from tests.redis_fixtures import RedisProcess

redis_server = redis_fixtures.redis_server     # fixture
pytestmark = pytest.mark.integration


def test_imports_log_changes_that_rmd_changes_lists(redis_server: RedisProcess, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/11"
    config = tmp_path / "sipguard.yaml"
    config.write_text(f"store: {url}\ntraceback: {{retention_days: 7}}\ntrunks:\n  - id: carrier-a\n    role: foreign\n"
                      "    sources: [198.51.100.0/24]\n    provider: {rmd: RMD0000002}\n")
    import redis
    redis.Redis.from_url(url).flushdb()
    assert sipguard("rmd", "import", str(DATA / "messy.csv"), "-c", str(config), "--snapshot", "2025-06-01") == 0
    assert "changed since" not in capsys.readouterr().out          # a first import changes nothing
    assert sipguard("rmd", "changes", "-c", str(config)) == 0
    assert "0 change(s)" in capsys.readouterr().out
    assert sipguard("rmd", "import", str(DATA / "next.csv"), "-c", str(config), "--snapshot", "2025-07-01",
                    "--removed", str(DATA / "removed.txt")) == 0
    out = capsys.readouterr().out
    assert "6 filing(s) changed since snapshot 2025-06-01" in out
    assert "upstream trunk carrier-a: RMD0000002" in out and "removed" in out

    assert sipguard("rmd", "changes", "-c", str(config)) == 0
    out = capsys.readouterr().out
    assert "6 change(s)" in out and "[trunk carrier-a] RMD0000002" in out
    assert sipguard("rmd", "changes", "-c", str(config), "--upstreams", "--format", "jsonl") == 0
    (line,) = capsys.readouterr().out.splitlines()
    doc = json.loads(line)
    assert doc["trunk"] == "carrier-a" and doc["change"] == "removed" and doc["previous"] == "2025-06-01"
    assert sipguard("rmd", "changes", "-c", str(config), "--since", "2030-01-01T00:00:00Z") == 0
    assert "0 change(s)" in capsys.readouterr().out
    assert sipguard("rmd", "changes", "-c", str(config), "--since", "1h") == 0
    assert "6 change(s)" in capsys.readouterr().out
    assert sipguard("rmd", "changes", "-c", str(config), "--since", "soon") == 1


def test_memory_store_says_where_its_changes_are(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "sipguard.yaml"
    config.write_text("store: memory\ntrunks: []\n")
    assert sipguard("rmd", "changes", "-c", str(config)) == 1
    assert "serving process" in capsys.readouterr().out
