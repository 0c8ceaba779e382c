"""One behaviour, three backends: the memory store, standalone Redis and a 3-node Redis Cluster.

Every test here runs against each backend (the Redis ones start real redis-server processes
through tests/redis_fixtures.py); a difference between backends is a bug.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from sipguard.errors import SipguardError
from sipguard.store import open_store
from sipguard.store.base import LimitSpec, ListEntry, LookupKeys, Notice, OcnMapping, Store
from sipguard.store.datasets import parse_ocn_map, parse_removed, parse_rmd, read_text
from tests import redis_fixtures

redis_server = redis_fixtures.redis_server     # fixtures, shared with other test modules
redis_cluster = redis_fixtures.redis_cluster

DATA = Path(__file__).resolve().parents[1] / "data" / "rmd"
_prefixes = itertools.count()


class Backend:
    def __init__(self, url: str) -> None:
        self.url = url

    @asynccontextmanager
    async def open(self, limits: Sequence[LimitSpec] = ()) -> AsyncIterator[Store]:
        # a fresh key prefix per test: tests share one server without seeing each other's data
        store = open_store(self.url, limits, timeout=2.0, prefix=f"t{next(_prefixes)}x{int(time.time())}")
        await store.start()
        try:
            yield store
        finally:
            await store.aclose()


@pytest.fixture(params=[
    "memory",
    pytest.param("redis", marks=pytest.mark.integration),
    pytest.param("cluster", marks=pytest.mark.integration),
])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend("memory")
    if request.param == "redis":
        return Backend(request.getfixturevalue("redis_server").url)
    return Backend(request.getfixturevalue("redis_cluster").url)


def run(backend: Backend, body: Callable[[Store], Awaitable[Any]], limits: Sequence[LimitSpec] = ()) -> Any:
    async def main() -> Any:
        async with backend.open(limits) as store:
            return await body(store)
    return asyncio.run(main())


def keys(trunk: str | None = "t1", frn: str | None = None, rmd: str | None = None, caller: str | None = None,
         callee: str | None = "+13035550100", spc: str | None = None, source: str = "192.0.2.1") -> LookupKeys:
    return LookupKeys(trunk, frn, rmd, source, caller, callee, spc)


def rmd_file(name: str) -> tuple[list[Any], str]:
    records, _ = parse_rmd(read_text(str(DATA / name)), name)
    return records, name


NOW = 1_750_000_000.0


def test_rmd_lookup_by_number_and_frn(backend: Backend) -> None:
    async def body(st: Store) -> None:
        records, _ = rmd_file("messy.csv")
        report = await st.import_rmd(records, "2025-06-01")
        assert report.imported == 7 and report.by_implementation["complete"] == 2
        assert (report.added, report.removed) == (6, 0)           # the FRN-only filing has no RMD number
        got = await st.lookup(keys(rmd=" rmd0000001"), NOW)                 # config spelling tolerated
        assert (got.trunk_rmd, got.trunk_implementation, got.rmd_snapshot) == ("listed", "complete", "2025-06-01")
        assert (await st.lookup(keys(frn="88888888"), NOW)).trunk_rmd == "listed"       # other_frns, short form
        assert (await st.lookup(keys(frn="0023456789"), NOW)).trunk_implementation == "partial"
        assert (await st.lookup(keys(rmd="RMD0000005"), NOW)).trunk_implementation == "unknown"
        absent = await st.lookup(keys(rmd="RMD0009999", frn="0000000001"), NOW)
        assert (absent.trunk_rmd, absent.trunk_implementation) == ("absent", None)
        assert (await st.lookup(keys(trunk=None), NOW)).trunk_rmd == "absent"
        shown = await st.rmd_show("RMD0000003")
        assert shown is not None and shown["implementation"] == "none"
        shown = await st.rmd_show("0034567890")
        assert shown is not None and shown["rmd"] == "RMD0000003"
        assert await st.rmd_show("RMD0009999") is None
    run(backend, body)


def test_rmd_reimport_marks_missing_removed_and_removed_list_wins(backend: Backend) -> None:
    async def body(st: Store) -> None:
        await st.import_rmd(rmd_file("messy.csv")[0], "2025-06-01")
        removed, _ = parse_removed(read_text(str(DATA / "removed.txt")))
        report = await st.import_rmd(rmd_file("next.csv")[0], "2025-07-01", removed)
        got = {r: await st.lookup(keys(rmd=r), NOW) for r in
               ("RMD0000001", "RMD0000002", "RMD0000003", "RMD0000005", "RMD0000006")}
        assert got["RMD0000002"].trunk_rmd == "removed"          # dropped out of the export
        assert got["RMD0000002"].trunk_implementation == "partial"
        assert got["RMD0000001"].trunk_rmd == "removed"          # removed list by FRN wins over the export
        assert got["RMD0000005"].trunk_rmd == "removed"          # removed list by RMD number
        assert (got["RMD0000003"].trunk_rmd, got["RMD0000003"].trunk_implementation) == ("listed", "partial")
        assert got["RMD0000006"].trunk_rmd == "listed"
        assert got["RMD0000006"].rmd_snapshot == "2025-07-01"
        assert (await st.lookup(keys(frn="0099999999"), NOW)).trunk_rmd == "removed"   # the filing's other FRN
        assert report.removed == 4      # RMD0000002 and RMD12 gone, RMD0000001 and RMD0000005 listed removed
        assert sorted(report.removed_ids) == ["RMD0000001", "RMD0000002", "RMD0000005", "RMD12"]
        assert (report.added, report.changed) == (1, 1)           # RMD0000006; RMD0000003 none -> partial
        again = await st.import_rmd(rmd_file("next.csv")[0], "2025-07-02", removed)
        assert (again.added, again.changed, again.removed) == (0, 0, 0)   # same data: nothing new
    run(backend, body)


def test_signer_through_ocn_map(backend: Backend) -> None:
    async def body(st: Store) -> None:
        await st.import_rmd(rmd_file("messy.csv")[0], "2025-06-01")
        rows, _ = parse_ocn_map(read_text(str(DATA / "ocn_map.csv")))
        assert await st.map_ocn(rows) == 2
        got = await st.lookup(keys(spc="938k"), NOW)
        assert (got.signer_rmd, got.signer_frn) == ("listed", "0012345678")
        got = await st.lookup(keys(spc="123A"), NOW)
        assert (got.signer_rmd, got.signer_frn) == ("listed", "0023456789")
        assert (await st.lookup(keys(spc="ZZZZ"), NOW)).signer_rmd == "absent"
        none = await st.lookup(keys(spc=None), NOW)
        assert (none.signer_rmd, none.signer_frn) == (None, None)
        await st.map_ocn([OcnMapping("938K", "RMD0009999", None)])   # replaces the whole map
        assert (await st.lookup(keys(spc="938K"), NOW)).signer_rmd == "absent"
        assert (await st.lookup(keys(spc="123A"), NOW)).signer_rmd == "absent"
    run(backend, body)


@pytest.mark.parametrize(("caller", "hit"), [
    ("+12025550123", True),     # the full number
    ("+12025551999", True),     # thousands block 202-555-1
    ("+13125550000", True),     # NPA-NXX 312-555
    ("+14155550000", True),     # NPA 415
    ("+12025550124", False),
    ("+442071838750", False),   # not NANP: never matched
    (None, False),
])
def test_dno(backend: Backend, caller: str | None, hit: bool) -> None:
    async def body(st: Store) -> None:
        assert (await st.lookup(keys(caller="+14155550000"), NOW)).caller_dno is False   # nothing loaded
        n = await st.import_dno(["2025550123", "2025551", "312555", "415", "415"])
        assert n == 4
        assert (await st.lookup(keys(caller=caller), NOW)).caller_dno is hit
        await st.import_dno(["9999999999"])    # a new list replaces the old one
        assert (await st.lookup(keys(caller=caller), NOW)).caller_dno is False
    run(backend, body)


def test_lists_block_wins_and_edit(backend: Backend) -> None:
    async def body(st: Store) -> None:
        caller = "+12025550123"
        assert (await st.lookup(keys(caller=caller), NOW)).list is None
        await st.list_add("number", "allow", caller, "our hotline")
        got = await st.lookup(keys(caller=caller), NOW)
        assert (got.list, got.list_entry) == ("allow", "number:12025550123")
        await st.list_add("prefix", "block", "+1202", None)
        got = await st.lookup(keys(caller=caller), NOW)
        assert (got.list, got.list_entry) == ("block", "prefix:1202")      # block wins over a closer allow
        await st.list_add("spc", "block", "938k", "bad signer")
        assert (await st.lookup(keys(caller="+13035550000", spc="938K"), NOW)).list_entry == "spc:938K"
        await st.list_add("trunk", "allow", "t9", None)
        assert (await st.lookup(keys(trunk="t9", caller="+13035550000"), NOW)).list == "allow"
        assert await st.list_remove("prefix", "1202") is True
        assert await st.list_remove("prefix", "1202") is False
        assert (await st.lookup(keys(caller=caller), NOW)).list == "allow"
        shown = await st.list_show()
        assert ListEntry("number", "allow", "12025550123", "our hotline") in shown
        assert [e.kind for e in await st.list_show("spc")] == ["spc"]
        assert await st.list_replace([ListEntry("prefix", "block", "+1303")]) == 1
        assert (await st.lookup(keys(caller=caller), NOW)).list is None
        assert (await st.lookup(keys(caller="+13035550000"), NOW)).list == "block"
        with pytest.raises(SipguardError):
            await st.list_add("color", "block", "red", None)
        with pytest.raises(SipguardError):
            await st.list_add("number", "block", "not a number", None)
    run(backend, body)


def test_notices(backend: Backend) -> None:
    async def body(st: Store) -> None:
        await st.notice_add(Notice("EB-2", caller_prefix="+1202", trunk="t1", start=NOW - 10, end=NOW + 10))
        await st.notice_add(Notice("EB-1", frn="12345678"))
        await st.notice_add(Notice("EB-3", spc="938k", callee="+13035550100"))
        assert (await st.lookup(keys(caller="+12025550123"), NOW)).notice == "EB-2"
        assert (await st.lookup(keys(caller="+12025550123"), NOW + 10)).notice is None     # window over
        assert (await st.lookup(keys(caller="+12025550123", trunk="t2"), NOW)).notice is None
        assert (await st.lookup(keys(caller="+12025550123", frn="0012345678"), NOW)).notice == "EB-1"
        assert (await st.lookup(keys(spc="938K"), NOW)).notice == "EB-3"
        assert (await st.lookup(keys(spc="938K", callee="+13035550101"), NOW)).notice is None
        assert [n.ref for n in await st.notice_list()] == ["EB-1", "EB-2", "EB-3"]
        assert (await st.notice_list())[1].caller_prefix == "1202"
        assert await st.notice_remove("EB-2") is True
        assert await st.notice_remove("EB-2") is False
        assert (await st.lookup(keys(caller="+12025550123"), NOW)).notice is None
        with pytest.raises(SipguardError):
            await st.notice_add(Notice("EB-9"))      # no condition: would block every call
    run(backend, body)


PER_CALLER = LimitSpec("per_caller", ("caller",), 10 / 60, 3)
PER_PAIR = LimitSpec("per_pair", ("trunk", "caller"), 10 / 60, 2)


def test_gcra_burst_then_limited(backend: Backend) -> None:
    async def body(st: Store) -> None:
        a = [await st.lookup(keys(caller="+12025550123"), NOW) for _ in range(4)]
        assert [r.limited for r in a] == [(), (), ("per_pair",), ("per_caller", "per_pair")]
        other = await st.lookup(keys(caller="+12025550199"), NOW)
        assert other.limited == ()                                  # its own bucket
        other_trunk = await st.lookup(keys(trunk="t2", caller="+12025550123"), NOW)
        assert other_trunk.limited == ("per_caller",)               # per_pair keyed by trunk too
        no_caller = [await st.lookup(keys(caller=None), NOW) for _ in range(5)]
        assert all(r.limited == () for r in no_caller)              # limiter does not apply
    run(backend, body, (PER_CALLER, PER_PAIR))


def test_gcra_refills(backend: Backend) -> None:
    fast = LimitSpec("fast", ("source",), 20.0, 1)     # one call per 50 ms

    async def body(st: Store) -> None:
        assert (await st.lookup(keys(), NOW)).limited == ()
        assert (await st.lookup(keys(), NOW)).limited == ("fast",)
        # memory follows the call's `now`; Redis follows its own clock: poll both ways
        deadline = time.monotonic() + 5
        t = NOW
        while True:
            t += 0.01
            if (await st.lookup(keys(), t)).limited == ():
                break
            assert time.monotonic() < deadline, "the bucket never refilled"
            await asyncio.sleep(0.01)
    run(backend, body, (fast,))


def test_per_trunk_cps(backend: Backend) -> None:
    spec = LimitSpec("per_trunk", ("trunk",), 2.0, 2, {"t1": 2.0})

    async def body(st: Store) -> None:
        got = [await st.lookup(keys(trunk="t1"), NOW) for _ in range(3)]
        assert [r.limited for r in got] == [(), (), ("per_trunk",)]
        other = [await st.lookup(keys(trunk="t2"), NOW) for _ in range(5)]     # no cps configured
        assert all(r.limited == () for r in other)
    run(backend, body, (spec,))


def test_cert_cache(backend: Backend) -> None:
    async def body(st: Store) -> None:
        url = "https://certs.example.net/a.pem"
        assert await st.get_cert(url) is None
        await st.put_cert(url, b"-----BEGIN CERTIFICATE-----\nxx\n", time.time() + 60)
        got = await st.get_cert(url)
        assert got is not None and got[0].startswith(b"-----BEGIN") and got[1] > time.time()
        await st.put_cert(url + "x", b"pem", time.time() - 1)
        assert await st.get_cert(url + "x") is None
    run(backend, body)


def test_stats_and_health(backend: Backend) -> None:
    async def body(st: Store) -> None:
        await st.lookup(keys(), NOW)
        assert st.counters.lookups == 1 and st.counters.degraded == 0
        assert st.healthy is True
    run(backend, body)
