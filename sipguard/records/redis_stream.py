"""Records in a Redis Stream (``store: redis://...``), retained by time.

Layout (one hash tag, so the script's keys share a cluster slot):

``sipguard:{tb}:records``   the stream; one entry per record, field ``r`` = record JSON.
                            The entry ID is ``<record time in ms>-*`` whenever Redis accepts
                            it, so a time window is an ``XRANGE`` and retention is
                            ``XTRIM MINID`` -- no secondary index to keep in step.
``sipguard:{tb}:late``      sorted set, score = record ms, member = entry ID, for records whose
                            ID had to be later than their time by more than ``LATE_MS``
                            (flushed from a spool after an outage). Queries read it too.
                            Retention deletes them by record time (XDEL), the rest by ID.
``sipguard:{tb}:seqs``      hash writer -> the sequence numbers stored, as ranges ("1-500,502-900"):
                            the idempotency set that lets a spool file be flushed twice without
                            duplicates, and in any order without losses (lua/append.lua).
``sipguard:{tb}:hw``        hash writer -> highest sequence number stored, kept by earlier
                            versions; read as the range 1..hw, then dropped.
``sipguard:{tb}:writers``   sorted set writer -> last write (ms), to forget old writers.
``sipguard:{tb}:tm:<m>``    hash per minute m (record ms // 60000): group -> calls, "last:" group ->
                            the greatest record time, for the records with a trunk, kept by
                            append.lua with the records and expiring with them; a group is the
                            JSON of what ``measures.fold`` reads. ``trunk_rows`` reads whole
                            minutes from here, the trunk score refresh's query.
``sipguard:{tb}:tm_since``  the first minute the roll-ups hold whole (the minute after this
                            version's first write); earlier minutes are read from the stream.
``sipguard:{tb}:moved``     sorted set, score = record ms, member = entry ID, for every entry whose
                            ID is not its record's ms (written since tm_since's version): the
                            other entries' IDs are their times, so a time range from then on
                            is an exact ``XRANGE`` plus these (``trunk_rows``' edges).

Caller, callee and Call-ID lookups are a scan of the time window (traceback requests
give a time; ``--window`` defaults to 5 minutes each side) filtered in Python; a lookup
without a time scans the whole stream in chunks, which is slower and documented so.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any

from sipguard.errors import ConfigError
from sipguard.records.record import CallRecord, from_row, to_row
from sipguard.records.spool import Entry

STREAM = "sipguard:{tb}:records"
LATE = "sipguard:{tb}:late"
SEQS = "sipguard:{tb}:seqs"
HIGH_WATER = "sipguard:{tb}:hw"   # earlier versions' mark: read and dropped by append.lua
WRITERS = "sipguard:{tb}:writers"
LATE_MS = 60_000          # an entry ID at most this far past its record time is found by XRANGE
SCAN_CHUNK = 2000
MAX_RANGES = 64           # gaps remembered per writer before the oldest is closed (append.lua)
TM = "sipguard:{tb}:tm:"    # + minute: the trunk roll-ups of that minute
TM_SINCE = "sipguard:{tb}:tm_since"
MOVED = "sipguard:{tb}:moved"
MINUTE_MS = 60_000

# lua/append.lua: XADD + the per-writer set of stored sequence numbers, atomically
APPEND_LUA = resources.files("sipguard.records").joinpath("lua/append.lua").read_text(encoding="utf-8")

ClientFactory = Callable[[str], Any]


def make_client(url: str, factory: ClientFactory | None = None) -> Any:
    if factory is not None:
        return factory(url)
    if url.startswith(("redis+sentinel://", "redis+cluster://")):
        # the store's own URL -> client mechanism (the record keys share one cluster slot)
        from sipguard.store.connect import client_factory, parse_url

        return client_factory(parse_url(url), max_connections=8, socket_timeout=2.0)()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{url!r}: traceback records need a Redis store URL", key="store")
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0,
                                   health_check_interval=0)


class RedisRecords:
    def __init__(self, url: str, factory: ClientFactory | None = None) -> None:
        self.url = url
        self.client = make_client(url, factory)
        self._append: Callable[..., Awaitable[Any]] = self.client.register_script(APPEND_LUA)

    async def write(self, entries: Sequence[Entry], minid: float, now: float) -> int:
        argv: list[Any] = [int(minid * 1000), LATE_MS, int(now * 1000), MAX_RANGES, TM]
        groups: dict[tuple[Any, ...], str] = {}    # a batch holds a few groups: each written once
        for writer, seq, record in entries:
            key = _group_key(record)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _group(key)
            argv += (writer, seq, int(record.time * 1000), to_row(record), group, repr(record.time))
        return int(await self._append(keys=[STREAM, LATE, SEQS, WRITERS, HIGH_WATER, TM_SINCE, MOVED],
                                      args=argv))

    async def trunk_rows(self, since: float, until: float) -> list[tuple[Any, ...]]:
        """The rows ``measures.fold`` reads for the trunks of [since, until], as a scan of the
        window would give them: the whole minutes after since's and before until's as
        ``trunk_minutes`` reads them, the two partial minutes at its ends from the stream. A
        minute is ``int(t * 1000) // 60000``, what the script computes from the ms it is given;
        that is monotonic in t, so a record of a whole minute lies strictly inside the window
        and each record is counted once. A window in seconds, read exactly. The service reads
        whole minutes (``trunk_minutes``: the trunk score refresh, the console's series), which
        have no partial minute to decode; this read stays for windows that do not fall on
        minutes (the benchmarks compare both)."""
        first = _minute(since) + 1
        last = _minute(until)
        start = await self._roll_start()

        def window(m_ok: Callable[[int], bool]) -> Callable[[CallRecord], bool]:
            return lambda r: since <= r.time <= until and m_ok(_minute(r.time))

        if last <= first:
            return await self._stream_rows(since, until, window(lambda m: True),
                                           start is not None and _minute(since) >= start)
        rows = await self._stream_rows(since, first * 60.0, window(lambda m: m < first),
                                       start is not None and _minute(since) >= start)
        rows += await self._stream_rows(last * 60.0 - 1, until, window(lambda m: m >= last),
                                        start is not None and last >= start)
        return rows + await self._minutes(first, last, start)

    async def trunk_minutes(self, first: int, last: int) -> list[tuple[Any, ...]]:
        """The rows ``measures.fold`` reads for the trunk records of the whole minutes
        [first, last) (a record's minute: ``int(t * 1000) // 60000``): the minute roll-ups
        (append.lua), and the stream for minutes before the roll-ups began. What the trunk
        score refresh reads every minute in every worker (``upstreams.measures``): the partial
        minutes at the ends of a window in seconds were up to two minutes of entries decoded
        on the event loop, 26-32 us a call at 1,000 calls/s with two workers (bench/RESULTS.md)."""
        if last <= first:
            return []
        return await self._minutes(first, last, await self._roll_start())

    async def _roll_start(self) -> int | None:
        """The first minute the roll-ups hold whole (None: no roll-up written yet)."""
        began = await self.client.get(TM_SINCE)
        return int(began) if began is not None else None

    async def _minutes(self, first: int, last: int, start: int | None) -> list[tuple[Any, ...]]:
        """The rows of the whole minutes [first, last): from the roll-ups from ``start`` on,
        the minutes before it from the stream, by minute (an entry's ID range is its ms)."""
        whole = min(max(first, start), last) if start is not None else last
        rows: list[tuple[Any, ...]] = []
        if last > whole:
            pipe = self.client.pipeline(transaction=False)
            for minute in range(whole, last):
                pipe.hgetall(TM + str(minute))
            for fields in await pipe.execute():
                for name, calls in fields.items():
                    if not name.startswith(b"last:"):
                        rows.append((*json.loads(name), int(calls), float(fields[b"last:" + name])))
        if whole > first:
            rows += await self._stream_rows(first * 60.0, whole * 60.0,
                                            lambda r: first <= _minute(r.time) < whole, False)
        return rows

    async def _stream_rows(self, lo: float, hi: float, keep: Callable[[CallRecord], bool],
                           exact: bool) -> list[tuple[Any, ...]]:
        """One row a trunk record ``keep`` takes among the stream's records of [lo, hi]: read
        exactly (``_exact``) where every entry was written with the moved set, else with
        scan's late margin."""
        rows: list[tuple[Any, ...]] = []
        if hi < lo:
            return rows
        async for r in (self._exact(lo, hi) if exact else self.scan(lo, hi)):
            if r.trunk is not None and keep(r):
                rows.append((*_group_key(r), 1, r.time))
        return rows

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def find(self, since: float | None, until: float | None, call_id: str | None,
                   caller: str | None, callee: str | None, limit: int) -> list[CallRecord]:
        def wanted(r: CallRecord) -> bool:
            return ((since is None or r.time >= since) and (until is None or r.time <= until)
                    and (call_id is None or r.call_id == call_id)
                    and (caller is None or r.caller == caller)
                    and (callee is None or r.callee == callee))

        # the ``limit`` earliest matches, kept in a bounded heap while the window streams by: a
        # caller lookup over days of records holds ``limit`` records, not the window's matches
        if limit <= 0:
            return []
        kept: list[tuple[float, int, CallRecord]] = []   # (-time, -arrival, record): the root is the latest
        arrival = 0
        async for r in self.scan(since, until):
            if not wanted(r):
                continue
            arrival += 1
            item = (-r.time, -arrival, r)
            if len(kept) < limit:
                heapq.heappush(kept, item)
            elif item > kept[0]:                          # earlier than the latest kept
                heapq.heapreplace(kept, item)
        return [r for _, _, r in sorted(kept, reverse=True)]   # by time, ties in stream order

    async def scan(self, since: float | None, until: float | None) -> Any:
        """Every record whose time may be in [since, until] (callers filter exactly)."""
        async for r in self._entries("-" if since is None else str(int(since * 1000)),
                                     "+" if until is None else str(int(until * 1000) + LATE_MS), LATE,
                                     "-inf" if since is None else int(since * 1000),
                                     "+inf" if until is None else int(until * 1000)):
            yield r

    async def _exact(self, since: float, until: float) -> Any:
        """The entries whose record time may be in [since, until], without the late margin of
        ``scan``: those whose ID is in that range of ms (an ID is its record's ms unless the
        entry is in MOVED) and those of MOVED by record ms. For times written since tm_since."""
        start, end = int(since * 1000), int(until * 1000)
        async for r in self._entries(str(start), str(end), MOVED, start, end):
            yield r

    async def _entries(self, start: str, end: str, listed: str, low: int | str, high: int | str) -> Any:
        """The records of the entries with IDs in [start, end], read SCAN_CHUNK at a time, then
        those the sorted set ``listed`` holds with a score in [low, high] that were not among them."""
        seen: set[bytes] = set()
        while True:
            chunk = await self.client.xrange(STREAM, start, end, count=SCAN_CHUNK)
            for entry_id, fields in chunk:
                seen.add(entry_id)
                yield _decode(fields)
            if len(chunk) < SCAN_CHUNK:
                break
            start = "(" + chunk[-1][0].decode()
        for entry_id in await self.client.zrangebyscore(listed, low, high):
            if entry_id not in seen:
                for _, fields in await self.client.xrange(STREAM, entry_id, entry_id):
                    yield _decode(fields)

    async def count(self) -> int:
        return int(await self.client.xlen(STREAM))

    async def aclose(self) -> None:
        await self.client.aclose()


def _decode(fields: dict[bytes, bytes]) -> CallRecord:
    return from_row(fields[b"r"])


def _minute(t: float) -> int:
    """The roll-up minute of a record time: append.lua's floor(ms / 60000) of int(t * 1000)."""
    return int(t * 1000) // MINUTE_MS


def _group_key(r: CallRecord) -> tuple[Any, ...]:
    """What ``measures.fold`` reads of a trunk record."""
    return (r.trunk, r.attest, r.verstat, r.caller_check, r.spc_owner, r.trunk_rmd, r.trunk_implementation)


def _group(key: tuple[Any, ...]) -> str:
    """A roll-up group as append.lua stores it (JSON), '' for a record without a trunk."""
    return "" if key[0] is None else json.dumps(key, separators=(",", ":"))
