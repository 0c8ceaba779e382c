"""Store benchmarks: lookup cost (memory vs Redis), RMD import rows/s, DNO import.

    .venv/bin/python bench/bench_store.py [--rows 100000] [--dno 2000000] [--lookups 5000]

Starts its own redis-server on a free loopback port (killed at the end). Prints the figures;
copy them into bench/RESULTS.md, section "Store".
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from sipguard.store import open_store  # noqa: E402
from sipguard.store.base import LimitSpec, LookupKeys, Store  # noqa: E402
from sipguard.store.datasets import parse_dno, parse_rmd, read_text  # noqa: E402
from tests.redis_fixtures import start_redis  # noqa: E402

HEADER = ["number", "frn", "business_name", "business_address", "foreign_voice_provider", "country",
          "other_frns", "implementation", "voice_service_provider_choice", "gateway_provider_choice",
          "intermediate_provider_choice", "last_updated"]
IMPL = ["Complete STIR/SHAKEN Implementation",
        "Partial STIR/SHAKEN Implementation - Performing Robocall Mitigation",
        "No STIR/SHAKEN Implementation - Performing Robocall Mitigation"]
LIMITS = (LimitSpec("per_caller", ("caller",), 10 / 60, 5), LimitSpec("per_trunk", ("trunk",), 5000.0, 5000))


def make_rmd(rows: int) -> str:
    rng = random.Random(7)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HEADER)
    for n in range(rows):
        other = ";".join(f"{rng.randrange(10**9):010d}" for _ in range(rng.choice((0, 0, 1, 2))))
        w.writerow([f"RMD{n:07d}", f"'{n + 10**8:010d}", f"Provider {n} LLC", "1 Main St\nSuite 4",
                    rng.choice(("Yes", "No")), "United States", other or "None", rng.choice(IMPL),
                    "Yes", "No", "No", "2025-06-01"])
    return buf.getvalue()


def make_dno(entries: int) -> str:
    rng = random.Random(8)
    return "# generated\n" + "\n".join(f"+1{rng.randrange(200, 999)}{rng.randrange(200, 999)}"
                                       f"{rng.randrange(10000):04d}" for _ in range(entries)) + "\n"


async def lookups(store: Store, count: int, concurrency: int) -> tuple[float, float, float]:
    """(mean µs per lookup one at a time, lookups/s with `concurrency` tasks in flight, and this
    process's CPU µs per lookup in that concurrent run: the figure that load does not distort)."""
    keys = [LookupKeys("t1", None, f"RMD{n:07d}", "192.0.2.1", f"+1202555{n % 10000:04d}", "+13035550100",
                       "938K") for n in range(count)]
    t0 = time.perf_counter()
    for k in keys:
        got = await store.lookup(k, 1.7e9)
        assert not got.degraded
    sequential = (time.perf_counter() - t0) / count * 1e6
    sem = asyncio.Semaphore(concurrency)

    async def one(k: LookupKeys) -> None:
        async with sem:
            assert not (await store.lookup(k, 1.7e9)).degraded

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(k) for k in keys))
    return sequential, count / (time.perf_counter() - t0), (time.process_time() - c0) / count * 1e6


async def bench(url: str, args: argparse.Namespace, rmd_path: str, dno_path: str) -> None:
    t0 = time.perf_counter()
    records, report = parse_rmd(read_text(rmd_path), rmd_path, "2025-06-01")
    parse_s = time.perf_counter() - t0
    store = open_store(url, LIMITS, timeout=1.0, prefix="bench")
    await store.start()
    t0 = time.perf_counter()
    await store.import_rmd(records, "2025-06-01")
    import_s = time.perf_counter() - t0
    name = "memory" if url == "memory" else "redis"
    print(f"[{name}] RMD {report.rows} rows: parse {parse_s:.2f} s ({report.rows / parse_s:,.0f} rows/s), "
          f"store {import_s:.2f} s ({report.rows / import_s:,.0f} rows/s), "
          f"total {report.rows / (parse_s + import_s):,.0f} rows/s")
    t0 = time.perf_counter()
    entries, dno_report = parse_dno(read_text(dno_path), dno_path)
    dno_parse = time.perf_counter() - t0
    t0 = time.perf_counter()
    distinct = await store.import_dno(entries)
    dno_import = time.perf_counter() - t0
    print(f"[{name}] DNO {dno_report.rows:,} lines ({distinct:,} distinct): parse {dno_parse:.2f} s, "
          f"store {dno_import:.2f} s")
    if url != "memory":
        import redis.asyncio as aioredis

        client = aioredis.from_url(url, decode_responses=True)
        gen = await client.hget("bench:{bench}:meta", "dno_gen")
        used = int(await client.memory_usage(f"bench:{{bench}}:dno:{gen!s}", samples=0) or 0)
        rmd_gen = await client.hget("bench:{bench}:meta", "rmd_gen")
        rmd_bytes = 0
        for table in ("id", "frn"):
            rmd_bytes += int(await client.memory_usage(f"bench:{{bench}}:rmd:{rmd_gen!s}:{table}", samples=0) or 0)
        await client.aclose()
        print(f"[{name}] Redis memory: DNO set {used / 2**20:.0f} MiB ({used / distinct:.0f} B/entry), "
              f"RMD hashes {rmd_bytes / 2**20:.1f} MiB")
    seq, conc, cpu = await lookups(store, args.lookups, 50)
    print(f"[{name}] lookup with 2 limiters: {seq:.0f} µs one at a time; {conc:,.0f}/s with 50 in flight "
          f"({cpu:.0f} µs client CPU each)")
    await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dno", type=int, default=2_000_000)
    parser.add_argument("--lookups", type=int, default=5000)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="sg-bench-")
    rmd_path, dno_path = os.path.join(tmp, "rmd.csv"), os.path.join(tmp, "dno.txt")
    with open(rmd_path, "w", encoding="utf-8", newline="") as fh:
        fh.write(make_rmd(args.rows))
    with open(dno_path, "w") as fh:
        fh.write(make_dno(args.dno))
    server = start_redis()
    # the event loop sipguard serves with
    import uvloop
    try:
        uvloop.run(bench("memory", args, rmd_path, dno_path))
        uvloop.run(bench(server.url, args, rmd_path, dno_path))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
