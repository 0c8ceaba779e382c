"""The record writer with the SQLite backend and with a sink that fails on demand."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sipguard.clock import ManualClock
from sipguard.records import query
from sipguard.records.record import TracebackConfig
from sipguard.records.spool import Entry
from sipguard.records.sqlite import memory_used
from sipguard.records.writer import RecordWriter, open_records
from tests.records_fixtures import BASE_TIME, make_record


def cfg_for(tmp_path: Path, **over: object) -> TracebackConfig:
    values: dict[str, object] = {"path": str(tmp_path / "tb.db"), "spool": str(tmp_path / "spool")}
    values.update(over)
    return TracebackConfig(**values)  # type: ignore[arg-type]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_written_and_found_by_caller_callee_time_and_call_id(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)

    async def scenario() -> None:
        writer = open_records("memory", cfg, clock=ManualClock(BASE_TIME + 1000))
        await writer.start()
        for i in range(50):
            writer.submit(make_record(i * 60, caller=f"1202555{i:04d}", callee="13125550188"))
        writer.submit(make_record(99_000, call_id="the-one"))
        await writer.aclose()
        assert writer.counters.written == 51
        # an ITG request: one time, both numbers, in another spelling
        got = await query.find("memory", cfg, caller="+1 (202) 555-0007", callee="tel:+1-312-555-0188",
                               at=BASE_TIME + 7 * 60 + 30)
        assert [r.call_id for r in got] == [f"call-{7 * 60}@198.51.100.7"]
        # the default ±5 min window around the time
        around = await query.find("memory", cfg, at=BASE_TIME + 600)
        assert [r.time - BASE_TIME for r in around] == [300, 360, 420, 480, 540, 600, 660, 720, 780, 840, 900]
        assert [r.call_id for r in await query.find("memory", cfg, call_id="the-one")] == ["the-one"]
        assert await query.find("memory", cfg, caller="no number here") == []
        assert len(await query.find("memory", cfg, since=BASE_TIME, until=BASE_TIME + 120)) == 3
        assert len(await query.find("memory", cfg, limit=5)) == 5

    run(scenario())


def test_retention_trims_old_records(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, retention_days=1)

    async def scenario() -> None:
        first = open_records("memory", cfg, clock=ManualClock(BASE_TIME))
        await first.start()
        first.submit(make_record(0))                       # will be 2 days old
        first.submit(make_record(86400 + 3600))             # will be < 1 day old
        await first.aclose()
        later = open_records("memory", cfg, clock=ManualClock(BASE_TIME + 2 * 86400))
        await later.start()                                 # a retention pass runs at start
        await later.aclose()
        assert later.counters.trimmed == 1
        left = await query.find("memory", cfg)
        assert [r.time for r in left] == [BASE_TIME + 86400 + 3600]

    run(scenario())


def test_top_counts_rejected_and_attest_c(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)

    async def scenario() -> None:
        w = open_records("memory", cfg)
        await w.start()
        for i in range(5):
            w.submit(make_record(i, caller="12025550001", action="reject", status=603, trunk="bad"))
        for i in range(3):
            w.submit(make_record(10 + i, caller="12025550002", attest="C", spc="999X", trunk="bad"))
        w.submit(make_record(20, caller="12025550002", attest="A", spc="123A"))   # neither: not counted
        w.submit(make_record(21, caller="12025550003", action="reject", attest="C", spc="999X"))
        await w.aclose()
        callers = await query.top("memory", cfg, "callers", since=BASE_TIME)
        assert callers == [("12025550001", 5, 0), ("12025550002", 0, 3), ("12025550003", 1, 1)]
        assert await query.top("memory", cfg, "spc", since=BASE_TIME) == [("999X", 1, 4)]
        assert await query.top("memory", cfg, "trunks", since=BASE_TIME, n=1) == [("bad", 5, 3)]
        assert await query.top("memory", cfg, "callers", since=BASE_TIME + 15) == [("12025550003", 1, 1)]
        with pytest.raises(query.QueryError):
            await query.top("memory", cfg, "planets", since=None)

    run(scenario())


def test_retention_takes_expired_rows_a_chunk_a_pass_until_none_is_left(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """An hour of records at a high rate is millions of rows: one DELETE of them all would
    hold the file's write lock and the writer's thread for as long (the records waiting
    meanwhile would make the overload guard shed calls). A pass removes a chunk, oldest
    first; a pass that removed rows is followed by another on the next writer pass until one
    removes none, and one line says how many went."""
    cfg = cfg_for(tmp_path, retention_days=1)

    async def scenario() -> None:
        first = open_records("memory", cfg, clock=ManualClock(BASE_TIME))
        await first.start()
        for i in range(35):
            first.submit(make_record(i))                    # will be 2 days old
        for i in range(3):
            first.submit(make_record(86400 + 3600 + i))     # will be < 1 day old
        await first.aclose()
        later = open_records("memory", cfg, clock=ManualClock(BASE_TIME + 2 * 86400))
        later.sink.db.trim_chunk = 10
        await later.start()                                 # a retention pass at start: one chunk
        assert later.counters.trimmed == 10
        passes = []
        for _ in range(5):                                  # the writer's next passes
            await later._maybe_trim()
            passes.append(later.counters.trimmed)
        assert passes == [20, 30, 35, 35, 35]
        assert later._last_trim > time.monotonic() - 60     # none left: the next pass in TRIM_EVERY
        await later.aclose()
        left = await query.find("memory", cfg)
        assert sorted(r.time for r in left) == [BASE_TIME + 86400 + 3600 + i for i in range(3)]

    with caplog.at_level(logging.INFO, logger="sipguard.records"):
        run(scenario())
    assert [r.getMessage() for r in caplog.records if "expired" in r.getMessage()] == \
        ["records: 35 records older than 1 days expired"]


def test_query_without_a_record_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(query.QueryError, match="traceback.path"):
        run(query.find("memory", cfg_for(tmp_path)))


class FlakySink:
    """Stores entries in a list; fails while ``down`` is set. Idempotent on (writer, seq).
    A network store, as far as the overload guard goes (``local``)."""

    local = False

    def __init__(self) -> None:
        self.down = False
        self.rows: dict[tuple[str, int], object] = {}
        self.calls = 0

    async def open(self) -> None:
        return None

    async def write(self, entries: Sequence[Entry], now: float) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("store down")
        for w, s, r in entries:
            self.rows[(w, s)] = r

    async def trim(self, now: float) -> int:
        return 0

    async def aclose(self) -> None:
        return None


def test_outage_spools_then_flushes_in_order_without_loss(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, batch=10)
    sink = FlakySink()

    async def scenario() -> None:
        w = RecordWriter(sink, cfg, writer_id="w")
        await w.start()
        sink.down = True
        for i in range(35):
            w.submit(make_record(i))
        await w._drain()
        assert w.degraded and w.counters.spooled == 35 and not sink.rows
        assert os.listdir(cfg.spool)
        sink.down = False
        for i in range(35, 40):
            w.submit(make_record(i))
        w._last_attempt = -10.0                             # the retry interval has passed
        await w._drain()
        assert not w.degraded
        await w.aclose()
        assert sorted(s for _, s in sink.rows) == list(range(1, 41))
        assert os.listdir(cfg.spool) == []

    run(scenario())


def test_aclose_while_store_down_spools_everything_and_next_start_flushes(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)
    sink = FlakySink()
    sink.down = True

    async def scenario() -> None:
        w = RecordWriter(sink, cfg, writer_id="first")
        await w.start()
        for i in range(25):
            w.submit(make_record(i))
        await w.aclose()                                    # SIGTERM during the outage
        assert w.counters.spooled == 25 and not sink.rows
        sink.down = False
        again = RecordWriter(sink, cfg, writer_id="second")
        await again.start()                                 # leftovers flushed before anything else
        assert len(sink.rows) == 25 and {w for w, _ in sink.rows} == {"first"}
        await again.aclose()

    run(scenario())


def refuse_spool_appends(monkeypatch: pytest.MonkeyPatch, error: OSError, times: int | None = None) -> None:
    """Spool.append raises ``error``: ``times`` times, then appends; None: always."""
    from sipguard.records.spool import Spool

    real_append = Spool.append
    left = [times]

    def append(self: Spool, entries: Any) -> int:
        if left[0] is None or left[0] > 0:
            left[0] = None if left[0] is None else left[0] - 1
            raise error
        return real_append(self, entries)

    monkeypatch.setattr(Spool, "append", append)


async def writer_without_task(sink: Any, cfg: TracebackConfig) -> RecordWriter:
    """A writer as start() leaves it, but without its task: the test runs every pass."""
    w = RecordWriter(sink, cfg, writer_id="w")
    await w._flush_spool(force=True)
    return w


def test_a_spool_that_refuses_a_batch_loses_none_of_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Store down and the disk refusing too (full, read-only, a lock not to be had): the batch
    stays in memory, numbered, and goes first once either takes it. Before, the writer pass
    failed with the batch already taken off the queue: the CI run of d5823c1 lost 5 records."""
    cfg = cfg_for(tmp_path, batch=5)
    sink = FlakySink()
    refuse_spool_appends(monkeypatch, OSError(28, "No space left on device"), times=2)

    async def scenario() -> None:
        w = await writer_without_task(sink, cfg)
        sink.down = True
        for i in range(12):
            w.submit(make_record(i))
        await w._drain()                                    # store and disk refuse: kept
        assert w.pending == 12 and w.counters.spooled == 0
        await w._drain()                                    # the disk refuses once more
        assert w.pending == 12
        await w._drain()                                    # the disk takes them, in order
        assert w.pending == 0 and w.counters.spooled == 12
        sink.down = False
        w._last_attempt = -10.0
        await w._drain()
        await w.aclose()
        assert sorted(s for _, s in sink.rows) == list(range(1, 13))
        assert [sink.rows[("w", s)].call_id for s in range(1, 13)] == [make_record(i).call_id for i in range(12)]

    run(scenario())


