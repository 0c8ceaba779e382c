"""Records in Redis Streams against a real redis-server: found again, retained by time,
idempotent, and nothing lost or duplicated across a Redis restart or a SIGTERM."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import pytest

from sipguard.clock import ManualClock
from sipguard.records import query, upstreams
from sipguard.records.record import TracebackConfig
from sipguard.records.redis_stream import LATE, STREAM, RedisRecords
from sipguard.records.spool import Entry
from sipguard.records.writer import open_records
from tests.records_fixtures import BASE_TIME, make_record
from tests.redis_fixtures import REDIS_SERVER, RedisProcess, start_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_aof() -> Iterator[RedisProcess]:
    """A redis-server that keeps its data across kill -9 (AOF, fsync always)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    proc = start_redis(("--appendonly", "yes", "--appendfsync", "always"))
    yield proc
    proc.stop()


async def until(check: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    """Wait for a condition (not a timing assertion: the deadline only bounds a hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        await asyncio.sleep(0.02)


def run(coro: Awaitable[object]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_found_again_by_numbers_window_and_call_id(redis_aof: RedisProcess, tmp_path: Path) -> None:
    cfg = TracebackConfig(spool=str(tmp_path / "spool"))

    async def scenario() -> None:
        w = open_records(redis_aof.url, cfg, clock=ManualClock(BASE_TIME))
        await w.start()
        for i in range(30):
            w.submit(make_record(i * 60, caller=f"1202555{i:04d}"))
        w.submit(make_record(5000, call_id="needle", action="reject", status=603, attest="C", spc="77XZ"))
        await w.aclose()
        got = await query.find(redis_aof.url, cfg, caller="(202) 555-0004", callee="+13125550188",
                               at=BASE_TIME + 240 + 100)
        assert [r.time - BASE_TIME for r in got] == [240]
        assert len(await query.find(redis_aof.url, cfg, at=BASE_TIME + 600)) == 11
        (needle,) = await query.find(redis_aof.url, cfg, call_id="needle")
        assert needle == make_record(5000, call_id="needle", action="reject", status=603, attest="C", spc="77XZ")
        assert await query.top(redis_aof.url, cfg, "spc", since=BASE_TIME) == [("77XZ", 1, 1)]

    run(scenario())


def test_rewrite_is_idempotent_late_records_found_and_retention_trims(redis_aof: RedisProcess) -> None:
    async def scenario() -> None:
        rs = RedisRecords(redis_aof.url)
        await rs.client.delete(STREAM, LATE)
        await rs.client.config_set("stream-node-max-entries", 1)   # makes XTRIM MINID ~ exact
        now = BASE_TIME + 10 * 86400
        entries = [("w", i, make_record(i * 86400)) for i in range(1, 11)]   # one per day
        assert await rs.write(entries, minid=0, now=now) == 10
        assert await rs.write(entries[5:], minid=0, now=now) == 0           # a spool flushed twice
        assert await rs.count() == 10
        # a record delivered long after its time (from a spool) still answers its window
        assert await rs.write([("v", 1, make_record(3600, call_id="late"))], minid=0, now=now) == 1
        assert await rs.client.zcard(LATE) == 1
        found = await rs.find(BASE_TIME + 3500, BASE_TIME + 3700, None, None, None, 10)
        assert [r.call_id for r in found] == ["late"]
        # retention: everything older than day 6 goes (exact here: one entry per stream node)
        await rs.write([("w", 11, make_record(11 * 86400))], minid=BASE_TIME + 6 * 86400, now=now)
        left = await rs.find(None, None, None, None, None, 100)
        assert [int((r.time - BASE_TIME) / 86400) for r in left] == [6, 7, 8, 9, 10, 11]
        # the late index lost the expired "late" entry; day 11 (written after the late one, so
        # also behind the stream's top ID) is the one left in it
        assert await rs.client.zcard(LATE) == 1
        assert [r.call_id for r in await rs.find(BASE_TIME + 11 * 86400, BASE_TIME + 11 * 86400,
                                                 None, None, None, 5)] == [make_record(11 * 86400).call_id]
        await rs.aclose()

    run(scenario())


def test_append_in_any_order_stores_each_record_exactly_once(redis_aof: RedisProcess) -> None:
    """Issue 7: one writer's spool files reach Redis in crossed order (a later file first, as
    when two workers flush them). Every record is stored, and no replay adds a second copy."""
    async def scenario() -> None:
        rs = RedisRecords(redis_aof.url)
        await rs.client.flushdb()
        now = BASE_TIME + 1000
        entries = [("w", i, make_record(i)) for i in range(1, 31)]
        assert await rs.write(entries[10:20], minid=0, now=now) == 10     # the second file first
        assert await rs.write(entries[:10], minid=0, now=now) == 10       # then the first
        assert await rs.write(entries[25:], minid=0, now=now) == 5        # a gap: 21..25 still to come
        assert await rs.write(entries, minid=0, now=now) == 5             # a full replay fills only the gap
        assert await rs.write(entries[::-1], minid=0, now=now) == 0
        assert await rs.write([("v", 1, make_record(40))] + entries[3:5], minid=0, now=now) == 1
        found = await rs.find(None, None, None, None, None, 100)
        assert sorted(r.call_id for r in found) == sorted([r.call_id for _, _, r in entries]
                                                          + [make_record(40).call_id])
        await rs.aclose()

    run(scenario())


def test_append_keeps_few_ranges_reads_the_old_mark_and_refuses_bad_numbers(
        redis_aof: RedisProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.exceptions import ResponseError

    from sipguard.records import redis_stream

    async def scenario() -> None:
        rs = RedisRecords(redis_aof.url)
        await rs.client.flushdb()
        now = BASE_TIME + 1000
        # a writer of the earlier version stored 1..10 in order: its mark still counts, then goes
        await rs.client.hset(redis_stream.HIGH_WATER, "old", 10)
        assert await rs.write([("old", i, make_record(i)) for i in range(5, 13)], minid=0, now=now) == 2
        assert await rs.client.hget(redis_stream.HIGH_WATER, "old") is None
        assert await rs.client.hget(redis_stream.SEQS, "old") == b"1-12"
        # the stored set stays a few ranges: past MAX_RANGES the oldest gap is closed
        monkeypatch.setattr(redis_stream, "MAX_RANGES", 3)
        for seq in (1, 3, 5, 7):
            assert await rs.write([("g", seq, make_record(100 + seq))], minid=0, now=now) == 1
        assert await rs.client.hget(redis_stream.SEQS, "g") == b"1-3,5-5,7-7"
        assert await rs.write([("g", 2, make_record(102))], minid=0, now=now) == 0
        assert await rs.write([("g", 6, make_record(106))], minid=0, now=now) == 1
        assert await rs.client.hget(redis_stream.SEQS, "g") == b"1-3,5-7"
        # a sequence number that is not a positive integer: refused before anything is written
        before = await rs.count()
        with pytest.raises(ResponseError, match="bad sequence number"):
            await rs.write([("g", 8, make_record(108)), ("g", 0, make_record(109))], minid=0, now=now)
        assert await rs.count() == before
        await rs.aclose()

    run(scenario())


class HeldSink:
    """A RedisSink whose next write can be held until released: one worker caught in the
    middle of flushing a spool file while another flushes too."""

    local = False

    def __init__(self, url: str, cfg: TracebackConfig) -> None:
        from sipguard.records.writer import RedisSink

        self.inner = RedisSink(url, cfg)
        self.hold_next = False
        self.holding = False
        self.release = asyncio.Event()

    async def open(self) -> None:
        await self.inner.open()

    async def write(self, entries: Sequence[Entry], now: float) -> None:
        if self.hold_next:
            self.hold_next, self.holding = False, True
            await self.release.wait()
        await self.inner.write(entries, now)

    async def trim(self, now: float) -> int:
        return 0

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_two_workers_flushing_crossed_spool_files_lose_no_record(redis_aof: RedisProcess,
                                                                 tmp_path: Path) -> None:
    """Issue 7, the interleaving itself: Redis down, worker a spools two files (a retry of the
    first failed); Redis back; worker b is held in the middle of a flush while a flushes.
    Whoever delivers what, all of a's records are in Redis, once."""
    from sipguard.records.writer import RecordWriter

    cfg = TracebackConfig(spool=str(tmp_path / "spool"), batch=10)

    async def scenario() -> None:
        rs = RedisRecords(redis_aof.url)
        await rs.client.flushdb()
        sink_a, sink_b = HeldSink(redis_aof.url, cfg), HeldSink(redis_aof.url, cfg)
        a = RecordWriter(sink_a, cfg, clock=ManualClock(BASE_TIME + 1000), writer_id="a")
        b = RecordWriter(sink_b, cfg, clock=ManualClock(BASE_TIME + 1000), writer_id="b")
        await a.start()
        redis_aof.stop()
        for i in range(10):
            a.submit(make_record(i))
        await a._drain()                                   # seq 1..10 to the spool
        await a._flush_spool(force=True)                   # a retry that fails: the file stays
        for i in range(10, 20):
            a.submit(make_record(i))
        await a._drain()                                   # seq 11..20 to the spool
        assert a.counters.spooled == 20
        redis_aof.start()
        sink_b.hold_next = True
        b_flush = asyncio.get_running_loop().create_task(b._flush_spool(force=True))
        await until(lambda: sink_b.holding or b_flush.done(), "b in the middle of a flush, or done")
        await a._flush_spool(force=True)
        sink_b.release.set()
        await b_flush
        await a.aclose()
        await b.aclose()
        ids = [r.call_id for r in await rs.find(None, None, None, None, None, 100)]
        assert sorted(ids) == sorted(make_record(i).call_id for i in range(20)), f"{20 - len(ids)} lost"
        await rs.aclose()

    run(scenario())


