"""Records benchmark: cost of submit() on the hot path, and write throughput per backend.

    .venv/bin/python bench/bench_records.py [--n 20000] [--redis]
    .venv/bin/python bench/bench_records.py --sqlite-cost [--prefill 100000] [--n 20000] [--batch 200]
    .venv/bin/python bench/bench_records.py --score-cost [--rate 1000] [--window 3600] [--interval 60] [--workers 2]
    .venv/bin/python bench/bench_records.py --score-cost --redis [--rate 1000] [--window 600] [--workers 2]
    .venv/bin/python bench/bench_records.py --series-cost --rate 50 --window 86400
    .venv/bin/python bench/bench_records.py --report-cost --rate 7 --window 604800

--redis starts a throw-away redis-server on a free loopback port (needs redis-server).

--sqlite-cost: what one record costs the SQLite writer thread with the indexes of the file
layout this tree makes, in a file that already holds ``--prefill`` records (the indexes'
pages then no longer fit SQLite's page cache, as in a file that keeps months of calls):
``SqliteRecords.write`` of ``--n`` more in batches of ``--batch`` (the writer's batch at
1,000 calls/s: 0.2 s of calls), thread CPU per record (Python and SQLite), with random
Call-IDs and 10,000 distinct callers and callees. Then the time of a find by Call-ID, by
caller and by callee in a 10-minute window, and of a 10-minute page.

--layouts A,C,...: the same question for table layouts in raw SQL (no sipguard code), each
in a fresh file of ``--prefill`` rows then ``--n`` more in batches of ``--batch``, 32 rows per
INSERT as the writer does; SQLite's thread CPU per record split into the INSERTs and the COMMIT
(checkpoints included), and the keys' computation in Python. Environment: PAGE (page_size),
MMAP_SIZE, CACHE_SIZE, WAL_AUTOCHECKPOINT (PRAGMAs). The layouts (``LAYOUTS``): A as shipped;
B the rowid carries the time (µs x 2048), no time index, text indexes; C as B with integer keys
(Call-ID hashed, numbers as integers); D as C without UNIQUE (writer, seq); E as C with the
Call-ID index alone; F as shipped with integer keys instead of text; N no secondary index but
UNIQUE (writer, seq); Z no index at all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sipguard.clock import ManualClock  # noqa: E402
from sipguard.records.record import TracebackConfig  # noqa: E402
from sipguard.records.writer import open_records  # noqa: E402
from tests.records_fixtures import BASE_TIME, make_record  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sink import insert_rows, timed_transaction  # noqa: E402


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


def sqlite_cost(prefill: int, n: int, batch: int, folder: str) -> None:
    import random

    from sipguard.records.sqlite import SqliteRecords

    rnd = random.Random(1)

    def records(first: int, count: int) -> list[Any]:
        return [make_record(0)._replace(time=BASE_TIME + (first + i) * 0.005,
                                    call_id=f"{rnd.getrandbits(64):016x}@10.0.0.1",
                                    caller=str(12025550000 + rnd.randrange(10000) * 7919 % 100000),
                                    callee=str(13125550000 + rnd.randrange(10000) * 104729 % 100000),
                                    attest="A") for i in range(count)]

    db = SqliteRecords(f"{folder}/cost.db")
    db.open()
    for start in range(0, prefill, 2000):
        db.write([("p", start + k, r) for k, r in enumerate(records(start, min(2000, prefill - start)))])
    db._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    new = records(prefill, n)
    spent = 0.0
    for start in range(0, n, batch):
        entries = [("w", start + k, r) for k, r in enumerate(new[start:start + batch])]
        t0 = time.thread_time()
        db.write(entries)
        spent += time.thread_time() - t0
    probe = new[n // 2]
    since, until = probe.time - 300, probe.time + 300
    finds = {"call_id": (None, None, probe.call_id, None, None), "caller": (since, until, None, probe.caller, None),
             "callee": (since, until, None, None, probe.callee)}
    took = {}
    for name, q in finds.items():
        t0 = time.perf_counter()
        found = db.find(*q, limit=1000)
        took[name] = (time.perf_counter() - t0) * 1e3
        assert probe in found, name
    t0 = time.perf_counter()
    page = db.page(since, until, None, 2000)
    took["page"] = (time.perf_counter() - t0) * 1e3
    assert len(page) == 2000
    layout = "keyed" if getattr(db, "keyed", False) else "text"
    print(f"sqlite-cost layout={layout} prefill={prefill} n={n} batch={batch}: write {spent / n * 1e6:.1f} us/record"
          " (thread CPU);", " ".join(f"{k} {v:.2f} ms" for k, v in took.items()),
          f"; file {os.path.getsize(f'{folder}/cost.db') / 1e6:.0f} MB")
    db.close()


_COMMON = ("id INTEGER PRIMARY KEY, time REAL NOT NULL, call_id TEXT NOT NULL, caller TEXT, callee TEXT, trunk TEXT,"
           " spc TEXT, action TEXT NOT NULL, attest TEXT, writer TEXT NOT NULL, seq INTEGER NOT NULL,"
           " data TEXT NOT NULL, verstat TEXT, caller_check TEXT, spc_owner TEXT, trunk_rmd TEXT, implementation TEXT")
_KEYS = ", call_key INTEGER NOT NULL, caller_key INTEGER, callee_key INTEGER"
_UNIQUE = ", UNIQUE (writer, seq)"
_TEXT_IX = ("CREATE INDEX records_call_id ON records (call_id); CREATE INDEX records_caller ON records (caller, time);"
            " CREATE INDEX records_callee ON records (callee, time);")
_KEY_IX = ("CREATE INDEX records_call_key ON records (call_key); CREATE INDEX records_caller_key ON records (caller_key);"
           " CREATE INDEX records_callee_key ON records (callee_key);")
_TIME_IX = "CREATE INDEX records_time ON records (time);"
# name: (DDL, how the rows are keyed: rowid by SQLite or by time, integer key columns or not)
LAYOUTS = {
    "A": (f"CREATE TABLE records ({_COMMON}{_UNIQUE}); {_TIME_IX} {_TEXT_IX}", False, False),
    "B": (f"CREATE TABLE records ({_COMMON}{_UNIQUE}); "
          + _TEXT_IX.replace("(caller, time)", "(caller)").replace("(callee, time)", "(callee)"), True, False),
    "C": (f"CREATE TABLE records ({_COMMON}{_KEYS}{_UNIQUE}); {_KEY_IX}", True, True),
    "D": (f"CREATE TABLE records ({_COMMON}{_KEYS}); {_KEY_IX}", True, True),
    "E": (f"CREATE TABLE records ({_COMMON}{_KEYS}{_UNIQUE}); CREATE INDEX records_call_key ON records (call_key);",
          True, True),
    "F": (f"CREATE TABLE records ({_COMMON}{_KEYS}{_UNIQUE}); {_TIME_IX} "
          + _KEY_IX.replace("(caller_key)", "(caller_key, time)").replace("(callee_key)", "(callee_key, time)"),
          False, True),
    "N": (f"CREATE TABLE records ({_COMMON}{_UNIQUE});", False, False),
    "Z": (f"CREATE TABLE records ({_COMMON});", False, False),
}


def layouts(names: list[str], prefill: int, n: int, batch: int, folder: str) -> None:
    import hashlib
    import json
    import random
    import sqlite3

    page = int(os.environ.get("PAGE", "4096"))
    pragmas = {k: os.environ[k.upper()] for k in ("mmap_size", "cache_size", "wal_autocheckpoint")
               if os.environ.get(k.upper())}

    def h64(s: str) -> int:
        return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big", signed=True)

    def num(s: str) -> int:
        return int(s) if s.isdigit() and len(s) <= 18 and s[0] != "0" else h64(s)

    for name in names:
        ddl, time_rowid, keys = LAYOUTS[name]
        rnd = random.Random(1)

        def record(i: int, rnd: random.Random = rnd) -> tuple[Any, ...]:
            t = BASE_TIME + i * 0.005 + rnd.random() * 0.01   # a little out of order, as workers' batches are
            cid = f"{rnd.getrandbits(64):016x}@10.0.0.1"
            caller = str(12025550000 + rnd.randrange(10000) * 7919 % 100000)
            callee = str(13125550000 + rnd.randrange(100000))
            data = json.dumps([3, t, cid, "10.0.0.9", 5060, "udp", "trunk-a", "spc", caller, callee, "forward", "A",
                               ["shaken:passed"], {"x": 0.5}] + ["x" * 20] * 12)
            return t, cid, caller, callee, data

        def rows(recs: list[tuple[Any, ...]], s0: int, time_rowid: bool = time_rowid,
                 keys: bool = keys) -> list[tuple[Any, ...]]:
            out = []
            for k, (t, cid, caller, callee, data) in enumerate(recs, s0):
                row: tuple[Any, ...] = (t, cid, caller, callee, "trunk-a", "spc", "forward", "A", "host-1234-abcdef",
                                        k, data, None, "valid", None, None, None)
                if time_rowid:
                    row = (int(t * 1e6) * 2048 + k % 2048, *row)
                if keys:
                    row = (*row, h64(cid), num(caller), num(callee))
                out.append(row)
            return out

        columns = ("time, call_id, caller, callee, trunk, spc, action, attest, writer, seq, data, verstat,"
                   " caller_check, spc_owner, trunk_rmd, implementation")
        if time_rowid:
            columns = "id, " + columns
        if keys:
            columns += ", call_key, caller_key, callee_key"
        width = columns.count(",") + 1

        def insert(count: int, columns: str = columns, width: int = width) -> str:
            return (f"INSERT OR IGNORE INTO records ({columns}) VALUES "
                    + ",".join(["(" + ",".join("?" * width) + ")"] * count))

        path = f"{folder}/layout-{name}.db"
        db = sqlite3.connect(path, isolation_level=None)
        db.execute(f"PRAGMA page_size={page}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(ddl)
        for k, v in pragmas.items():
            db.execute(f"PRAGMA {k}={v}")
        pre = rows([record(i) for i in range(prefill)], 0)
        db.execute("BEGIN")
        insert_rows(db, insert, [x for r in pre for x in r], width, 32)
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        new = [record(prefill + i) for i in range(n)]
        spent = dict.fromkeys(("keys", "insert", "commit"), 0.0)
        for s in range(0, n, batch):
            t0 = time.thread_time()
            params = [x for r in rows(new[s:s + batch], prefill + s) for x in r]
            t1 = time.thread_time()
            inserted, committed = timed_transaction(db, insert_rows, db, insert, params, width, 32)
            spent["keys"] += t1 - t0
            spent["insert"] += inserted
            spent["commit"] += committed
        db.close()
        print(f"layout {name} prefill={prefill} page={page} {pragmas or ''}:",
              "  ".join(f"{k} {v / n * 1e6:5.1f}" for k, v in spent.items()),
              f"  SQLite (insert+commit) {(spent['insert'] + spent['commit']) / n * 1e6:5.1f} us/record;"
              f" file {os.path.getsize(path) / 1e6:.0f} MB", flush=True)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)


def _trunk_records(rate: int, spcs: int = 0) -> Any:
    """records(start, count): ``count`` records ``rate`` a second from ``start``, over 8 trunks
    and the groups the score reads, random as a gateway's (one seed: every run alike);
    ``spcs``: signed by that many SPCs (and a third unsigned), else none signed."""
    import random

    rnd = random.Random(1)
    trunks = [f"carrier-{k}" for k in range(8)]
    signers = [f"{100 + k}{chr(65 + k % 26)}" for k in range(spcs)] + [None] * (spcs // 2)

    def records(start: float, count: int) -> list[Any]:
        return [make_record(0, time=start + i / rate, call_id=f"{rnd.getrandbits(64):016x}@10.0.0.1",
                            caller=f"1202{rnd.randrange(100000):07d}", callee=f"1312{rnd.randrange(100000):07d}",
                            trunk=rnd.choice(trunks), spc=rnd.choice(signers) if signers else None,
                            attest=rnd.choice(("A", "B", "C", None)),
                            verstat=rnd.choice(("TN-Validation-Passed", "No-TN-Validation")),
                            caller_check=rnd.choice(("valid", "invalid", "dno")), trunk_rmd="listed",
                            trunk_implementation="complete") for i in range(count)]

    return records


def _trunk_file(path: str, records: Any, rate: int, start: float, total: int, name: str) -> tuple[Any, int]:
    """A SQLite records file holding ``total`` records ``rate`` a second from ``start`` (as
    the writer writes them), checkpointed: (the SqliteRecords, the next seq)."""
    from sipguard.records.sqlite import SqliteRecords

    db = SqliteRecords(path)
    db.open()
    t0, seq = time.monotonic(), 0
    for first in range(0, total, 5000):
        count = min(5000, total - first)
        db.write([("p", seq + k, r) for k, r in enumerate(records(start + first / rate, count))])
        seq += count
    db._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"{name}: {total:,} records over {total / rate:.0f} s made in {time.monotonic() - t0:.0f} s")
    return db, seq


def _cpu(fn: Any) -> tuple[float, Any]:
    c0 = time.thread_time()
    out = fn()
    return time.thread_time() - c0, out


def score_cost(rate: int, window: int, interval: int, workers: int, folder: str) -> None:
    """What one trunk score refresh costs (upstreams.py ScoreRefresher, SQLite), in a file that
    holds ``window`` seconds of records at ``rate`` calls/s: the aggregate over every record of
    the window (``measure_rows``, what each refresh ran before session 16) against the minute
    roll-ups (``trunk_rows``): its first call on that file (the roll-up of the whole window,
    once a file), then a refresh ``interval`` seconds of records later (every minute after),
    with the two partial minutes of a window in seconds (``trunk_rows``) and in whole minutes
    (``trunk_minutes``, what the refresh reads since session 17).
    Thread CPU; per call: one refresh a worker each ``interval``, over ``interval`` x ``rate`` calls."""

    from sipguard.records.measures import fold
    from sipguard.records.upstreams import whole_minutes

    records = _trunk_records(rate)
    now = time.time()
    db, seq = _trunk_file(f"{folder}/score.db", records, rate, now - window, rate * window, "score-cost")

    old, rows_old = _cpu(lambda: db.measure_rows("trunks", now - window, now))
    first_roll, rows_new = _cpu(lambda: db.trunk_rows(now - window, now))
    assert fold(rows_old) == fold(rows_new)
    db.write([("p", seq + k, r) for k, r in enumerate(records(now, rate * interval))])
    later = now + interval
    old2, rows_old = _cpu(lambda: db.measure_rows("trunks", later - window, later))
    new2, rows_new = _cpu(lambda: db.trunk_rows(later - window, later))
    assert fold(rows_old) == fold(rows_new)
    # the refresh since session 17: the window's whole minutes (upstreams.whole_minutes)
    first, last = whole_minutes(later - window, later)
    whole, rows_whole = _cpu(lambda: db.trunk_minutes(first, last))
    bucket = "CAST(time / 60 AS INTEGER)"
    assert fold(rows_whole) == fold(db._measure("trunks", f"{bucket} >= ? AND {bucket} < ?", (first, last)))
    per_call = workers / (interval * rate) * 1e6
    print(f"score-cost rate={rate} window={window} s interval={interval} s workers={workers}:"
          f" aggregate over the window {old:.2f} s, {old2:.2f} s ({old2 * per_call:.0f} us/call);"
          f" minute roll-ups: first {first_roll:.2f} s (once a file), then {new2:.3f} s ({new2 * per_call:.1f} us/call)"
          f" with the two partial minutes (trunk_rows), {whole:.3f} s ({whole * per_call:.2f} us/call)"
          f" in whole minutes (trunk_minutes, the refresh)")
    db.close()


def series_cost(rate: int, window: int, folder: str) -> None:
    """What the console's 24-hour plot of the trunks costs (``upstreams.series``: 24 buckets
    of whole minutes, each ``trunk_minutes``) in a SQLite file that holds ``window`` seconds
    of records at ``rate`` calls/s, once its roll-ups reach back over the window (a worker's
    refresh has rolled every minute since): kept KEEP_MINUTES (session 18) against kept for
    the score window alone (before), on the same file. Thread CPU of the 24 reads."""
    from sipguard.records import sqlite as sqlite_mod
    from sipguard.records.measures import fold

    now = time.time()
    db, _ = _trunk_file(f"{folder}/series.db", _trunk_records(rate), rate, now - window, rate * window,
                        "series-cost")
    last = int(now // 60) + 1
    buckets = [(last - (24 - k) * 60, last - (23 - k) * 60) for k in range(24)]

    def plot() -> list[Any]:
        return [fold(db.trunk_minutes(first, end)) for first, end in buckets]

    db.roll(now - window)                     # the roll-ups of the whole file, as a refresh left them
    db.roll(now - 3600)                       # the refresh of the score window (default 3600 s)
    kept, after = _cpu(plot)
    keep = sqlite_mod.KEEP_MINUTES
    sqlite_mod.KEEP_MINUTES = 0               # before: the roll-ups of the score window alone
    try:
        db.roll(now - 3600)
        one, before = _cpu(plot)
    finally:
        sqlite_mod.KEEP_MINUTES = keep
    assert before == after
    print(f"series-cost rate={rate} window={window} s: the 24-hour plot's 24 reads {kept:.3f} s with the "
          f"roll-ups kept {keep} minutes, {one:.2f} s with them kept for the score window alone")
    db.close()


def report_cost(rate: int, window: int, folder: str) -> None:
    """What a report of the trunks and the signers costs (``sipguard upstreams``, ``GET
    /upstreams``: 7 days unless asked otherwise) in a SQLite file that holds ``window``
    seconds of records at ``rate`` calls/s, its roll-ups reaching back over the window as a
    refreshing worker leaves them: one GROUP BY a view over every record of the window
    (``measure_rows``, before session 19) against the minute roll-ups (``window_rows``).
    Thread CPU, the same window (in seconds, not on a minute) both ways. Then what the next
    report's roll of the signers costs after a minute of records at 1,000 calls/s (they are
    rolled by the reports alone, not a call)."""
    from sipguard.records.measures import fold

    now = time.time()
    records = _trunk_records(rate, spcs=40)
    db, seq = _trunk_file(f"{folder}/report.db", records, rate, now - window, rate * window, "report-cost")
    since, until = now - window + 17.25, now
    db.roll(now - window)                     # the trunks' roll-ups of the whole file, as refreshes left them
    db.roll(now - 3600)
    first, _ = _cpu(lambda: db.roll(since, "spc"))
    print(f"report-cost: the first report's roll of the signers over the whole window: {first:.3f} s (once)")

    def old() -> Any:
        return fold(db.measure_rows("trunks", since, until)), fold(db.measure_rows("spc", since, until))

    def new() -> Any:
        return fold(db.window_rows("trunks", since, until)), fold(db.window_rows("spc", since, until))

    for _ in range(2):
        before, want = _cpu(old)
        after, got = _cpu(new)
        assert got == want
        print(f"report-cost rate={rate} window={window} s, {len(want[0])} trunks and {len(want[1])} signers: "
              f"{before:.3f} s grouping the records, {after:.3f} s from the roll-ups")
    minute = [("p", seq + k, r) for k, r in enumerate(_trunk_records(1000, spcs=40)(now, 60_000))]
    db.write(minute)
    first, folded = _cpu(lambda: db.roll(since, "spc"))
    assert folded == 60_000
    print(f"report-cost: the next report's roll of the signers, a minute at 1,000 calls/s since the last: "
          f"{first * 1e3:.0f} ms (the trunks' is the score refresh's, every minute)")
    db.close()


def score_cost_redis(rate: int, window: int, workers: int) -> None:
    """What one trunk score refresh costs with records in Redis (``RedisRecords.trunk_minutes``
    since session 17; ``trunk_rows``, a window in seconds, before),
    the stream holding ``window`` seconds of records at ``rate`` calls/s, on a throw-away
    redis-server: the refresh's CPU in this process (the event loop's: the client and the
    decoding of the two partial minutes' entries) and in redis-server, for windows ending
    0, 15, 30 and 45 s into a minute (the partial minutes then hold 60, 60, 60 and 60 s of
    records in all: since's minute from its second on, until's up to it). The old read (the
    whole window decoded) is given once, for the 30-s window."""
    import random

    from sipguard.records.measures import fold
    from sipguard.records.redis_stream import RedisRecords, _group_key
    from sipguard.records.upstreams import whole_minutes
    from tests.redis_fixtures import start_redis

    rnd = random.Random(1)
    trunks = [f"carrier-{k}" for k in range(8)]
    proc = start_redis()
    assert proc.proc is not None
    server = proc.proc.pid

    def server_cpu() -> float:
        with open(f"/proc/{server}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def scenario() -> None:
        store = RedisRecords(proc.url)
        end = (int(time.time()) // 60 + 2) * 60          # a minute boundary just ahead
        start, total = end - window - 120, rate * (window + 120)   # the roll-ups begin a minute in
        t0 = time.monotonic()
        for first in range(0, total, 5000):
            batch = [("p", first + k + 1, make_record(
                0, time=start + (first + k) / rate, call_id=f"{rnd.getrandbits(64):016x}@10.0.0.1",
                trunk=rnd.choice(trunks), attest=rnd.choice(("A", "B", "C", None)),
                verstat=rnd.choice(("TN-Validation-Passed", "No-TN-Validation")),
                caller_check=rnd.choice(("valid", "invalid", "dno")), trunk_rmd="listed",
                trunk_implementation="complete")) for k in range(min(5000, total - first))]
            now = batch[-1][2].time   # minid and now as the writer passes them (a day of retention)
            await store.write(batch, now - 86400, now)
        print(f"score-cost redis: {total:,} records over {window + 120} s written in {time.monotonic() - t0:.0f} s")
        for offset in (0, 15, 30, 45):
            until = end - 60 + offset
            c0, s0 = time.process_time(), server_cpu()
            rows = await store.trunk_rows(until - window, until)
            c1, s1 = time.process_time() - c0, server_cpu() - s0
            first, last = whole_minutes(until - window, until)
            c2, s2 = time.process_time(), server_cpu()
            minutes = await store.trunk_minutes(first, last)
            c2, s2 = time.process_time() - c2, server_cpu() - s2
            print(f"score-cost redis rate={rate} window={window} s, until {offset} s into its minute:"
                  f" with the two partial minutes (trunk_rows) {c1:.3f} s CPU here, {s1:.2f} s in redis-server"
                  f" ({c1 * workers / (60 * rate) * 1e6:.1f} us/call with {workers} workers, one refresh a minute),"
                  f" {len(rows)} rows; in whole minutes (trunk_minutes, the refresh) {c2:.4f} s here,"
                  f" {s2:.2f} s in redis-server ({c2 * workers / (60 * rate) * 1e6:.2f} us/call), {len(minutes)} rows")
            if offset == 30:
                c0, s0 = time.process_time(), server_cpu()
                old = [(*_group_key(r), 1, r.time) async for r in store.scan(until - window, until)
                       if r.trunk is not None and until - window <= r.time <= until]
                c1, s1 = time.process_time() - c0, server_cpu() - s0
                assert fold(old) == fold(rows)
                print(f"score-cost redis: the whole window decoded (before session 16): {c1:.2f} s here,"
                      f" {s1:.2f} s in redis-server")
        await store.aclose()

    try:
        asyncio.run(scenario())
    finally:
        proc.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--redis", action="store_true")
    ap.add_argument("--sqlite-cost", action="store_true", help="per-record cost of the SQLite write (see above)")
    ap.add_argument("--prefill", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--layouts", help="comma-separated LAYOUTS to compare in raw SQL (see above)")
    ap.add_argument("--score-cost", action="store_true", help="one trunk score refresh (see score_cost)")
    ap.add_argument("--series-cost", action="store_true", help="the console's 24-hour plot (see series_cost)")
    ap.add_argument("--report-cost", action="store_true", help="sipguard upstreams on SQLite (see report_cost)")
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--window", type=int, default=3600)
    ap.add_argument("--interval", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if args.score_cost:
        if args.redis:
            score_cost_redis(args.rate, args.window, args.workers)
            return
        with tempfile.TemporaryDirectory() as tmp:
            score_cost(args.rate, args.window, args.interval, args.workers, tmp)
        return
    if args.series_cost:
        with tempfile.TemporaryDirectory() as tmp:
            series_cost(args.rate, args.window, tmp)
        return
    if args.report_cost:
        with tempfile.TemporaryDirectory() as tmp:
            report_cost(args.rate, args.window, tmp)
        return
    if args.layouts:
        with tempfile.TemporaryDirectory() as tmp:
            layouts(args.layouts.split(","), args.prefill, args.n, args.batch, tmp)
        return
    if args.sqlite_cost:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite_cost(args.prefill, args.n, args.batch, tmp)
        return
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