def test_a_store_back_before_the_disk_gets_what_the_disk_refused(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = cfg_for(tmp_path, batch=4)
    sink = FlakySink()
    refuse_spool_appends(monkeypatch, PermissionError(13, "Permission denied"))

    async def scenario() -> None:
        w = await writer_without_task(sink, cfg)
        sink.down = True
        for i in range(6):
            w.submit(make_record(i))
        await w._drain()
        assert w.pending == 6 and not sink.rows
        sink.down = False
        w._last_attempt = -10.0
        await w._drain()                                    # no spool file waits: straight to the store
        await w._drain()
        assert w.pending == 0 and sorted(s for _, s in sink.rows) == list(range(1, 7))
        await w.aclose()

    run(scenario())


def test_full_queue_spills_instead_of_dropping(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, queue=5, batch=3)
    sink = FlakySink()

    async def scenario() -> None:
        w = RecordWriter(sink, cfg, writer_id="w")
        await w.start()
        for i in range(12):
            w.submit(make_record(i))
        assert w.pending == 12 and w.counters.spilled == 7
        assert w.backlog() == 0.0             # a network store: its timeouts bound the wait, not shedding
        sink.local = True                     # a local one (SQLite): what the overload guard sheds by
        assert w.backlog() == 12 / 12         # of 4 batches at least
        w.cfg = dataclasses.replace(cfg, batch=1)
        assert w.backlog() == 12 / 5          # ... or of the queue: past 1, behind
        await w.aclose()
        assert w.backlog() == 0.0
        assert len(sink.rows) == 12

    run(scenario())


def test_refushing_the_same_spool_duplicates_nothing_in_sqlite(tmp_path: Path) -> None:
    from sipguard.records.sqlite import SqliteRecords

    db = SqliteRecords(str(tmp_path / "tb.db"))
    entries = [("w", i, make_record(i)) for i in range(1, 6)]
    db.write(entries)
    db.write(entries[2:])
    assert db.count() == 5
    db.close()


@pytest.mark.parametrize("count", [1, 31, 32, 33, 75])
def test_sqlite_batches_of_any_size_keep_every_record_and_column(tmp_path: Path, count: int) -> None:
    """Rows go in as multi-row INSERTs of 32: every group size, the last one short, round-trips."""
    from sipguard.records.sqlite import SqliteRecords

    db = SqliteRecords(str(tmp_path / "tb.db"))
    entries = [("w", i, make_record(i)) for i in range(1, count + 1)]
    db.write(entries)
    db.write(entries[count // 2:])  # a re-flushed tail: ignored by UNIQUE (writer, seq)
    assert db.count() == count
    found = db.find(None, None, None, None, None, limit=1000)
    assert sorted(found, key=lambda r: r.call_id) == sorted((r for _, _, r in entries), key=lambda r: r.call_id)
    with db._lock:
        rows = db._conn().execute("SELECT time, call_id, caller, callee, trunk, action, writer, seq FROM records"
                                  " ORDER BY seq").fetchall()
    assert rows == [(r.time, r.call_id, r.caller, r.callee, r.trunk, r.action, w, s) for w, s, r in entries]
    db.close()


def test_workers_opening_a_new_sqlite_file_at_once_all_start(tmp_path: Path) -> None:
    """The WAL switch of a new file does not wait on the busy timeout: several processes
    opening it together must all succeed (a worker failed its start on this in CI)."""
    import multiprocessing

    from sipguard.records.sqlite import SqliteRecords

    def open_it(path: str, start: Any, failures: Any) -> None:
        start.wait()
        try:
            db = SqliteRecords(path)
            db.open()
            db.write([("w", 1, make_record(1))])
            db.close()
        except Exception:  # noqa: BLE001 - counted, the assertion says which
            with failures.get_lock():
                failures.value += 1

    ctx = multiprocessing.get_context("fork")
    for round_ in range(8):
        path = str(tmp_path / f"tb{round_}.db")
        start, failures = ctx.Event(), ctx.Value("i", 0)
        procs = [ctx.Process(target=open_it, args=(path, start, failures)) for _ in range(4)]
        for proc in procs:
            proc.start()
        start.set()
        for proc in procs:
            proc.join(30)
        assert failures.value == 0, f"round {round_}: {failures.value} of 4 opens failed"


class _Locked:
    """A connection whose WAL switch finds the file locked ``times`` times first."""

    def __init__(self, times: int, message: str = "database is locked") -> None:
        self.times, self.message, self.calls = times, message, 0

    def execute(self, sql: str) -> None:
        self.calls += 1
        if self.calls <= self.times:
            raise sqlite3.OperationalError(self.message)


def test_the_wal_switch_is_retried_while_the_file_is_locked() -> None:
    from sipguard.records.sqlite import _wal

    conn = _Locked(2)
    _wal(conn)  # type: ignore[arg-type]
    assert conn.calls == 3
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _wal(_Locked(5), attempts=3)  # type: ignore[arg-type]
    other = _Locked(1, "disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk"):
        _wal(other)  # type: ignore[arg-type]
    assert other.calls == 1  # not retried


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_the_sqlite_thread_runs_below_the_event_loop_priority(tmp_path: Path) -> None:
    """Records yield the CPU to call handling: the writer's thread is NICE steps lower than
    the thread that made it, and the rows still arrive."""
    from sipguard.records.writer import SqliteSink

    async def main() -> tuple[int, int, int]:
        sink = SqliteSink(TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool")))
        await sink.open()
        ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        theirs = await sink._run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        await sink.write([("w", 1, make_record(1))], 0.0)
        count = await sink._run(sink.db.count)
        await sink.aclose()
        return ours, theirs, count

    ours, theirs, count = asyncio.run(main())
    assert theirs == min(19, ours + SqliteSink.NICE) and count == 1


class OrderSink(FlakySink):
    """FlakySink that logs every delivery in order and can hold the next write until released:
    the moment one worker is in the middle of flushing a spool file."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: list[tuple[str, int]] = []
        self.hold_next = False
        self.holding = False
        self.release = asyncio.Event()

    async def write(self, entries: Sequence[Entry], now: float) -> None:
        if self.hold_next and not self.down:
            self.hold_next, self.holding = False, True
            await self.release.wait()
            self.holding = False
        await super().write(entries, now)
        self.delivered += [(w, s) for w, s, _ in entries]


def test_a_live_writers_spool_files_are_flushed_by_it_alone_in_sequence_order(tmp_path: Path) -> None:
    """Issue 7: two workers, one spool folder. Worker a's first spool file could not be flushed
    (store down); a second one follows. While worker b is in the middle of flushing, worker a
    flushes too. a's records must reach the store in a's sequence order (the store may skip a
    sequence it believes it has passed), so only a flushes a's files while a is alive."""
    cfg = cfg_for(tmp_path, batch=10)
    sink = OrderSink()

    async def until(check: Any, task: asyncio.Task[None]) -> None:
        for _ in range(2000):
            if check() or task.done():
                return
            await asyncio.sleep(0.005)

    async def scenario() -> None:
        a = RecordWriter(sink, cfg, writer_id="a")
        await a.start()
        sink.down = True
        for i in range(10):
            a.submit(make_record(i))
        await a._drain()                                    # seq 1..10 to the spool
        await a._flush_spool(force=True)                    # a retry that fails: the file stays
        for i in range(10, 20):
            a.submit(make_record(i))
        await a._drain()                                    # seq 11..20 to the spool
        assert a.counters.spooled == 20 and not sink.rows
        sink.down = False
        b = RecordWriter(sink, cfg, writer_id="b")
        sink.hold_next = True
        b_flush = asyncio.get_running_loop().create_task(b._flush_spool(force=True))
        await until(lambda: sink.holding, b_flush)          # b is mid-flush (if it took any of a's files)
        sink.hold_next = False
        await a._flush_spool(force=True)
        sink.release.set()
        await b_flush
        mine = [s for w, s in sink.delivered if w == "a"]
        assert mine == list(range(1, 21)), mine            # each once, in order
        await a.aclose()
        await b.aclose()
        assert not [n for n in os.listdir(cfg.spool) if n.endswith(".jsonl")]

    run(scenario())




def test_release_gives_the_sqlite_page_cache_back(tmp_path: Path) -> None:
    """After a burst the record file's connection keeps up to cache_size (2 MB) of pages per
    worker: the compaction after a burst (MemoryTrim) calls the writer's release, which
    runs PRAGMA shrink_memory in the SQLite thread. Counted by SQLite itself, not by RSS."""
    if memory_used() is None:
        pytest.skip("libsqlite3.so.0 not loadable: SQLite's memory count is not readable here")
    cfg = cfg_for(tmp_path, batch=500)

    async def scenario() -> None:
        writer = open_records("memory", cfg, clock=ManualClock(BASE_TIME + 100_000))
        await writer.start()
        for i in range(4000):
            writer.submit(make_record(i, caller=f"1202555{i % 10000:04d}", call_id=f"burst-{i}"))
        while writer.pending:
            await asyncio.sleep(0.01)
        sink: Any = writer.sink
        await sink._run(lambda: None)      # the SQLite thread has written every batch
        before = memory_used()
        writer.release()
        await sink._run(lambda: None)      # queued behind it: the shrink is done
        after = memory_used()
        assert before is not None and after is not None
        assert before - after > 512 * 1024, (before, after)
        writer.submit(make_record(5000, call_id="after-the-burst"))   # still writes afterwards
        await writer.aclose()
        assert writer.counters.written == 4001

    run(scenario())


def test_sqlite_rows_are_encoded_on_the_event_loop_not_in_the_writer_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQLite thread runs below the event loop's priority: while it holds the GIL (to encode
    rows) and the scheduler runs other work first, the event loop stops as long. It must only
    bind the rows and run SQLite; every record is encoded in the event loop's thread."""
    from sipguard.records import record as record_module

    cfg = cfg_for(tmp_path)
    encoded_in: set[int] = set()
    real = record_module.to_row

    def to_row(r: Any) -> str:
        encoded_in.add(threading.get_ident())
        return real(r)

    monkeypatch.setattr("sipguard.records.sqlite.to_row", to_row)

    async def scenario() -> None:
        writer = open_records("memory", cfg, clock=ManualClock(BASE_TIME + 1000))
        await writer.start()
        for i in range(40):                      # more than one chunk of rows
            writer.submit(make_record(i))
        await writer.aclose()
        assert writer.counters.written == 40

    run(scenario())
    assert encoded_in == {threading.get_ident()}
    assert len(query_all(cfg)) == 40


def query_all(cfg: TracebackConfig) -> list[Any]:
    return run(query.find("memory", cfg, since=0, until=BASE_TIME + 10**6, limit=1000))  # type: ignore[return-value]