def test_a_crash_after_redis_took_a_spool_file_replays_it_without_duplicates(redis_aof: RedisProcess,
                                                                             tmp_path: Path) -> None:
    """The store took part of a spool file, then the process died before removing it: the
    worker that takes the file over replays all of it, and Redis keeps one copy of each."""
    from sipguard.records.spool import Spool

    cfg = TracebackConfig(spool=str(tmp_path / "spool"), batch=7)

    async def scenario() -> None:
        rs = RedisRecords(redis_aof.url)
        await rs.client.flushdb()
        redis_aof.stop()
        w = open_records(redis_aof.url, cfg, clock=ManualClock(BASE_TIME + 1000))
        await w.start()
        for i in range(30):
            w.submit(make_record(i))
        await w.aclose()                                   # all 30 in the spool
        redis_aof.start()
        crashed = Spool(cfg.spool, "crashed")
        claimed = crashed.claim()
        entries = [e for c in claimed for e in Spool.read(c)]
        assert len(entries) == 30
        assert await rs.write(entries[:12], minid=0, now=BASE_TIME + 1000) == 12
        for c in claimed:                                  # the crash: nothing removed
            Spool.release(c)
        again = open_records(redis_aof.url, cfg, clock=ManualClock(BASE_TIME + 1000))
        await again.start()
        assert again.counters.flushed == 30
        await again.aclose()
        assert await rs.count() == 30
        ids = [r.call_id for r in await rs.find(None, None, None, None, None, 100)]
        assert sorted(ids) == sorted(r.call_id for _, _, r in entries)
        await rs.aclose()

    run(scenario())


