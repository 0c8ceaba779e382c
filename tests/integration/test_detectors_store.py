"""Campaign detectors and threat lists in the store: memory, a real redis-server and a Redis Cluster.

The windowed facts flip after N calls and reset once the window has passed, in every backend;
with Redis they cost no round trip beyond the call's one EVALSHA (counted by the server), their
keys expire with the window, a fanout set never grows past its threshold, and a store that does
not answer gives unknown (null) campaign facts. Threat lists imported into Redis reach every
worker; the CLI refuses a file with too many bad rows.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sipguard.config import Provider, Trunk
from sipguard.detectors import Burst, Detectors, Fanout
from sipguard.store import open_store
from sipguard.store.base import LookupKeys, Lookups, Store
from sipguard.threats import ThreatEntry, parse_threats
from tests import redis_fixtures

redis_server = redis_fixtures.redis_server
redis_cluster = redis_fixtures.redis_cluster

NOW = 1_800_000_000.0
ROOT = str(Path(__file__).resolve().parents[2])   # `python -m sipguard` runs this tree's code
_prefixes = itertools.count()


@pytest.fixture(params=[
    "memory",
    pytest.param("redis", marks=pytest.mark.integration),
    pytest.param("cluster", marks=pytest.mark.integration),
])
def url(request: pytest.FixtureRequest) -> str:
    """Each test here runs on the memory store, standalone Redis and Redis Cluster."""
    if request.param == "memory":
        return "memory"
    return str(request.getfixturevalue("redis_server" if request.param == "redis" else "redis_cluster").url)


def open_with(url: str, detectors: Detectors) -> Store:
    return open_store(url, (), timeout=2.0, prefix=f"d{next(_prefixes)}x{int(time.time() * 1000)}",
                      detectors=detectors)


def call(caller: str | None = "+12125550100", callee: str | None = "+13035550100") -> LookupKeys:
    return LookupKeys("t1", None, None, "192.0.2.1", caller, callee, None)


async def calls(store: Store, pairs: Sequence[tuple[str, str]], now: float = NOW) -> list[Lookups]:
    return [await store.lookup(call(a, b), now + i * 0.001) for i, (a, b) in enumerate(pairs)]


def test_fanout_flips_after_n_callees_and_resets_after_the_window(url: str) -> None:
    async def main() -> None:
        store = open_with(url, Detectors(fanout=Fanout(1.0, 4)))
        await store.start()
        try:
            got = await calls(store, [("+12125550100", f"+1303555010{i}") for i in range(6)])
            assert [g.campaign_fanout for g in got] == [False, False, False, True, True, True]
            assert all(g.campaign_burst is None for g in got)                   # burst is off
            other = await store.lookup(call("+12125550199", "+13035550100"), NOW)
            assert other.campaign_fanout is False                               # per caller
            await asyncio.sleep(1.2)              # Redis: the key's TTL; memory: the call's clock
            again = await store.lookup(call("+12125550100", "+13035550109"), NOW + 1.2)
            assert again.campaign_fanout is False
        finally:
            await store.aclose()
    asyncio.run(main())


def test_burst_flips_per_prefix_and_resets_after_the_window(url: str) -> None:
    async def main() -> None:
        store = open_with(url, Detectors(burst=Burst(1.0, 3, 7)))
        await store.start()
        try:
            got = await calls(store, [(f"+121255501{i:02d}", "+13035550100") for i in range(4)])
            assert [g.campaign_burst for g in got] == [False, False, True, True]
            assert all(g.campaign_fanout is None for g in got)
            assert (await store.lookup(call("+12135550100"), NOW)).campaign_burst is False
            await asyncio.sleep(1.2)
            assert (await store.lookup(call("+12125550100"), NOW + 1.2)).campaign_burst is False
        finally:
            await store.aclose()
    asyncio.run(main())


def test_both_detectors_and_calls_without_numbers(url: str) -> None:
    async def main() -> None:
        store = open_with(url, Detectors(Fanout(60.0, 2), Burst(60.0, 2, 4)))
        await store.start()
        try:
            got = await store.lookup(call(None, None), NOW)
            assert (got.campaign_fanout, got.campaign_burst) == (False, False)
            got = await store.lookup(call("+12125550100", None), NOW)             # burst counts, fanout not
            assert (got.campaign_fanout, got.campaign_burst) == (False, False)
            got = await store.lookup(call("+12125550100", "+13035550100"), NOW)
            assert (got.campaign_fanout, got.campaign_burst) == (False, True)
            got = await store.lookup(call("+12125550100", "+13035550101"), NOW)
            assert (got.campaign_fanout, got.campaign_burst) == (True, True)
        finally:
            await store.aclose()
    asyncio.run(main())


def test_detectors_limiter_and_passport_replay_in_one_lookup(url: str) -> None:
    """Every optional block of the one lookup at once (lookup.lua: limiter, detector and
    seen-set keys in that order, each answered in its own reply slot): the facts are those
    each block gives alone, on every backend."""
    from dataclasses import replace

    from sipguard.store.base import LimitSpec
    from sipguard.store.replay import call_key

    async def main() -> None:
        store = open_store(url, (LimitSpec("per-caller", ("caller",), 1 / 60, 2),), timeout=2.0,
                           prefix=f"d{next(_prefixes)}x{int(time.time() * 1000)}",
                           detectors=Detectors(Fanout(60.0, 2), Burst(60.0, 3, 7)))
        await store.start()
        try:
            got = []
            for i, call_id in enumerate(("c1", "c2", "c3")):
                keys = replace(call("+12125550100", f"+1303555010{i}"), passport="ab" * 16,
                               passport_call=call_key(call_id), passport_ttl=61.0)
                got.append(await store.lookup(keys, NOW + i * 0.001))
            assert [g.degraded for g in got] == [False] * 3
            assert [g.limited for g in got] == [(), (), ("per-caller",)]
            assert [g.campaign_fanout for g in got] == [False, True, True]
            assert [g.campaign_burst for g in got] == [False, False, True]
            assert [g.passport_replayed for g in got] == [False, True, True]
            assert store.counters.passport_replays == 2
        finally:
            await store.aclose()
    asyncio.run(main())


@pytest.mark.integration
def test_detectors_add_no_round_trip_and_their_keys_are_bounded(redis_server: Any) -> None:
    """The server's own count: one EVALSHA per call with both detectors on, nothing else."""
    import redis.asyncio as aioredis

    async def main() -> None:
        prefix = f"rt{int(time.time() * 1000)}"
        store = open_store(redis_server.url, (), timeout=2.0, prefix=prefix,
                           detectors=Detectors(Fanout(300.0, 5), Burst(60.0, 100, 7)))
        await store.start()
        admin = aioredis.from_url(redis_server.url, decode_responses=True)
        await store.lookup(call(), NOW)               # any first-call work (threat list check) done
        await asyncio.sleep(0.05)
        await admin.config_resetstat()
        try:
            for i in range(50):
                await store.lookup(call("+12125550100", f"+130355501{i:02d}"), NOW)
            stats = await admin.info("commandstats")
            counted = {k: v["calls"] for k, v in stats.items() if k.startswith("cmdstat_")}
            assert counted.get("cmdstat_evalsha") == 50, counted
            # the server counts the script's own commands too: each once per call, none besides
            script_commands = {"hmget", "hget", "hgetall", "smismember", "time", "get", "set", "scard", "sadd",
                               "incr", "pexpire"}
            extra = set(counted) - {f"cmdstat_{c}" for c in script_commands} - {
                "cmdstat_evalsha", "cmdstat_info", "cmdstat_config|resetstat"}
            assert not extra, counted
            assert counted["cmdstat_incr"] == 50 and counted["cmdstat_scard"] == 50, counted
            # the set stops growing at 5; the windows opened before the count: no TTL re-armed per call
            assert counted["cmdstat_sadd"] == 5 and "cmdstat_pexpire" not in counted, counted
            fanout_key = f"{prefix}:c:{{f:12125550100}}"
            assert await admin.scard(fanout_key) == 5                   # never past the threshold
            assert await admin.object("encoding", fanout_key) == "intset"
            assert 0 < await admin.pttl(fanout_key) <= 300_000
            burst_key = f"{prefix}:c:{{b:1212555}}"
            assert await admin.get(burst_key) == "51"               # with the first call
            assert 0 < await admin.pttl(burst_key) <= 60_000
        finally:
            await admin.aclose()
            await store.aclose()
    asyncio.run(main())


