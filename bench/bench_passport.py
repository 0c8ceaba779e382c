"""Benchmark: what the PASSporT types cost per call (README, "PASSporT types").

    PYTHONPATH=. .venv/bin/python bench/bench_passport.py [--seconds 4] [--rounds 5] [--lookups 3000]

- the replay check's own work per call in the process: the Call-ID hash, the ttl and the memory
  seen-set (``SeenSet.check``), and ``MemoryStore.lookup`` with and without a PASSporT key;
- Redis: the lookup script's server time (``INFO commandstats``) and the client's mean lookup
  latency, with and without the replay tail (a redis-server on loopback started here);
- ``Verifier.verify`` for a call with one SHAKEN header (what every signed call pays) and for
  shaken + div + rcd (what a retargeted, branded call pays), warm certificate cache, token cache
  off, so every call decodes and checks each signature.

CPU time (``time.process_time``), best of alternating rounds: the 2 cores are shared.
The verifier's before/after on one SHAKEN header is bench_verify.py --baseline REV.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sipguard.shaken.rcd import integrity  # noqa: E402
from sipguard.shaken.verify import Verifier  # noqa: E402
from sipguard.store import open_store  # noqa: E402
from sipguard.store.base import LookupKeys  # noqa: E402
from sipguard.store.memory import MemoryStore  # noqa: E402
from sipguard.store.replay import SeenSet, call_key, replay_ttl  # noqa: E402
from tests.shaken_pki import MapFetcher, StiPki, div_identity, rcd_identity, shaken_identity  # noqa: E402

URL = "https://certs.example.net/good.pem"
A, B, C = "12025550100", "13035550100", "14155550100"


def best(rounds: int, fn: Any) -> float:
    return min(fn() for _ in range(rounds))


def per_call(n: int, body: Any) -> float:
    start = time.process_time()
    body(n)
    return (time.process_time() - start) / n * 1e6


def seen_set_us(n: int) -> float:
    seen = SeenSet()
    keys = [f"{i:032x}" for i in range(n)]
    calls = [f"call-{i}@example.net" for i in range(n)]

    def body(count: int) -> None:
        for i in range(count):
            seen.check(keys[i], call_key(calls[i]), replay_ttl(1_800_000_000, 1_800_000_000.5, 60, 5),
                       1_800_000_000.5 + i / 1000)
    return per_call(n, body)


def memory_lookup_us(n: int, with_key: bool) -> float:
    store = MemoryStore()
    keys = [LookupKeys("t1", None, "RMD0000001", "192.0.2.1", "+12025550123", "+13035550100", "938K",
                       passport=f"{i:032x}" if with_key else None, passport_call=call_key(f"c{i}"),
                       passport_ttl=61.0) for i in range(n)]

    async def run() -> None:
        for i, k in enumerate(keys):
            await store.lookup(k, 1_800_000_000.0 + i / 1000)

    def body(count: int) -> None:
        asyncio.run(run())
    return per_call(n, body)


async def redis_figures(n: int) -> dict[str, float]:
    from tests.redis_fixtures import start_redis

    server = start_redis()
    try:
        store = open_store(server.url, (), timeout=2.0, prefix="bp")
        await store.start()
        client = store._client
        out: dict[str, float] = {}
        for label, with_key in (("plain", False), ("replay", True), ("plain2", False), ("replay2", True)):
            await client.config_resetstat()
            keys = [LookupKeys("t1", None, "RMD0000001", "192.0.2.1", "+12025550123", "+13035550100", "938K",
                               passport=f"{label}{i:028x}" if with_key else None,
                               passport_call=call_key(f"c{i}"), passport_ttl=61.0) for i in range(n)]
            start = time.perf_counter()
            for k in keys:
                await store.lookup(k, 1_800_000_000.0)
            out[f"{label}_latency_us"] = (time.perf_counter() - start) / n * 1e6
            stats = await client.info("commandstats")
            out[f"{label}_server_us"] = float(stats["cmdstat_evalsha"]["usec_per_call"])
        await store.aclose()
        return out
    finally:
        server.stop()


async def verify_rate(v: Verifier, calls: list[list[str]], dest: tuple[str, ...], history: tuple[str, ...] | None,
                      seconds: float) -> float:
    assert (await v.verify(calls[0], (A,), dest, time.time(), history=history)).passed
    n, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for idents in calls[:100]:
            await v.verify(idents, (A,), dest, time.time(), history=history)
        n += min(100, len(calls))
        calls = calls[100:] + calls[:100]
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lookups", type=int, default=3000)
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    now = time.time()
    pki = StiPki(Path(tempfile.mkdtemp(prefix="bench-pki-")), now=now)
    key = pki.key("good")
    jcard = ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Example Bank"]]]
    one = [[shaken_identity(key, URL, orig=A, dest=[B], iat=int(now))] for _ in range(300)]
    three = [[shaken_identity(key, URL, orig=A, dest=[B], iat=int(now)),
              div_identity(key, URL, orig=A, dest=[C], div=B, iat=int(now)),
              rcd_identity(key, URL, orig=A, dest=[B], iat=int(now), rcd={"nam": "Example Bank", "jcd": jcard},
                           rcdi={"/jcd": integrity(jcard)})] for _ in range(100)]
    v = Verifier(pki.config(), MapFetcher({URL: pki.chain_pem("good")}), token_cache_size=0)
    slot = args.seconds / args.rounds / 2
    one_us = three_us = float("inf")
    for _ in range(args.rounds):
        one_us = min(one_us, asyncio.run(verify_rate(v, one, (B,), None, slot)))
        three_us = min(three_us, asyncio.run(verify_rate(v, three, (B, C), (B, C), slot)))
    seen = best(args.rounds, lambda: seen_set_us(20000))
    mem_plain = best(args.rounds, lambda: memory_lookup_us(args.lookups, False))
    mem_key = best(args.rounds, lambda: memory_lookup_us(args.lookups, True))
    print(f"python {sys.version.split()[0]}, best of {args.rounds} rounds, CPU time")
    print(f"Verifier.verify, one SHAKEN header:        {one_us:8.1f} us/call")
    print(f"Verifier.verify, shaken + div + rcd:       {three_us:8.1f} us/call")
    print(f"replay, in process (call hash, ttl, SeenSet.check): {seen:5.2f} us/call")
    print(f"MemoryStore.lookup without / with a PASSporT key:   {mem_plain:5.2f} / {mem_key:5.2f} us/call")
    if not args.no_redis:
        figures = asyncio.run(redis_figures(args.lookups))
        print("Redis lookup (one EVALSHA), wall clock, one at a time: "
              f"without {figures['plain_latency_us']:.0f}/{figures['plain2_latency_us']:.0f} us, "
              f"with the replay tail {figures['replay_latency_us']:.0f}/{figures['replay2_latency_us']:.0f} us")
        print("  script time in Redis (commandstats usec_per_call): "
              f"without {figures['plain_server_us']:.1f}/{figures['plain2_server_us']:.1f} us, "
              f"with {figures['replay_server_us']:.1f}/{figures['replay2_server_us']:.1f} us")


if __name__ == "__main__":
    main()
