"""Records benchmark: cost of submit() on the hot path, and write throughput per backend.

    .venv/bin/python bench/bench_records.py [--n 20000] [--redis]

--redis starts a throw-away redis-server on a free loopback port (needs redis-server).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sipguard.clock import ManualClock  # noqa: E402
from sipguard.records.record import TracebackConfig  # noqa: E402
from sipguard.records.writer import open_records  # noqa: E402
from tests.records_fixtures import BASE_TIME, make_record  # noqa: E402


async def run(store: str, n: int, folder: str) -> tuple[float, float]:
    cfg = TracebackConfig(path=f"{folder}/tb-{store[:5]}.db", spool=f"{folder}/spool")
    records = [make_record(i % 3600, call_id=f"c{i}") for i in range(n)]
    w = open_records(store, cfg, clock=ManualClock(BASE_TIME + 3600))
    await w.start()
    submit = w.submit
    t0 = time.perf_counter()
    for r in records:
        submit(r)
    t_submit = time.perf_counter() - t0
    t1 = time.perf_counter()
    await w.aclose()                  # drains everything to the backend
    t_write = time.perf_counter() - t1
    assert w.counters.written + w.counters.flushed == n, w.counters
    return t_submit / n * 1e6, n / t_write


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--redis", action="store_true")
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="sg-bench-")
    stores = ["memory"]
    proc = None
    if args.redis:
        from tests.redis_fixtures import start_redis

        proc = start_redis()
        stores.append(proc.url)
    try:
        for store in stores:
            us, rate = asyncio.run(run(store, args.n, folder))
            name = "sqlite" if store == "memory" else "redis"
            print(f"{name:7s} n={args.n}: submit() {us:.2f} us/record; write {rate:,.0f} records/s")
    finally:
        if proc is not None:
            proc.stop()


if __name__ == "__main__":
    main()