@pytest.mark.integration
def test_redis_down_gives_unknown_campaign_facts() -> None:
    async def main() -> None:
        port = redis_fixtures.free_port()
        store = open_store(f"redis://127.0.0.1:{port}/0", (), timeout=0.05,
                           detectors=Detectors(Fanout(60.0, 2), Burst(60.0, 2, 7)))
        await store.start()
        try:
            got = await store.lookup(call(), NOW)
            assert got.degraded and got.campaign_fanout is None and got.campaign_burst is None
        finally:
            await store.aclose()
    asyncio.run(main())


# -- threat lists -----------------------------------------------------------------------------

THREATS = """\
kind,value,ref,note
name,"Royal Tiger, L.L.C.",DA-24-388,C-CIST designee
frn,34567890,DA-24-388,
spc,938K,,
ip,198.51.100.0/24,ITG-1,
"""


def trunk(**provider: Any) -> Trunk:
    import ipaddress

    sources = provider.pop("sources", ["192.0.2.10/32"])
    return Trunk("t1", "foreign", tuple(ipaddress.ip_network(s) for s in sources), Provider(**provider))


def test_threat_lists_reach_every_worker(url: str) -> None:
    entries, _ = parse_threats(THREATS, "<t>", "c-cist")
    own: list[ThreatEntry] = parse_threats("kind,value\nspc,938K\nspc,777X\n", "<o>", "operator")[0]

    async def main() -> None:
        prefix = f"th{next(_prefixes)}x{int(time.time() * 1000)}"
        admin = open_store(url, (), timeout=2.0, prefix=prefix)
        await admin.start()
        try:
            assert await admin.threats_import(entries, "c-cist") == 4
            assert await admin.threats_import(own, "operator") == 2
            worker = admin if url == "memory" else open_store(url, (), timeout=2.0, prefix=prefix)
            if worker is not admin:
                await worker.start()                  # loads the lists at start
            index = worker.threats
            assert len(index) == 6
            assert index.trunk(trunk(name="ROYAL TIGER LLC")).source == "c-cist"        # type: ignore[union-attr]
            assert index.trunk(trunk(frn="0034567890")).ref == "DA-24-388"             # type: ignore[union-attr]
            assert index.trunk(trunk(sources=["198.51.100.7/32"])).kind == "ip"        # type: ignore[union-attr]
            assert index.trunk(trunk(name="Acme Telecom", frn="0012345678")) is None
            assert index.signer("938k", None).source == "c-cist"        # both name it: c-cist wins  # type: ignore[union-attr]
            assert index.signer("777X", None).source == "operator"                     # type: ignore[union-attr]
            assert index.signer(None, "34567890").kind == "frn"                        # type: ignore[union-attr]
            # a new import of one source replaces only that source's entries
            await admin.threats_import(own[:1], "operator")
            if worker is not admin:
                await worker._refresh_threats()       # type: ignore[attr-defined]  # what lookup schedules
            assert worker.threats.signer("777X", None) is None and len(worker.threats) == 5
            if worker is not admin:
                await worker.aclose()
        finally:
            await admin.aclose()
    asyncio.run(main())


