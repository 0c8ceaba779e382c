"""The record writer: takes records off the hot path and gets them to the store.

``submit()`` is synchronous, O(1), never blocks and never raises: it appends to a
bounded in-memory queue (past the bound, to an overflow list the writer task takes
after the queue; counted as ``spilled``). A writer task wakes every
``INTERVAL`` seconds (or when a batch is full), numbers each record (writer id, seq)
and writes the batch to the backend: SQLite (in a thread), a Redis Stream or PostgreSQL.

When the backend fails, the batch goes to the spool (fsync'd) and so does every batch
after it until the spool has been flushed, so each writer's records reach the store in
sequence order. Only the writer flushes its own spool files while it lives (spool.py,
rule 3); a dead worker's files are taken over whole by one other. The store does not
depend on that order: it keeps each (writer, seq) once whatever order it comes in, so a
replay after a crash between the store's write and the file's removal adds nothing.
``aclose()`` (SIGTERM) drains the queue to the backend or, failing that, to the spool:
nothing is lost. A later start flushes leftovers first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from sipguard.clock import Clock, SystemClock
from sipguard.observe.hooks import NO_METRICS, MetricHooks
from sipguard.records.record import CallRecord, TracebackConfig
from sipguard.records.spool import Entry, Spool

__all__ = ["RecordWriter", "TracebackConfig", "open_records", "WriterCounters"]

log = logging.getLogger("sipguard.records")
INTERVAL = 0.2          # seconds between writes when traffic is light
RETRY = 1.0             # seconds between attempts to flush the spool while the store is down
TRIM_EVERY = 3600.0     # seconds between retention passes (SQLite)


class Sink(Protocol):
    # its work runs on this host's CPUs (SQLite): records waiting for it are this worker
    # behind, and the overload guard sheds by them (``RecordWriter.backlog``). A network
    # store's wait is bounded by its timeouts, then the spool takes the batches: its
    # outage must not turn into calls answered 503.
    local: bool

    async def open(self) -> None: ...
    async def write(self, entries: Sequence[Entry], now: float) -> None: ...
    async def trim(self, now: float) -> int: ...
    async def aclose(self) -> None: ...


@dataclass(slots=True)
class WriterCounters:
    """Cumulative; the metrics come from the hooks (``records_written``...), with the write time."""

    submitted: int = 0
    written: int = 0
    spooled: int = 0       # records that went to disk because the store or an earlier batch failed
    spilled: int = 0       # records that found the queue full (they wait in the overflow list)
    flushed: int = 0       # spooled records later delivered to the store
    errors: int = 0        # failed backend writes
    trimmed: int = 0


class RecordWriter:
    def __init__(self, sink: Sink, cfg: TracebackConfig, clock: Clock | None = None,
                 writer_id: str | None = None, metrics: MetricHooks = NO_METRICS) -> None:
        self.sink = sink
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.writer_id = writer_id or _writer_id()
        self.spool = Spool(cfg.spool, self.writer_id)
        self.counters = WriterCounters()
        self.metrics = metrics
        self._queue: deque[CallRecord] = deque()
        self._overflow: list[CallRecord] = []
        self._unsaved: deque[Entry] = deque()    # numbered, refused by store and spool alike
        self._unsaved_logged = False
        self._seq = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._spool_pending = True      # check for leftovers on the first pass
        self._last_attempt = -RETRY
        self._last_trim = -TRIM_EVERY
        self._trimmed_run = 0      # rows the retention passes removed since the last one that removed none
        self._degraded = False
        self._drain_lock = asyncio.Lock()   # the task and aclose() must not interleave batches

    # -- hot path ---------------------------------------------------------------------------
    def submit(self, record: CallRecord) -> None:
        try:
            self.counters.submitted += 1
            if len(self._queue) < self.cfg.queue:
                self._queue.append(record)
                if len(self._queue) >= self.cfg.batch:
                    self._wake.set()
            else:
                self._overflow.append(record)
                self.counters.spilled += 1
                self._wake.set()
        except Exception:  # pragma: no cover - must never break call handling
            log.exception("record dropped")

    def release(self) -> None:
        """After a burst (``proxy.overload.MemoryTrim``): the sink gives back the memory it
        keeps for speed (SQLite's page cache), off the event loop; a no-op for the others."""
        release = getattr(self.sink, "release", None)
        if release is not None:
            release()

    @property
    def pending(self) -> int:
        return len(self._unsaved) + len(self._queue) + len(self._overflow)

    def backlog(self) -> float:
        """The records waiting for a local sink (``Sink.local``), as a share of
        ``traceback.queue`` (1.0: the queue is full): what the overload guard sheds by
        (``OverloadGuard.watch_records``); 0 for a network store. Of four batches at least:
        the writer takes a batch when the queue holds one (or every ``INTERVAL``), so a batch
        or two wait in normal work, and a queue set below that must not shed calls."""
        if not self.sink.local:
            return 0.0
        return self.pending / max(self.cfg.queue, 4 * self.cfg.batch)

    @property
    def degraded(self) -> bool:
        return self._degraded

    # -- life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.sink.open()
        await self._maybe_trim(force=True)
        await self._flush_spool(force=True)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="records-writer")

    async def aclose(self) -> None:
        """Flush everything: to the store if it answers, else to the spool on disk."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:  # pragma: no cover - _run logs its own errors
                log.exception("record writer task failed")
            self._task = None
        await self._drain()
        if self.pending:
            log.critical("records: %d records lost at exit: neither the store nor the spool %s took them",
                         self.pending, self.cfg.spool)
        await asyncio.to_thread(self.spool.close)
        await self.sink.aclose()

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), INTERVAL)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._drain()
                await self._maybe_trim()
            except Exception:  # keep writing: one bad pass must not stop the writer
                log.exception("record writer pass failed")
                await asyncio.sleep(INTERVAL)

    async def _drain(self) -> None:
        async with self._drain_lock:
            while self._unsaved or self._queue or self._overflow:
                if not await self._persist(self._take()):
                    break          # neither the store nor the disk took it: again next pass
            if self._spool_pending:
                await self._flush_spool(force=self._closing)

    def _take(self) -> list[Entry]:
        """The next batch, numbered: entries a failed spool gave back, then the queue, then
        the overflow (seq = persistence order)."""
        size = self.cfg.batch
        if self._unsaved:
            unsaved = self._unsaved
            return [unsaved.popleft() for _ in range(min(size, len(unsaved)))]
        queue = self._queue
        records = [queue.popleft() for _ in range(min(size, len(queue)))]
        if len(records) < size and self._overflow:
            take = size - len(records)
            records += self._overflow[:take]
            del self._overflow[:take]
        entries: list[Entry] = []
        for record in records:
            self._seq += 1
            entries.append((self.writer_id, self._seq, record))
        return entries

    async def _persist(self, entries: list[Entry]) -> bool:
        """The batch to the store, else to the spool; False when both refused it (it is then
        back at the head of ``_unsaved``)."""
        if not self._spool_pending:
            started = time.perf_counter()
            try:
                await self.sink.write(entries, self.clock.time())
            except Exception as exc:
                self.counters.errors += 1
                self._note_failure(exc)
            else:
                self.counters.written += len(entries)
                self._note_ok(len(entries), time.perf_counter() - started)
                return True
        if not await self._to_spool(entries):
            return False
        await self._flush_spool()
        return True

    async def _to_spool(self, entries: list[Entry]) -> bool:
        """The batch on disk; when the disk refuses it too (full, read-only, the lock taken),
        it is kept in memory, numbered, and is the first batch of the next pass: rule 1
        holds for every record the writer took, whatever fails."""
        try:
            await asyncio.to_thread(self.spool.append, entries)
        except Exception as exc:  # noqa: BLE001 - any failure: the entries must not be lost
            self._unsaved.extendleft(reversed(entries))
            if not self._unsaved_logged:
                log.error("records: spool %s refused %d records, kept in memory and retried: %s",
                          self.cfg.spool, len(entries), exc)
                self._unsaved_logged = True
            return False
        self._unsaved_logged = False
        self.counters.spooled += len(entries)
        self._spool_pending = True
        self.metrics.records_spooled(len(entries))
        return True

    async def _flush_spool(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_attempt < RETRY:
            return
        self._last_attempt = now
        claimed = await asyncio.to_thread(self.spool.claim)
        try:
            for item in claimed:
                entries = await asyncio.to_thread(Spool.read, item)
                try:
                    for start in range(0, len(entries), self.cfg.batch):
                        await self.sink.write(entries[start:start + self.cfg.batch], self.clock.time())
                except Exception as exc:
                    self.counters.errors += 1
                    self._note_failure(exc)
                    return
                await asyncio.to_thread(Spool.done, item)
                self.counters.flushed += len(entries)
                if entries:
                    log.info("records: %d spooled records delivered from %s", len(entries), item.path)
        finally:
            # what was not delivered stays on disk; a dead writer's lock is let go for the next
            # attempt, by us or another worker (closing a file: nothing to wait for)
            for item in claimed:
                Spool.release(item)
        self._spool_pending = False
        self._degraded = False

    async def _maybe_trim(self, force: bool = False) -> None:
        """A retention pass every ``TRIM_EVERY`` seconds; one that removed rows is followed
        by another on the next writer pass, until one removes none (SQLite removes a chunk a
        pass, so the batches keep going out in between)."""
        now = time.monotonic()
        if not force and now - self._last_trim < TRIM_EVERY:
            return
        self._last_trim = now
        try:
            removed = await self.sink.trim(self.clock.time())
        except Exception as exc:
            log.warning("records: retention pass failed: %s", exc)
            return
        self.counters.trimmed += removed
        if removed:
            self._trimmed_run += removed
            self._last_trim = now - TRIM_EVERY      # more may be due: again on the next pass
        elif self._trimmed_run:
            log.info("records: %d records older than %d days expired", self._trimmed_run, self.cfg.retention_days)
            self._trimmed_run = 0

    def _note_failure(self, exc: Exception) -> None:
        if not self._degraded:
            log.warning("records: store write failed, spooling to %s: %s", self.cfg.spool, exc)
        self._degraded = True
        self.metrics.records_write_failed()

    def _note_ok(self, count: int, seconds: float) -> None:
        self.metrics.records_written(count, seconds)


def _writer_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40]
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class SqliteSink:
    """The SQLite file, written by one thread of its own that runs ``NICE`` steps below the
    process's CPU priority: on a busy box the B-tree and disk work of the records yields to
    the event loops and to the other processes that carry calls rather than delay them
    (measured: bench/RESULTS.md). That thread must hold the GIL as little as it can: when the
    scheduler runs other work first while it holds it, the event loop stops as long. So the
    rows are encoded here, on the event loop, a few at a time (``sqlite.encode``), and the
    thread only binds them and runs SQLite, which releases the GIL while it works."""

    NICE = 10
    local = True

    def __init__(self, cfg: TracebackConfig) -> None:
        from sipguard.records.sqlite import CHUNK, SqliteRecords, encode

        self.db = SqliteRecords(cfg.path)
        self._encode, self._chunk = encode, CHUNK
        self.cfg = cfg
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="records-sqlite", initializer=_lower_priority,
                                          initargs=(self.NICE,))

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def open(self) -> None:
        await self._run(self.db.open)

    async def write(self, entries: Sequence[Entry], now: float) -> None:
        params: list[object] = []
        for start in range(0, len(entries), self._chunk):
            if start:
                await asyncio.sleep(0)      # calls waiting meanwhile go first
            params += self._encode(entries[start:start + self._chunk])
        await self._run(self.db.insert, params)

    async def trim(self, now: float) -> int:
        return int(await self._run(self.db.trim, now - self.cfg.retention_seconds))

    def release(self) -> None:
        """PRAGMA shrink_memory in the sink's own thread, queued behind its writes (not waited
        for: the caller is the event loop)."""
        self._thread.submit(self.db.shrink_memory).add_done_callback(_log_failure)

    async def aclose(self) -> None:
        await self._run(self.db.close)
        self._thread.shutdown(wait=False)


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("records: SQLite page cache not released: %s", future.exception())


def _lower_priority(nice: int) -> None:
    """This thread only (Linux: a thread is a task with its own nice value), ``nice`` steps
    below what it inherited."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (OSError, AttributeError) as exc:  # not Linux, or not permitted: full priority, still correct
        log.debug("records thread keeps its priority: %s", exc)


