"""Records in PostgreSQL: sustained insert rate through the service's own writer, the driver
choice, and a traceback look-up (one caller, a 5-minute window) over many generated rows.

    .venv/bin/python bench/bench_records_pg.py insert [--n 200000] [--writers 2] [--batch 500]
    .venv/bin/python bench/bench_records_pg.py drivers [--n 50000]
    .venv/bin/python bench/bench_records_pg.py lookup [--rows 10000000] [--days 1] [--callers 2000000]
    .venv/bin/python bench/bench_records_pg.py partitions [--days 549]
    .venv/bin/python bench/bench_records_pg.py score [--rate 1000] [--window 3600] [--writers 2]

Each run makes its own database (sg_bench_<random>) on --url's server (default the local one,
127.0.0.1:5432, user postgres) and drops it at the end. ``insert``: --writers processes, each
a RecordWriter with the PostgreSQL sink (batch = traceback.batch), submit records as fast as
they can and drain; records/s counts from the first submit to the last row committed.
``drivers``: one 500-row batch at a time into the records table, asyncpg and psycopg 3, with
a multi-row INSERT from arrays and with COPY into a staging table + INSERT ... SELECT (both
ON CONFLICT DO NOTHING). ``lookup``: rows generated on the server (generate_series), spread
over --days day partitions, then look-ups through the query path (PostgresRecords.find) for
random callers in 5-minute windows; prints the latency spread, the plan and the depth of
the caller index (pageinspect) to extrapolate from. ``partitions``: --days empty day
partitions (18 months' worth), then look-ups on fresh connections, as the CLI makes them:
what the number of partitions alone costs a query (planning, pruning, catalog).
``score``: one trunk score refresh (records/upstreams.py ScoreRefresher) over ``--window``
seconds of records at ``--rate`` calls/s, written through the service's writer with the
minute roll-ups on from the window's start: the GROUP BY over every record of the window
(``measure_rows``, before session 16) against ``trunk_rows`` (the roll-ups and the two
partial minutes of a window in seconds) and ``trunk_minutes`` (the window's whole minutes, what
the refresh reads since session 17), a minute of records later. The server backend's CPU (/proc/PID/stat, parallel workers off so that one
process does it all); per call: one refresh a worker (--writers) each minute over 60 x rate calls.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sipguard.records import postgres  # noqa: E402
from sipguard.records.postgres import PostgresRecords  # noqa: E402
from sipguard.records.record import TracebackConfig, to_row  # noqa: E402
from sipguard.records.writer import open_records  # noqa: E402
from tests.records_fixtures import make_record  # noqa: E402

DAY = 86400


async def _admin(url: str, sql: str) -> None:
    conn = await postgres.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def make_db(server: str) -> str:
    name = f"sg_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(f"{server}/postgres", f"CREATE DATABASE {name}"))
    return f"{server}/{name}"


def drop_db(server: str, url: str) -> None:
    asyncio.run(_admin(f"{server}/postgres", f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)"))


# -- score --------------------------------------------------------------------------------
def score(server: str, rate: int, window: int, workers: int) -> None:
    from sipguard.records.measures import fold
    from sipguard.records.upstreams import whole_minutes

    url = make_db(server)
    rnd = random.Random(1)
    trunks = [f"carrier-{k}" for k in range(8)]

    def records(start: float, count: int) -> list[Any]:
        return [make_record(0, time=start + i / rate, call_id=f"{rnd.getrandbits(64):016x}@10.0.0.1",
                            caller=f"1202{rnd.randrange(100000):07d}", trunk=rnd.choice(trunks),
                            attest=rnd.choice(("A", "B", "C", None)), caller_check=rnd.choice(("valid", "dno")),
                            verstat=rnd.choice(("TN-Validation-Passed", "No-TN-Validation")), trunk_rmd="listed",
                            trunk_implementation="complete") for i in range(count)]

    async def go() -> None:
        pg = PostgresRecords(url, 30000)
        conn = await pg._connection()
        now = time.time()
        await conn.execute(f"UPDATE {postgres.MINUTES_SINCE} SET since = $1", postgres.utc(now - window - 60))
        t0, seq = time.monotonic(), 0
        for first in range(0, rate * window, 5000):
            await pg.write([("p", seq + k, r) for k, r in enumerate(records(now - window + first / rate, 5000))], now)
            seq += 5000
        await conn.execute("VACUUM ANALYZE")
        print(f"score: {seq:,} records over {window} s written in {time.monotonic() - t0:.0f} s")
        await conn.execute("SET max_parallel_workers_per_gather = 0")
        backend = await conn.fetchval("SELECT pg_backend_pid()")

        def cpu() -> float:
            fields = open(f"/proc/{backend}/stat").read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        await pg.write([("p", seq + k, r) for k, r in enumerate(records(now, rate * 60))], now + 60)
        later = now + 60
        c0 = cpu()
        old = await pg.measure_rows("trunks", later - window, later)
        c1 = cpu()
        new = await pg.trunk_rows(later - window, later)
        c2 = cpu()
        assert fold(old) == fold(new)
        first, last = whole_minutes(later - window, later)   # the refresh since session 17
        whole = await pg.trunk_minutes(first, last)
        c3 = cpu()
        reference = await pg.measure_rows("trunks", first * 60.0, last * 60.0 - 1e-6)
        assert fold(whole) == fold(reference)
        per_call = workers / (60 * rate) * 1e6
        print(f"score rate={rate} window={window} s workers={workers}: backend CPU a refresh, GROUP BY over the"
              f" window {c1 - c0:.2f} s ({(c1 - c0) * per_call:.0f} us/call); minute roll-ups {c2 - c1:.3f} s"
              f" ({(c2 - c1) * per_call:.1f} us/call) with the two partial minutes (trunk_rows), {c3 - c2:.3f} s"
              f" ({(c3 - c2) * per_call:.2f} us/call) in whole minutes (trunk_minutes, the refresh)")
        await pg.aclose()

    try:
        asyncio.run(go())
    finally:
        drop_db(server, url)


# -- insert -------------------------------------------------------------------------------
def _writer_process(url: str, n: int, batch: int, folder: str, start_at: float, out: Any) -> None:
    async def go() -> None:
        cfg = TracebackConfig(path=f"{folder}/tb.db", spool=f"{folder}/spool-{os.getpid()}", batch=batch,
                              queue=max(10000, n), store=url)
        now = time.time()
        records = [make_record(0, time=now + i / 1000, call_id=f"c{os.getpid()}-{i}",
                               caller=f"1202{random.randrange(10**7):07d}") for i in range(n)]
        writer = open_records("memory", cfg)
        await writer.start()
        while time.time() < start_at:
            await asyncio.sleep(0.005)
        t0 = time.perf_counter()
        step = 2000                    # submit in bursts, letting the writer task run between them
        for i in range(0, n, step):
            for r in records[i:i + step]:
                writer.submit(r)
            await asyncio.sleep(0)
        await writer.aclose()
        out.put((time.perf_counter() - t0, writer.counters.written + writer.counters.flushed, writer.counters.spooled))

    asyncio.run(go())


def bench_insert(server: str, n: int, writers: int, batch: int) -> None:
    url = make_db(server)
    try:
        asyncio.run(_migrate(url))
        folder = tempfile.mkdtemp(prefix="sg-bench-pg-")
        out: Any = multiprocessing.Queue()
        start_at = time.time() + 3.0
        procs = [multiprocessing.Process(target=_writer_process, args=(url, n, batch, folder, start_at, out))
                 for _ in range(writers)]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        seconds = max(r[0] for r in results)
        written = sum(r[1] for r in results)
        spooled = sum(r[2] for r in results)
        count = asyncio.run(_count(url))
        print(f"insert: {writers} writer(s) x {n:,} records, batch {batch}: {written:,} written "
              f"({spooled} spooled), {count:,} rows in the table, {seconds:.2f} s -> "
              f"{written / seconds:,.0f} records/s")
    finally:
        drop_db(server, url)


async def _migrate(url: str) -> None:
    db = PostgresRecords(url, 548)
    try:
        await db.open(time.time())
    finally:
        await db.aclose()


async def _count(url: str) -> int:
    db = PostgresRecords(url, 548)
    try:
        return await db.count()
    finally:
        await db.aclose()


# -- drivers ------------------------------------------------------------------------------
COLS = "at, call_id, caller, callee, trunk, spc, action, attest, writer, seq, data"
ARRAYS = f"""
INSERT INTO {postgres.TABLE} ({COLS})
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[])
ON CONFLICT DO NOTHING
"""


def _batch(base: int, size: int) -> list[tuple[Any, ...]]:
    now = time.time()
    rows = []
    for i in range(base, base + size):
        r = make_record(0, time=now, call_id=f"c{i}", caller=f"1202{random.randrange(10**7):07d}")
        rows.append((postgres.utc(r.time), r.call_id, r.caller, r.callee, r.trunk, r.spc, r.action, r.attest,
                     "w", i, to_row(r)))
    return rows


async def _drivers(url: str, n: int) -> None:
    import asyncpg
    import psycopg

    size = 500
    batches = {b: _batch(b, size) for b in range(0, n, size)}     # made before the clock runs

    async def fresh() -> None:
        conn = await postgres.connect(url)
        try:
            await conn.execute(f"TRUNCATE {postgres.TABLE}")
        finally:
            await conn.close()

    async def apg_arrays() -> None:
        conn = await asyncpg.connect(url)
        for b in range(0, n, size):
            await conn.execute(ARRAYS, *zip(*batches[b], strict=True))
        await conn.close()

    async def apg_copy() -> None:
        conn = await asyncpg.connect(url)
        for b in range(0, n, size):
            async with conn.transaction():
                await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage (LIKE {postgres.TABLE})"
                                   " ON COMMIT DELETE ROWS")
                await conn.copy_records_to_table("stage", records=batches[b], columns=COLS.split(", "))
                await conn.execute(f"INSERT INTO {postgres.TABLE} SELECT * FROM stage ON CONFLICT DO NOTHING")
        await conn.close()

    async def pg3_copy() -> None:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        for b in range(0, n, size):
            async with conn.transaction():
                await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage (LIKE {postgres.TABLE})"
                                   " ON COMMIT DELETE ROWS")
                async with conn.cursor().copy(f"COPY stage ({COLS}) FROM STDIN") as copy:
                    for row in batches[b]:
                        await copy.write_row(row)
                await conn.execute(f"INSERT INTO {postgres.TABLE} SELECT * FROM stage ON CONFLICT DO NOTHING")
        await conn.close()

    async def pg3_arrays() -> None:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        sql = ARRAYS
        for k in range(11, 0, -1):
            sql = sql.replace(f"${k}", "%s")
        for b in range(0, n, size):
            await conn.execute(sql, [list(c) for c in zip(*batches[b], strict=True)])
        await conn.close()

    for rnd in range(2):
        for name, fn in (("asyncpg INSERT ... unnest(arrays)", apg_arrays),
                         ("asyncpg COPY to staging + INSERT SELECT", apg_copy),
                         ("psycopg 3 COPY to staging + INSERT SELECT", pg3_copy),
                         ("psycopg 3 INSERT ... unnest(arrays)", pg3_arrays)):
            await fresh()
            cpu0, t0 = time.process_time(), time.perf_counter()
            await fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            print(f"round {rnd + 1}: {name:42s} {n / wall:9,.0f} records/s, client CPU {cpu / n * 1e6:5.1f} us/record")


def bench_drivers(server: str, n: int) -> None:
    url = make_db(server)
    try:
        asyncio.run(_migrate(url))
        asyncio.run(_drivers(url, n))
    finally:
        drop_db(server, url)


# -- lookup -------------------------------------------------------------------------------
async def _generate(url: str, rows: int, days: int, callers: int, day0: float) -> None:
    conn = await postgres.connect(url)
    try:
        await conn.execute("SET statement_timeout = 0")
        db_days = [postgres.day_of(day0 + d * DAY) for d in range(days)]
        await postgres.ensure_partitions(conn, db_days)
        per_day = rows // days
        chunk = 1_000_000
        data = to_row(make_record(0))     # a real record's size and decoding cost
        for d in range(days):
            for start in range(0, per_day, chunk):
                count = min(chunk, per_day - start)
                t0 = time.perf_counter()
                # caller: one of --callers numbers; time: spread evenly over the day; writer/seq unique
                await conn.execute(
                    f"INSERT INTO {postgres.TABLE} ({COLS}) SELECT"
                    " to_timestamp($1::float8 + (g::float8 * 86400 / $2::int)),"
                    " 'gen-' || g || '@198.51.100.7',"
                    " (12020000000 + ((g::bigint * 2654435761) % $3::int))::text,"
                    " (13120000000 + ((g::bigint * 40503) % 9000000))::text,"
                    " 'carrier-' || (g % 40), NULL, CASE WHEN g % 50 = 0 THEN 'reject' ELSE 'forward' END,"
                    " (ARRAY['A','B','C',NULL])[1 + g % 4], 'gen-' || $4::int, g, $5"
                    " FROM generate_series($6::bigint, $7::bigint) g",
                    day0 + d * DAY, per_day, callers, d, data, start, start + count - 1, timeout=3600)
                print(f"  day {d}: {start + count:,} / {per_day:,} rows ({count / (time.perf_counter() - t0):,.0f}"
                      " rows/s)", flush=True)
        await conn.execute(f"ANALYZE {postgres.TABLE}", timeout=3600)
    finally:
        await conn.close()


async def _lookups(url: str, days: int, callers: int, day0: float, n: int) -> None:
    db = PostgresRecords(url, 36500, writer=False)
    rng = random.Random(7)
    times: list[float] = []
    hits = 0
    try:
        for i in range(n + 20):
            caller = str(12020000000 + rng.randrange(callers))
            at = day0 + rng.uniform(300, days * DAY - 300)
            t0 = time.perf_counter()
            found = await db.find(at - 300, at + 300, None, caller, None, 1000)
            if i >= 20:                               # the first ones warm the connection and cache
                times.append(time.perf_counter() - t0)
                hits += len(found)
        times.sort()
        print(f"lookup: {n} callers, +-5 min windows: p50 {statistics.median(times) * 1e3:.2f} ms, "
              f"p99 {times[int(len(times) * 0.99) - 1] * 1e3:.2f} ms, max {times[-1] * 1e3:.2f} ms; "
              f"{hits} records found")
    finally:
        await db.aclose()
    conn = await postgres.connect(url)
    try:
        caller = str(12020000000 + rng.randrange(callers))
        at = postgres.utc(day0 + DAY / 2)
        plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) SELECT data FROM {postgres.TABLE} WHERE caller = $1"
                                " AND at >= $2 AND at <= $3 ORDER BY at, writer, seq LIMIT 1000", caller,
                                at, at + __import__("datetime").timedelta(minutes=10))
        print("plan:\n  " + "\n  ".join(r[0] for r in plan))
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        parts = sorted((await postgres.partitions(conn)).values())
        for part in parts[:2]:
            for index in await conn.fetch("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid ="
                                          " $1::regclass", part):
                level = await conn.fetchval("SELECT level FROM bt_metap($1)", index[0]) if "brin" not in \
                    await conn.fetchval("SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam"
                                        " WHERE c.oid = $1::regclass", index[0]) else None
                size = await conn.fetchval("SELECT pg_size_pretty(pg_relation_size($1::regclass))", index[0])
                print(f"  index {index[0]}: {size}" + (f", B-tree depth {level + 1}" if level is not None else ""))
        total = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        print(f"database size: {total}")
    finally:
        await conn.close()


def bench_lookup(server: str, rows: int, days: int, callers: int, n: int) -> None:
    url = make_db(server)
    day0 = float(int(time.time() // DAY) * DAY - days * DAY)
    try:
        asyncio.run(_migrate(url))
        t0 = time.perf_counter()
        asyncio.run(_generate(url, rows, days, callers, day0))
        print(f"generated {rows:,} rows over {days} day partition(s) in {time.perf_counter() - t0:.0f} s")
        asyncio.run(_lookups(url, days, callers, day0, n))
    finally:
        drop_db(server, url)


# -- partitions -----------------------------------------------------------------------------
async def _partitions(url: str, days: int) -> None:
    import datetime

    conn = await postgres.connect(url)
    try:
        today = postgres.day_of(time.time())
        t0 = time.perf_counter()
        await postgres.ensure_partitions(conn, [today - datetime.timedelta(days=n) for n in range(days)])
        print(f"{days} day partitions created in {time.perf_counter() - t0:.1f} s")
        await conn.execute(f"ANALYZE {postgres.TABLE}")
    finally:
        await conn.close()
    for i in range(5):
        db = PostgresRecords(url, days, writer=False)
        t1 = time.perf_counter()
        await db._connection()          # connect + schema check
        t2 = time.perf_counter()
        at = time.time() - DAY * (i + 1)
        await db.find(at, at + 600, None, "12025550123", None, 1000)
        t3 = time.perf_counter()
        await db.find(at - DAY * 8, at - DAY * 8 + 600, None, "12025550123", None, 1000)
        t4 = time.perf_counter()
        await db.aclose()
        print(f"fresh connection: connect {1e3 * (t2 - t1):.1f} ms, first look-up {1e3 * (t3 - t2):.1f} ms, "
              f"second {1e3 * (t4 - t3):.2f} ms")


def bench_partitions(server: str, days: int) -> None:
    url = make_db(server)
    try:
        asyncio.run(_migrate(url))
        asyncio.run(_partitions(url, days))
    finally:
        drop_db(server, url)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("insert", "drivers", "lookup", "partitions", "score"))
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--window", type=int, default=3600)
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432", help="server, without a database")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=None, help="lookup: 1; partitions: 549")
    ap.add_argument("--callers", type=int, default=2_000_000)
    ap.add_argument("--lookups", type=int, default=500)
    args = ap.parse_args()
    if args.what == "insert":
        bench_insert(args.url, args.n or 200_000, args.writers, args.batch)
    elif args.what == "drivers":
        bench_drivers(args.url, args.n or 50_000)
    elif args.what == "partitions":
        bench_partitions(args.url, args.days or 549)
    elif args.what == "score":
        score(args.url, args.rate, args.window, args.writers)
    else:
        bench_lookup(args.url, args.rows, args.days or 1, args.callers, args.lookups)


if __name__ == "__main__":
    main()