@pytest.mark.integration
def test_cli_imports_into_redis_and_refuses_a_bad_file(redis_server: Any, tmp_path: Path) -> None:
    good = tmp_path / "c-cist.csv"
    good.write_text(THREATS)
    bad = tmp_path / "bad.csv"
    bad.write_text("kind,value\n" + "".join(f"frn,{i}\n" for i in range(20)) + "spc,toolong\nfrn,x\nip,999.1.1.1\n"
                   "name,\nkind?,1\nspc,1\n")
    store = f"redis://127.0.0.1:{redis_server.port}/4"
    cmd = [sys.executable, "-m", "sipguard", "threats"]
    run = subprocess.run([*cmd, "import", str(good), "--source", "c-cist", "--store", store],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "c-cist threat list in force: 4 entries" in run.stdout
    run = subprocess.run([*cmd, "import", str(bad), "--source", "c-cist", "--store", store],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 1
    assert "6 of 26 rows are invalid" in run.stderr and "kept" in run.stderr, run.stderr
    show = subprocess.run([*cmd, "show", "--store", store], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert show.returncode == 0 and "4 entries" in show.stdout and "royal tiger" in show.stdout, show.stdout


@pytest.mark.integration
def test_a_fanout_campaign_is_rejected_through_redis_end_to_end(redis_server: Any, tmp_path: Path) -> None:
    """The whole decision with the config's Redis store: seven callees from one caller, the
    rule on campaign.fanout rejects from the fifth; a second pipeline (another worker) sharing
    the Redis sees the same window."""
    from sipguard.clock import ManualClock
    from sipguard.pipeline import Pipeline
    from sipguard.sip import parse
    from tests.unit.test_pipeline import invite, make_config

    # a long store_timeout: the Redis answers, and a round trip slowed by a busy test host
    # (50 ms, the default) must not turn a lookup into a degraded answer (a CI flake)
    config = make_config(tmp_path, store=f"redis://127.0.0.1:{redis_server.port}/6", store_timeout=5,
                         traceback={"store": "sqlite", "path": str(tmp_path / "tb.db"), "spool": str(tmp_path / "spool")},
                         analytics={"campaign": {"fanout": {"window": 300, "callees": 5}}})
    (tmp_path / "policy.yaml").write_text(
        "version: 1\nrules:\n  - name: fanout\n    when: {campaign.fanout: true}\n    action: reject\n"
        "    class: analytics\n")
    caller = f"+1212736{int(time.time() * 1000) % 10000:04d}"       # a caller no earlier run used

    async def main() -> list[str]:
        workers = [await Pipeline.create(config, ManualClock(NOW)) for _ in range(2)]
        out = []
        try:
            for i in range(7):
                got = await workers[i % 2].decide(parse(invite(caller, f"+1303623{1001 + i}")),
                                                  ("192.0.2.10", 5060), "udp")
                assert not got.facts.store_degraded
                out.append(f"{got.decision.action}:{got.decision.status or ''}")
        finally:
            for w in workers:
                await w.aclose()
        return out
    assert asyncio.run(main()) == ["forward:"] * 4 + ["reject:603"] * 3