class RedisSink:
    local = False

    def __init__(self, url: str, cfg: TracebackConfig, factory: Callable[[str], Any] | None = None) -> None:
        from sipguard.records.redis_stream import RedisRecords

        self.db = RedisRecords(url, factory)
        self.cfg = cfg

    async def open(self) -> None:
        return None       # connect lazily: an unreachable Redis at start means spooling, not failing

    async def write(self, entries: Sequence[Entry], now: float) -> None:
        await self.db.write(entries, now - self.cfg.retention_seconds, now)

    async def trim(self, now: float) -> int:
        return 0          # every write trims (XTRIM MINID ~ in the same script)

    async def aclose(self) -> None:
        await self.db.aclose()


class PostgresSink:
    """A PostgreSQL database (records/postgres.py). Each write is one INSERT of the whole
    batch; the maintenance pass (``trim``, hourly) makes the partitions ahead and drops the
    expired ones. An unreachable server at start means spooling, not failing: ``open``
    tries once (migrations, partitions) and the first write tries again."""

    local = False

    def __init__(self, url: str, cfg: TracebackConfig) -> None:
        from sipguard.records.postgres import PostgresRecords

        self.db = PostgresRecords(url, cfg.retention_days)
        self.cfg = cfg

    async def open(self) -> None:
        return None       # RecordWriter.start runs trim (the maintenance pass) right after

    async def write(self, entries: Sequence[Entry], now: float) -> None:
        await self.db.write(entries, now)

    async def trim(self, now: float) -> int:
        return await self.db.trim(now)

    async def aclose(self) -> None:
        await self.db.aclose()


def open_records(store_url: str, traceback_cfg: TracebackConfig,
                 redis_client_factory: Callable[[str], Any] | None = None,
                 clock: Clock | None = None, metrics: MetricHooks = NO_METRICS) -> RecordWriter:
    """The writer for a config's ``store`` and ``traceback.store``: memory or sqlite -> SQLite
    file, redis URL -> Redis Stream, postgresql URL -> PostgreSQL."""
    from sipguard.records.postgres import is_url

    store_url = traceback_cfg.store_for(store_url)
    sink: Sink
    if store_url == "memory":
        sink = SqliteSink(traceback_cfg)
    elif is_url(store_url):
        sink = PostgresSink(store_url, traceback_cfg)
    else:
        sink = RedisSink(store_url, traceback_cfg, redis_client_factory)
    return RecordWriter(sink, traceback_cfg, clock=clock, metrics=metrics)
