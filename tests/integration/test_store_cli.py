"""The admin commands against a real Redis: rmd, dno, list, notice (and memory's refusals)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
from pathlib import Path

import pytest

from sipguard.errors import SipguardError
from sipguard.store import open_store
from sipguard.store.base import LookupKeys
from tests import redis_fixtures
from tests.redis_fixtures import RedisProcess

redis_server = redis_fixtures.redis_server     # fixture
DATA = Path(__file__).resolve().parents[1] / "data" / "rmd"


def sipguard(*argv: str) -> int:
    """The CLI's dispatch for this issue's commands (the full parser needs every module)."""
    parser = argparse.ArgumentParser(prog="sipguard")
    sub = parser.add_subparsers(dest="command")
    for name in ("rmd", "dno", "lists", "notice"):
        importlib.import_module(f"sipguard.cli.{name}").register(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SipguardError as exc:
        print(f"sipguard {args.command}: {exc}")
        return 1


def lookup(url: str, keys: LookupKeys) -> object:
    async def main() -> object:
        store = open_store(url, (), timeout=2.0)
        await store.start()
        try:
            return await store.lookup(keys, 1_760_000_000.0)   # 2025-10-09, inside the notice window
        finally:
            await store.aclose()
    return asyncio.run(main())


@pytest.mark.integration
def test_admin_commands_against_redis(redis_server: RedisProcess, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "sipguard.yaml"
    config.write_text(f"store: {redis_server.url}\ntraceback: {{retention_days: 7}}\ntrunks:\n  - id: carrier-a\n    role: foreign\n"
                      "    sources: [198.51.100.0/24]\n    provider: {rmd: RMD0000002}\n"
                      "  - id: carrier-b\n    role: foreign\n    sources: [203.0.113.0/24]\n"
                      "    provider: {frn: '0034567890'}\n")
    url = redis_server.url
    assert sipguard("rmd", "import", str(DATA / "messy.csv"), "-c", str(config), "--snapshot", "2025-06-01") == 0
    out = capsys.readouterr().out
    assert "10 row(s) read, 7 imported" in out and "line 10: no RMD number and no FRN" in out
    assert sipguard("rmd", "import", str(DATA / "next.csv"), "-c", str(config), "--snapshot", "2025-07-01",
                    "--removed", str(DATA / "removed.txt")) == 0
    out = capsys.readouterr().out
    assert "line 4: 'not-an-id'" in out and "1 added, 1 changed implementation, 4 newly removed" in out
    assert "upstream trunk carrier-a (RMD0000002) is REMOVED" in out and "carrier-b (" not in out
    # RMD watch: carrier-b stays listed, but its filing's implementation changed
    assert "upstream trunk carrier-b: RMD0000003 (FRN 0034567890) implementation: listed/none -> listed/partial" in out
    assert sipguard("rmd", "show", "RMD0000002", "--store", url) == 0
    assert "RMD0000002: removed" in capsys.readouterr().out
    assert sipguard("rmd", "show", "RMD0009999", "--store", url) == 1
    assert sipguard("rmd", "map-ocn", str(DATA / "ocn_map.csv"), "--store", url) == 0
    assert "OCN map in force: 2 SPC(s)" in capsys.readouterr().out

    dno = tmp_path / "dno.txt"
    dno.write_text("# test list\n+1 (202) 555-0123\n212555\n415 # an NPA\nnonsense\n")
    assert sipguard("dno", "import", str(dno), "--store", url) == 0
    out = capsys.readouterr().out
    assert "line 5: 'nonsense'" in out and "DNO list in force: 3" in out

    assert sipguard("list", "add", "prefix", "+1303", "--block", "--note", "ticket 42", "--store", url) == 0
    assert sipguard("list", "show", "--store", url) == 0
    assert "block prefix 1303  # ticket 42" in capsys.readouterr().out
    assert sipguard("notice", "add", "--ref", "DA-25-694", "--frn", "0012345678",
                    "--start", "2025-08-06T00:00:00Z", "--store", url) == 0
    assert sipguard("notice", "list", "--store", url) == 0
    assert "DA-25-694: frn=0012345678 from 2025-08-06T00:00:00+00:00" in capsys.readouterr().out
    assert sipguard("notice", "add", "--ref", "X", "--store", url) == 1          # no condition

    got = lookup(url, LookupKeys("t1", "0012345678", None, "192.0.2.1", "+12025550123", None, None))
    assert got.caller_dno and got.notice == "DA-25-694" and got.trunk_rmd == "removed"   # type: ignore[attr-defined]
    assert got.rmd_snapshot == "2025-07-01"                                          # type: ignore[attr-defined]
    assert sipguard("list", "remove", "prefix", "1303", "--store", url) == 0
    assert sipguard("list", "remove", "prefix", "1303", "--store", url) == 1
    assert sipguard("notice", "remove", "DA-25-694", "--store", url) == 0


def test_memory_store_only_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "sipguard.yaml"
    config.write_text(f"store: memory\ndatasets:\n  rmd: {DATA / 'messy.csv'}\n")
    assert sipguard("rmd", "import", str(DATA / "messy.csv"), "-c", str(config)) == 0
    out = capsys.readouterr().out
    assert "nothing was written" in out and "7 imported" in out
    assert sipguard("rmd", "show", "0023456789", "-c", str(config)) == 0
    assert "listed, implementation partial" in capsys.readouterr().out
    assert sipguard("rmd", "import", str(DATA / "no_ids.csv"), "-c", str(config)) == 1
    assert "no_ids.csv:1: not an RMD export" in capsys.readouterr().out
    assert sipguard("notice", "list", "-c", str(config)) == 1
    assert sipguard("rmd", "show", "X") == 1                                       # which store?


def test_unreachable_store_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = redis_fixtures.free_port()
    assert sipguard("list", "show", "--store", f"redis://user:secret@127.0.0.1:{port}/0") == 1
    out = capsys.readouterr().out
    assert "cannot reach the store" in out and "secret" not in out
    assert sipguard("list", "show", "--store", "redis+sentinel://h:1") == 1
    assert "service name" in capsys.readouterr().out
