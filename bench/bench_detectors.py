"""Detectors: what the campaign windows and the spoof/threat facts add per call.

    .venv/bin/python bench/bench_detectors.py [--lookups 20000] [--callers 5000]

Generated traffic: ``--callers`` caller numbers (a few hot ones, most seen a few times), random
callees. For the memory store and a redis-server started here (on a free loopback port, killed
at the end), with the detectors off and on (fanout 300 s / 50 callees, burst 60 s / prefix 7):
µs per lookup one at a time, client CPU µs per lookup with 50 in flight, and Redis's own µs
per EVALSHA (``INFO commandstats``). Then the stateless part: ``spoof_facts`` and the threat
checks of one call (a 1,000-entry list). Prints the figures; bench/RESULTS.md, "Detectors".
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import redis.asyncio as aioredis  # noqa: E402

from sipguard.config import Provider, Trunk  # noqa: E402
from sipguard.detectors import NO_DETECTORS, Burst, Detectors, Fanout, spoof_facts  # noqa: E402
from sipguard.store import open_store  # noqa: E402
from sipguard.store.base import LookupKeys, Store  # noqa: E402
from sipguard.threats import ThreatEntry, ThreatIndex  # noqa: E402
from tests.redis_fixtures import start_redis  # noqa: E402

ON = Detectors(Fanout(300.0, 50), Burst(60.0, 1_000_000, 7))


def traffic(count: int, callers: int) -> list[LookupKeys]:
    rng = random.Random(11)
    numbers = [f"+1{rng.randrange(200, 999)}{rng.randrange(200, 999)}{rng.randrange(10000):04d}"
               for _ in range(callers)]
    out = []
    for _ in range(count):
        caller = numbers[min(int(rng.paretovariate(1.2)) - 1, callers - 1)] if rng.random() < 0.5 \
            else rng.choice(numbers)
        callee = f"+1{rng.randrange(200, 999)}{rng.randrange(200, 999)}{rng.randrange(10000):04d}"
        out.append(LookupKeys("t1", "0012345678", "RMD0001234", "192.0.2.1", caller, callee, "938K"))
    return out


async def measure(store: Store, keys: list[LookupKeys]) -> tuple[float, float]:
    now = 1.8e9
    t0 = time.perf_counter()
    for i, k in enumerate(keys):
        got = await store.lookup(k, now + i * 0.001)
        assert not got.degraded
    sequential = (time.perf_counter() - t0) / len(keys) * 1e6
    sem = asyncio.Semaphore(50)

    async def one(k: LookupKeys) -> None:
        async with sem:
            assert not (await store.lookup(k, now)).degraded

    c0 = time.process_time()
    await asyncio.gather(*(one(k) for k in keys))
    return sequential, (time.process_time() - c0) / len(keys) * 1e6


async def store_figures(url: str, keys: list[LookupKeys]) -> None:
    for name, det in (("off", NO_DETECTORS), ("on", ON), ("off", NO_DETECTORS), ("on", ON)):
        store = open_store(url, (), timeout=2.0, prefix=f"bd{time.time_ns()}", detectors=det)
        await store.start()
        admin = aioredis.from_url(url) if url != "memory" else None
        if admin is not None:
            await admin.config_resetstat()
        seq, cpu = await measure(store, keys)
        server = ""
        if admin is not None:
            stats = await admin.info("commandstats")
            server = f", Redis {stats['cmdstat_evalsha']['usec_per_call']:.1f} µs per EVALSHA"
            await admin.aclose()
        print(f"{url.split('://')[0]:6} detectors {name:3}: {seq:6.1f} µs/lookup one at a time, "
              f"{cpu:6.1f} µs client CPU/lookup at 50 in flight{server}")
        await store.aclose()


def stateless_figures(rounds: int = 200_000) -> None:
    rng = random.Random(3)
    entries = [ThreatEntry("frn", f"{rng.randrange(10**9):010d}", "operator") for _ in range(500)]
    entries += [ThreatEntry("ip", f"10.{i // 256}.{i % 256}.0/24", "operator") for i in range(250)]
    entries += [ThreatEntry("spc", f"{i:04d}", "c-cist") for i in range(250)]
    index = ThreatIndex(entries)
    trunk = Trunk("t1", "foreign", (ipaddress.ip_network("192.0.2.10/32"),), Provider("Carrier A Ltd", "0012345678"))
    t0 = time.perf_counter()
    for _ in range(rounds):
        spoof_facts("12127363100", "13036231000", True, True, "A", True, True, True, False)
    spoof = (time.perf_counter() - t0) / rounds * 1e6
    t0 = time.perf_counter()
    for _ in range(rounds):
        index.trunk(trunk)
        index.signer("938K", "0012345678")
    threat = (time.perf_counter() - t0) / rounds * 1e6
    print(f"spoof_facts: {spoof:.2f} µs/call; threat checks (trunk cached + signer, 1,000 entries): {threat:.2f} µs/call")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lookups", type=int, default=20_000)
    ap.add_argument("--callers", type=int, default=5000)
    args = ap.parse_args()
    keys = traffic(args.lookups, args.callers)
    await store_figures("memory", keys)
    server = start_redis()
    try:
        await store_figures(server.url, keys)
    finally:
        server.stop()
    stateless_figures()


if __name__ == "__main__":
    asyncio.run(main())