def test_redis_restart_mid_writing_loses_and_duplicates_nothing(redis_aof: RedisProcess,
                                                                tmp_path: Path) -> None:
    cfg = TracebackConfig(spool=str(tmp_path / "spool"), batch=20)

    async def scenario() -> None:
        rs = RedisRecords(redis_aof.url)
        await rs.client.delete(STREAM, LATE)
        await rs.aclose()
        w = open_records(redis_aof.url, cfg, clock=ManualClock(BASE_TIME + 1000))
        await w.start()
        for i in range(100):
            w.submit(make_record(i))
        await until(lambda: w.counters.written == 100, "first 100 records in Redis")
        redis_aof.stop()                                   # kill -9 while the proxy keeps deciding
        for i in range(100, 200):
            w.submit(make_record(i))
            if i % 25 == 0:
                await asyncio.sleep(0.01)
        await until(lambda: w.counters.spooled == 100, "100 records spooled")
        assert os.listdir(cfg.spool)
        redis_aof.start()
        for i in range(200, 250):
            w.submit(make_record(i))
        await until(lambda: w.counters.flushed + w.counters.written == 250 and not w.degraded, "spool flushed")
        await w.aclose()
        records = await query.find(redis_aof.url, cfg, limit=10_000)
        ids = [r.call_id for r in records]
        assert len(ids) == 250 and len(set(ids)) == 250
        assert not [n for n in os.listdir(cfg.spool) if n.endswith(".jsonl")]

    run(scenario())


def test_sigterm_during_outage_then_restart_flushes_leftovers(redis_aof: RedisProcess, tmp_path: Path) -> None:
    cfg = TracebackConfig(spool=str(tmp_path / "spool"))

    async def scenario() -> None:
        rs = RedisRecords(redis_aof.url)
        await rs.client.delete(STREAM, LATE)
        await rs.aclose()
        redis_aof.stop()
        w = open_records(redis_aof.url, cfg, clock=ManualClock(BASE_TIME + 1000))
        await w.start()                                    # Redis down at start: no failure, spooling
        for i in range(40):
            w.submit(make_record(i))
        await w.aclose()                                   # the SIGTERM drain
        assert w.counters.spooled == 40
        redis_aof.start()
        again = open_records(redis_aof.url, cfg, clock=ManualClock(BASE_TIME + 1000))
        await again.start()
        assert again.counters.flushed == 40
        await again.aclose()
        assert len(await query.find(redis_aof.url, cfg, limit=1000)) == 40

    run(scenario())


def test_unreachable_redis_query_is_a_clear_error(tmp_path: Path) -> None:
    from tests.redis_fixtures import free_port

    with pytest.raises(query.QueryError, match="cannot read records"):
        run(query.find(f"redis://127.0.0.1:{free_port()}/0", TracebackConfig()))
    # the message reaches the console and the HTTP API: never the URL's password, whatever the read
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    reads = [query.find(url, TracebackConfig()), query.top(url, TracebackConfig(), "callers", None),
             upstreams.trunk_measures(url, TracebackConfig(), [(1, 2)]),
             upstreams.measures(url, TracebackConfig(), 0.0, 60.0)]
    for read in reads:
        with pytest.raises(query.QueryError) as caught:
            run(read)
        assert "s3cret-pw" not in str(caught.value) and "redis://:***@127.0.0.1" in str(caught.value)


def test_find_keeps_the_earliest_matches_within_limit_late_ones_included(redis_aof: RedisProcess) -> None:
    """``find`` over the stream keeps only ``limit`` records while the window streams by; the
    ones it keeps are the earliest matches by record time, a late delivery (from a spool, found
    through the late index) and same-time records in stream order included."""
    async def scenario() -> None:
        rs = RedisRecords(redis_aof.url)
        await rs.client.delete(STREAM, LATE)
        now = BASE_TIME + 2 * 86400
        on_time = [("w", i, make_record(i * 10, call_id=f"c{i}")) for i in range(1, 40)]
        on_time.append(("w", 40, make_record(50, call_id="c5-twin")))      # same time as c5, later in the stream
        assert await rs.write(on_time, minid=0, now=BASE_TIME + 400) == 40
        assert await rs.write([("v", 1, make_record(15, call_id="late"))], minid=0, now=now) == 1
        found = await rs.find(BASE_TIME, None, None, None, None, limit=7)
        assert [r.call_id for r in found] == ["c1", "late", "c2", "c3", "c4", "c5", "c5-twin"]
        assert [r.call_id for r in await rs.find(BASE_TIME + 385, None, None, None, None, limit=7)] \
            == ["c39"]
        assert await rs.find(BASE_TIME, None, None, None, None, limit=0) == []
        await rs.aclose()

    run(scenario())
