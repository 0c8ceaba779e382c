"""Records in PostgreSQL (``traceback.store: postgresql://...``): one table partitioned by day.

``sipguard_records`` is partitioned by range on ``at`` (the record's time, UTC), one
partition per day named ``sipguard_records_pYYYYMMDD``. Retention drops whole partitions
(``DROP TABLE``: no row-by-row DELETE, no vacuum debt): a record is kept at least
``retention_days`` and at most one day more. Partitions are created ``AHEAD`` days in
advance by the maintenance pass, and for any day a batch needs (a spool flushed after an
outage), always under one advisory lock so several workers and instances create each
partition once.

Idempotence: a spool file may be flushed twice and out of order (spool.py, rule 2).
PostgreSQL wants the partition key in every unique index, so the key is
``(writer, seq, at)``: a (writer, seq) always carries the same record, hence the same time,
so the same row lands in the same partition and ``ON CONFLICT DO NOTHING`` keeps it once.
A batch is COPYed into a temporary staging table and moved with one INSERT ... SELECT.
A record older than what retention keeps is not written (its partition is gone, or about to go).

Indexes (created on the parent, so every partition has them): caller, callee and trunk,
each with ``at``; Call-ID; and a BRIN on ``at`` for time-only scans. Partition pruning
narrows a time window to its days first.

Upstream analytics (records/upstreams.py) read hourly roll-ups, ``sipguard_upstream_hours``:
per hour, the groups ``measure_rows`` returns, made by the first report that needs an hour
(``measure_rows_rolled``); ``sipguard_rolled_hours`` lists the hours done. A batch holding a
record of an hour that may already be rolled up removes that hour from both in its own
transaction, so the next report rolls it again with the record. Retention deletes roll-ups
with the partitions they came from.

The trunk score refresh (every minute in every worker) reads ``sipguard_trunk_minutes``:
per minute and trunk group, kept by every write in its own transaction from the rows it
added (``INSERT``), so each record counts once (``trunk_rows``).

Schema changes are numbered migrations (``MIGRATIONS``), recorded in
``sipguard_schema_version`` and run under an advisory lock by ``sipguard db migrate`` and
at every start, so a new version's first worker migrates and the others wait, then see it done.

Driver: asyncpg (measured against psycopg 3: bench/RESULTS.md). This module does network
I/O only; the writer (writer.PostgresSink) decides when, and query.py when to read.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sipguard.records.record import VERSTAT_INDEX, CallRecord, column_text, from_row, to_row
from sipguard.records.spool import Entry

log = logging.getLogger("sipguard.records")
TABLE = "sipguard_records"
HOURS = "sipguard_upstream_hours"       # roll-ups: one row per hour and group (records/measures.py)
ROLLED = "sipguard_rolled_hours"        # the hours HOURS holds, complete
MINUTES = "sipguard_trunk_minutes"      # the trunk score's roll-ups: one row per minute and trunk group
MINUTES_SINCE = "sipguard_trunk_minutes_since"   # the first minute MINUTES holds whole
HOUR = 3600.0
# An hour is rolled up once it ended this long ago. A writer that stores a record of an hour
# that ended longer ago than this (a spool flushed after an outage) marks it to be rolled
# again, in the same transaction; a record of a more recent hour commits (COMMAND_TIMEOUT)
# long before its hour can be rolled. The margin also covers clock skew between hosts.
ROLL_GRACE = 300.0
ROLL_INLINE = 6             # hours a report rolls up itself; with more missing it groups the records
VERSION_TABLE = "sipguard_schema_version"
PARTITION = re.compile(r"^sipguard_records_p(\d{4})(\d{2})(\d{2})$")
AHEAD = 2                   # days of partitions made beyond today
LOCK_KEY = 0x5347_7462      # pg_advisory_lock key ("SGtb"): migrations and partition DDL
ROLLUP_LOCK = LOCK_KEY + 1  # and the hourly roll-ups
CHUNK = 64                  # rows encoded between two yields to the event loop
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 10.0      # a write a hung server does not answer fails over to the spool
DAY = 86400.0
# Creating or dropping a partition locks the parent table: behind a long query on it, the DDL
# would queue every insert behind itself. It gives up instead and is tried again next pass.
DDL_LOCK_TIMEOUT = "2s"

# (version, what it does, SQL). Append only: a released migration is never edited.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "records table partitioned by day, look-up indexes", f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    at timestamptz NOT NULL,
    call_id text NOT NULL,
    caller text,
    callee text,
    trunk text,
    spc text,
    action text NOT NULL,
    attest text,
    writer text NOT NULL,
    seq bigint NOT NULL,
    data text NOT NULL
) PARTITION BY RANGE (at);
CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_writer_seq ON {TABLE} (writer, seq, at);
CREATE INDEX IF NOT EXISTS {TABLE}_caller ON {TABLE} (caller, at);
CREATE INDEX IF NOT EXISTS {TABLE}_callee ON {TABLE} (callee, at);
CREATE INDEX IF NOT EXISTS {TABLE}_trunk ON {TABLE} (trunk, at);
CREATE INDEX IF NOT EXISTS {TABLE}_call_id ON {TABLE} (call_id);
CREATE INDEX IF NOT EXISTS {TABLE}_at ON {TABLE} USING brin (at);
"""),
    # nullable columns without a default: a catalogue change, no partition is rewritten. Rows
    # written before keep NULL (the analytics read their verstat from ``data``). Aggregations
    # over a window read every row of it: partition pruning keeps that to the window's days.
    (2, "analytics columns: verstat, caller_check, spc_owner, trunk_rmd, implementation", f"""
ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS verstat text, ADD COLUMN IF NOT EXISTS caller_check text,
    ADD COLUMN IF NOT EXISTS spc_owner text, ADD COLUMN IF NOT EXISTS trunk_rmd text,
    ADD COLUMN IF NOT EXISTS implementation text;
"""),
    # hourly roll-ups of what records/measures.py folds (see ``measure_rows_rolled``)
    (3, "upstream roll-ups: sipguard_upstream_hours, sipguard_rolled_hours", f"""
CREATE TABLE IF NOT EXISTS {HOURS} (
    hour timestamptz NOT NULL,
    view text NOT NULL,
    key text NOT NULL,
    attest text,
    verstat text,
    caller_check text,
    spc_owner text,
    trunk_rmd text,
    implementation text,
    calls bigint NOT NULL,
    last_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS {HOURS}_hour ON {HOURS} (hour);
CREATE TABLE IF NOT EXISTS {ROLLED} (hour timestamptz PRIMARY KEY, rolled_at timestamptz NOT NULL DEFAULT now());
"""),
    # what the trunk score refresh reads every minute in every worker (``trunk_rows``), kept
    # by each write in its own transaction; '' stands for NULL (the key would hold NULLs apart)
    (4, "trunk score roll-ups: sipguard_trunk_minutes", f"""
CREATE TABLE IF NOT EXISTS {MINUTES} (
    minute timestamptz NOT NULL,
    trunk text NOT NULL,
    attest text NOT NULL,
    verstat text NOT NULL,
    caller_check text NOT NULL,
    spc_owner text NOT NULL,
    trunk_rmd text NOT NULL,
    implementation text NOT NULL,
    calls bigint NOT NULL,
    last_at timestamptz NOT NULL,
    PRIMARY KEY (minute, trunk, attest, verstat, caller_check, spc_owner, trunk_rmd, implementation)
);
CREATE TABLE IF NOT EXISTS {MINUTES_SINCE} (one boolean PRIMARY KEY DEFAULT true CHECK (one), since timestamptz NOT NULL);
INSERT INTO {MINUTES_SINCE} (since) VALUES (date_trunc('minute', now(), 'UTC') + interval '1 minute')
    ON CONFLICT DO NOTHING;
"""),
)
LATEST = MIGRATIONS[-1][0]

# The roll-up of a range of hours: per hour, the groups of both views (t: trunk, s: spc) in one
# scan of the records; rows without a trunk (spc) are no group of that view.
ROLLUP = (f"INSERT INTO {HOURS} SELECT h, CASE WHEN GROUPING(trunk) = 0 THEN 't' ELSE 's' END, coalesce(trunk, spc),"
          " attest, vs, caller_check, spc_owner, trunk_rmd, implementation, count(*), max(at)"
          f" FROM (SELECT date_trunc('hour', at, 'UTC') AS h, trunk, spc, attest,"
          f" coalesce(verstat, data::jsonb ->> {VERSTAT_INDEX}) AS vs, caller_check, spc_owner, trunk_rmd,"
          f" implementation, at FROM {TABLE} WHERE at >= $1 AND at < $2")
ROLLUP_GROUPS = (") r GROUP BY GROUPING SETS ((h, trunk, attest, vs, caller_check, spc_owner, trunk_rmd, implementation),"
                 " (h, spc, attest, vs, caller_check, spc_owner))"
                 " HAVING (GROUPING(trunk) = 0 AND trunk IS NOT NULL) OR (GROUPING(spc) = 0 AND spc IS NOT NULL)")
STAGE = "sipguard_records_stage"   # per connection (TEMP), emptied at each commit
COLUMNS = ("at", "call_id", "caller", "callee", "trunk", "spc", "action", "attest", "writer", "seq", "data",
           "verstat", "caller_check", "spc_owner", "trunk_rmd", "implementation")
# the batch's new rows (a record stored before is nothing new: a spool flushed twice), and
# each with a trunk counted in its minute's roll-up; the groups in one order, so two writers
# lock the rows they both update in the same order (no deadlock)
INSERT = (f"WITH new AS (INSERT INTO {TABLE} ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM {STAGE}"
          " ON CONFLICT DO NOTHING RETURNING at, trunk, attest, coalesce(verstat, data::jsonb ->> "
          f"{VERSTAT_INDEX}) AS verstat, caller_check, spc_owner, trunk_rmd, implementation),"
          f" rolled AS (INSERT INTO {MINUTES} SELECT date_trunc('minute', at, 'UTC'), trunk,"
          " coalesce(attest, ''), coalesce(verstat, ''), coalesce(caller_check, ''), coalesce(spc_owner, ''),"
          " coalesce(trunk_rmd, ''), coalesce(implementation, ''), count(*), max(at) FROM new WHERE trunk IS NOT NULL"
          " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
          " ON CONFLICT (minute, trunk, attest, verstat, caller_check, spc_owner, trunk_rmd, implementation)"
          f" DO UPDATE SET calls = {MINUTES}.calls + excluded.calls,"
          f" last_at = greatest({MINUTES}.last_at, excluded.last_at)) SELECT count(*) FROM new")
MINUTE_ROWS = ("SELECT trunk, nullif(attest, ''), nullif(verstat, ''), nullif(caller_check, ''), nullif(spc_owner, ''),"
               " nullif(trunk_rmd, ''), nullif(implementation, ''), sum(calls)::bigint,"
               f" extract(epoch FROM max(last_at))::float8 FROM {MINUTES} WHERE minute >= $1 AND minute < $2"
               " GROUP BY 1, 2, 3, 4, 5, 6, 7")
TOP_COLUMNS = {"callers": "caller", "trunks": "trunk", "spc": "spc"}


def is_url(url: str | None) -> bool:
    return url is not None and url.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """``url`` without its password (error messages and logs)."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def utc(t: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(t, datetime.UTC)


def day_of(t: float) -> datetime.date:
    return utc(t).date()


def partition_name(day: datetime.date) -> str:
    return f"{TABLE}_p{day:%Y%m%d}"


def day_start(day: datetime.date) -> float:
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp()


@dataclass(frozen=True, slots=True)
class Migrated:
    before: int
    after: int


async def connect(url: str) -> Any:
    """One asyncpg connection; ImportError turned into a message saying what to install."""
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - the extra is part of the test install
        from sipguard.errors import ConfigError

        raise ConfigError("traceback.store is a PostgreSQL URL but asyncpg is not installed: "
                          "pip install 'sipguard[postgres]'", key="traceback.store") from None
    return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT)


async def migrate(conn: Any) -> Migrated:
    """Bring the schema to ``LATEST``; safe to run from many processes at once (advisory lock)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version integer PRIMARY KEY,"
                           " description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        before = int(await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}"))
        if before > LATEST:
            raise RuntimeError(f"{TABLE}: schema version {before} is newer than this sipguard knows "
                               f"({LATEST}): upgrade sipguard")
        for version, description, sql in MIGRATIONS:
            if version > before:
                await conn.execute(sql)
                await conn.execute(f"INSERT INTO {VERSION_TABLE} (version, description) VALUES ($1, $2)",
                                   version, description)
    return Migrated(before, max(before, LATEST))


async def schema_version(conn: Any) -> int:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", VERSION_TABLE)
    if not exists:
        return 0
    return int(await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}"))


async def partitions(conn: Any) -> dict[datetime.date, str]:
    """The day partitions that exist: day -> table name."""
    rows = await conn.fetch("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                            " WHERE i.inhparent = $1::regclass", TABLE)
    out: dict[datetime.date, str] = {}
    for row in rows:
        m = PARTITION.match(row[0])
        if m:
            out[datetime.date(int(m[1]), int(m[2]), int(m[3]))] = row[0]
    return out


async def ensure_partitions(conn: Any, days: Sequence[datetime.date]) -> list[str]:
    """Create the partitions of ``days`` that are missing (under the advisory lock: two
    workers never race on one CREATE); returns the names created."""
    created: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await conn.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
        have = await partitions(conn)
        for day in sorted(set(days)):
            if day in have:
                continue
            name = partition_name(day)
            low, high = day, day + datetime.timedelta(days=1)
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {TABLE}"
                               f" FOR VALUES FROM ('{low.isoformat()} 00:00:00+00') TO ('{high.isoformat()} 00:00:00+00')")
            created.append(name)
    return created


def keep_from(now: float, retention_days: int) -> datetime.date:
    """The oldest day retention keeps: a day goes once all of it is older than retention."""
    return day_of(now - retention_days * DAY)


async def drop_expired(conn: Any, now: float, retention_days: int) -> tuple[list[str], int]:
    """Drop the day partitions wholly older than ``retention_days``: (names, rows they held,
    as the planner's estimate -- counting them would read them)."""
    oldest = keep_from(now, retention_days)
    dropped: list[str] = []
    rows = 0
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await conn.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
        for day, name in sorted((await partitions(conn)).items()):
            if day >= oldest:
                break
            rows += max(0, int(await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = $1::regclass", name)))
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
            dropped.append(name)
    return dropped, rows


class PostgresRecords:
    """One connection, reconnected after a failure; calls are serialised (one writer task)."""

    def __init__(self, url: str, retention_days: int, writer: bool = True) -> None:
        self.url = url
        self.retention_days = retention_days
        self.writer = writer        # False: reads only, never migrates (a replica is read-only)
        self._conn: Any = None
        self._days: set[datetime.date] = set()     # partitions known to exist
        self._lock = asyncio.Lock()

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            conn = await connect(self.url)
            try:
                if self.writer:
                    await migrate(conn)
                    self._days = set(await partitions(conn))
                    await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (LIKE {TABLE}) ON COMMIT DELETE ROWS")
                elif await schema_version(conn) == 0:
                    raise RuntimeError(f"no {TABLE} table in this database: no sipguard has written "
                                       "records to it yet (sipguard db migrate creates it)")
            except BaseException:
                await conn.close(timeout=1.0)
                raise
            self._conn = conn
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close(timeout=1.0)
            except Exception:
                conn.terminate()

    async def open(self, now: float) -> None:
        async with self._lock:
            try:
                await self._maintain(now)
            except BaseException:
                await self._drop_connection()
                raise

    async def _maintain(self, now: float) -> int:
        conn = await self._connection()
        today = day_of(now)
        await ensure_partitions(conn, [today + datetime.timedelta(days=n) for n in range(AHEAD + 1)])
        dropped, rows = await drop_expired(conn, now, self.retention_days)
        if dropped:
            oldest = utc(day_start(keep_from(now, self.retention_days)))
            await conn.execute(f"DELETE FROM {HOURS} WHERE hour < $1", oldest)
            await conn.execute(f"DELETE FROM {ROLLED} WHERE hour < $1", oldest)
            await conn.execute(f"DELETE FROM {MINUTES} WHERE minute < $1", oldest)
        if dropped:    # expiry is logged (R6.5), by name: the row count is the planner's estimate
            log.info("records: dropped %s (older than %d days: about %d records)", ", ".join(dropped),
                     self.retention_days, rows)
        self._days = set(await partitions(conn))
        return rows

    async def trim(self, now: float) -> int:
        """Partitions ahead, expired ones dropped; rows dropped (estimate)."""
        async with self._lock:
            try:
                return await self._maintain(now)
            except BaseException:
                await self._drop_connection()
                raise

    async def write(self, entries: Sequence[Entry], now: float) -> int:
        """Insert the batch, once per (writer, seq); returns the rows new to the store.

        COPY into a per-connection staging table, then one INSERT ... SELECT ... ON CONFLICT
        DO NOTHING, in one transaction: half the client CPU of a multi-row INSERT from
        arrays for the same rate (bench/RESULTS.md), and the client is a SIP worker."""
        oldest = keep_from(now, self.retention_days)
        rows: list[tuple[Any, ...]] = []
        days: set[datetime.date] = set()
        rolled_before = now - ROLL_GRACE - HOUR     # hours starting before this may be rolled up
        late_hours: set[float] = set()
        for n, (w, s, r) in enumerate(entries, 1):
            when = utc(r.time)
            if when.date() < oldest:
                continue           # retention would drop it: never re-add an expired record
            days.add(when.date())
            if r.time < rolled_before:
                late_hours.add(r.time - r.time % HOUR)
            rows.append((when, column_text(r.call_id), column_text(r.caller), column_text(r.callee),
                         column_text(r.trunk), column_text(r.spc), column_text(r.action), column_text(r.attest),
                         column_text(w), s, to_row(r), column_text(r.verstat), r.caller_check, r.spc_owner,
                         column_text(r.trunk_rmd), column_text(r.trunk_implementation)))
            if n % CHUNK == 0:
                await asyncio.sleep(0)     # a big batch must not hold calls back
        if not rows:
            return 0
        late = [utc(h) for h in sorted(late_hours)]
        async with self._lock:
            try:
                conn = await self._connection()
                if not days <= self._days:
                    await ensure_partitions(conn, sorted(days - self._days))
                    self._days |= days
                async with conn.transaction():
                    await conn.copy_records_to_table(STAGE, records=rows, columns=COLUMNS)
                    added = await conn.fetchval(INSERT)
                    if late:     # hours already rolled up get this record too: roll them again
                        await conn.execute(f"DELETE FROM {ROLLED} WHERE hour = ANY($1::timestamptz[])", late)
                        await conn.execute(f"DELETE FROM {HOURS} WHERE hour = ANY($1::timestamptz[])", late)
            except BaseException:
                await self._drop_connection()
                raise
        return int(added)

    async def find(self, since: float | None, until: float | None, call_id: str | None,
                   caller: str | None, callee: str | None, limit: int) -> list[CallRecord]:
        where, args = _where(since, until)
        for column, value in (("call_id", call_id), ("caller", caller), ("callee", callee)):
            if value is not None:
                args.append(column_text(value))     # as it was stored
                where.append(f"{column} = ${len(args)}")
        sql = f"SELECT data FROM {TABLE}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        args.append(limit)
        sql += f" ORDER BY at, writer, seq LIMIT ${len(args)}"
        async with self._lock:
            conn = await self._connection()
            rows = await conn.fetch(sql, *args)
        return [from_row(row[0]) for row in rows]

    async def top(self, by: str, since: float | None, until: float | None, n: int) -> list[tuple[str, int, int]]:
        column = TOP_COLUMNS[by]
        where, args = _where(since, until)
        where.append(f"{column} IS NOT NULL")
        where.append("(action = 'reject' OR attest = 'C')")
        args.append(n)
        rejected, attest_c = "count(*) FILTER (WHERE action = 'reject')", "count(*) FILTER (WHERE attest = 'C')"
        sql = (f"SELECT {column}, {rejected}, {attest_c} FROM {TABLE} WHERE {' AND '.join(where)}"
               f" GROUP BY {column} ORDER BY {rejected} + {attest_c} DESC, 1 LIMIT ${len(args)}")
        async with self._lock:
            conn = await self._connection()
            rows = await conn.fetch(sql, *args)
        return [(str(key), int(rejected), int(attest_c)) for key, rejected, attest_c in rows]

    async def page(self, since: float, until: float, after: tuple[Any, ...] | None,
                   size: int) -> list[tuple[tuple[Any, ...], CallRecord]]:
        """Up to ``size`` records of [since, until] after the key ``after`` (at, writer, seq),
        in that order (the unique index's order): a keyset page."""
        args: list[Any]
        if after is None:
            where, args = "at >= $1 AND at <= $2", [utc(since), utc(until)]
        else:
            where, args = "at <= $1 AND (at, writer, seq) > ($2, $3, $4)", [utc(until), *after]
        args.append(size)
        sql = (f"SELECT at, writer, seq, data FROM {TABLE} WHERE {where}"
               f" ORDER BY at, writer, seq LIMIT ${len(args)}")
        async with self._lock:
            conn = await self._connection()
            rows = await conn.fetch(sql, *args)
        return [((row[0], row[1], row[2]), from_row(row[3])) for row in rows]

    async def measure_rows(self, by: str, since: float, until: float,
                           timeout: float = 120.0) -> list[tuple[Any, ...]]:
        """The groups records/measures.py folds, for trunks or spc, in [since, until] (``_groups``)."""
        async with self._lock:
            conn = await self._connection()
            return await _groups(conn, by, utc(since), utc(until), timeout)

    async def trunk_rows(self, since: float, until: float, timeout: float = 120.0) -> list[tuple[Any, ...]]:
        """``measure_rows("trunks", since, until)``, the same rows to ``measures.fold``, without
        reading every record of the window: its whole minutes from ``sipguard_trunk_minutes``
        (each write adds its new records there, in its own transaction), the partial minutes at
        its two ends and any minutes before the roll-ups began (migration 4) from the records,
        in one snapshot. A window in seconds, read exactly. The service reads whole minutes
        (``trunk_minutes``: the trunk score refresh, the console's series); this read stays for
        windows that do not fall on minutes (the benchmarks compare both)."""
        low, high = utc(since), utc(until)
        first = low.replace(second=0, microsecond=0)
        if first < low:
            first += datetime.timedelta(minutes=1)
        last = high.replace(second=0, microsecond=0)       # the whole minutes: [first, last)
        async with self._lock:
            conn = await self._connection()
            if last <= first:
                return await _groups(conn, "trunks", low, high, timeout)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                rows = await _groups(conn, "trunks", low, first, timeout, before=True)
                rows += await _groups(conn, "trunks", last, high, timeout)
                rows += await _minutes(conn, first, last, timeout)
            return rows

    async def trunk_minutes(self, first: int, last: int, timeout: float = 120.0) -> list[tuple[Any, ...]]:
        """The rows ``measures.fold`` reads for the trunk records of the whole minutes
        [first, last) (minutes since the epoch, UTC), in one snapshot: the minute roll-ups,
        and the records for minutes before the roll-ups began. What the trunk score refresh
        reads every minute in every worker (``upstreams.measures``): a window of whole minutes
        has no partial minute at its ends to group from the records."""
        if last <= first:
            return []
        async with self._lock:
            conn = await self._connection()
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return await _minutes(conn, utc(first * 60.0), utc(last * 60.0), timeout)

    async def measure_rows_rolled(self, since: float, until: float, now: float, timeout: float = 120.0
                                  ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
        """(trunk rows, spc rows, hours rolled now) for [since, until], as ``measure_rows`` gives
        them, from the hourly roll-ups wherever a whole hour of the window ended ROLL_GRACE ago,
        and from the records for the rest (the partial hours at either end, the last hour).

        Up to ROLL_INLINE hours not rolled up yet are rolled first (one GROUP BY over them, under
        an advisory lock so two reports never roll one hour twice); the score refresh rolls each
        hour as it ends, so that is the usual case. With more missing (hours from before this
        version, or after the refresh was off), and where roll-ups cannot be written (a read-only
        replica, a user without INSERT), the whole window is grouped from the records: one
        parallel scan, several times faster than rolling that many hours up (bench/RESULTS.md)."""
        first = math.ceil(since / HOUR) * HOUR
        last = min(math.floor((until + 1e-6) / HOUR) * HOUR, math.floor((now - ROLL_GRACE) / HOUR) * HOUR)

        async def from_records() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
            return (await self.measure_rows("trunks", since, until, timeout),
                    await self.measure_rows("spc", since, until, timeout), 0)

        if last - first < HOUR:          # no whole hour: nothing to gain
            return await from_records()
        try:
            rolled = await self._roll(first, last, timeout, ROLL_INLINE)
        except Exception as exc:   # noqa: BLE001 - any refusal to write: read the records instead
            log.info("records: hourly roll-ups not written (%s); reading the records", exc)
            return await from_records()
        if rolled < 0:
            return await from_records()
        out: list[list[tuple[Any, ...]]] = []
        for by, view in (("trunks", "t"), ("spc", "s")):
            rows = await self._rolled_rows(view, first, last, timeout)
            if since < first:
                rows += await self.measure_rows(by, since, first - 1e-6, timeout)
            if last < until:
                rows += await self.measure_rows(by, last, until, timeout)
            out.append(rows)
        return out[0], out[1], rolled

    async def roll_recent(self, now: float, hours: int = 3, timeout: float = 120.0) -> int:
        """Roll up the last ``hours`` whole hours that ended ROLL_GRACE ago, if not done yet (the
        score refresh calls it every minute, so a report rarely has to roll up anything)."""
        last = math.floor((now - ROLL_GRACE) / HOUR) * HOUR
        return await self._roll(last - hours * HOUR, last, timeout)

    async def _roll(self, first: float, last: float, timeout: float, at_most: int | None = None) -> int:
        """Roll up the hours of [first, last) not rolled yet; how many were, or -1 (nothing done)
        when more than ``at_most`` are missing."""
        async with self._lock:
            conn = await self._connection()
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", ROLLUP_LOCK)
                have = {r[0].timestamp() for r in await conn.fetch(
                    f"SELECT hour FROM {ROLLED} WHERE hour >= $1 AND hour < $2", utc(first), utc(last))}
                missing = [h for h in range(int(first), int(last), int(HOUR)) if float(h) not in have]
                if not missing:
                    return 0
                if at_most is not None and len(missing) > at_most:
                    return -1
                hours = [utc(h) for h in missing]
                # one scan for both views (GROUPING SETS); the hour filter only when the missing
                # hours are not one run (usually they are: all of a window, or the latest ones)
                run = missing[-1] - missing[0] == HOUR * (len(missing) - 1)
                args: list[Any] = [utc(missing[0]), utc(missing[-1] + HOUR)] + ([] if run else [hours])
                await conn.execute(ROLLUP + ("" if run else " AND date_trunc('hour', at, 'UTC') = ANY($3::timestamptz[])")
                                   + ROLLUP_GROUPS, *args, timeout=timeout)
                await conn.execute(f"INSERT INTO {ROLLED} (hour) SELECT unnest($1::timestamptz[])", hours)
                return len(missing)

    async def _rolled_rows(self, view: str, first: float, last: float, timeout: float) -> list[tuple[Any, ...]]:
        sql = (f"SELECT key, attest, verstat, caller_check, spc_owner, trunk_rmd, implementation, sum(calls)::bigint,"
               f" extract(epoch FROM max(last_at))::float8 FROM {HOURS} WHERE view = $1 AND hour >= $2 AND hour < $3"
               " GROUP BY 1, 2, 3, 4, 5, 6, 7")
        async with self._lock:
            conn = await self._connection()
            return [tuple(r) for r in await conn.fetch(sql, view, utc(first), utc(last), timeout=timeout)]

    async def count(self) -> int:
        async with self._lock:
            conn = await self._connection()
            return int(await conn.fetchval(f"SELECT count(*) FROM {TABLE}"))

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop_connection()


async def _minutes(conn: Any, first: datetime.datetime, last: datetime.datetime,
                   timeout: float) -> list[tuple[Any, ...]]:
    """The trunk rows of the whole minutes [first, last), inside the caller's transaction:
    from ``MINUTES`` from the minute the roll-ups began, from the records before it (a replica
    behind migration 4 has no roll-ups: all from the records)."""
    began = await conn.fetchval(f"SELECT since FROM {MINUTES_SINCE}") if await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", MINUTES_SINCE) else None
    whole = min(max(first, began), last) if began is not None else last
    rows: list[tuple[Any, ...]] = []
    if whole > first:
        rows += await _groups(conn, "trunks", first, whole, timeout, before=True)
    if last > whole:
        rows += [tuple(r) for r in await conn.fetch(MINUTE_ROWS, whole, last, timeout=timeout)]
    return rows


async def _groups(conn: Any, by: str, low: datetime.datetime, high: datetime.datetime, timeout: float,
                  before: bool = False) -> list[tuple[Any, ...]]:
    """The groups records/measures.py folds, for trunks or spc, of the records at ``low`` or
    later and at ``high`` or earlier (``before``: earlier only). Partition pruning keeps the
    scan to the window's days; within them every row is read (an aggregate over all of a
    window's calls cannot use the look-up indexes to skip any), in parallel workers when the
    planner sees fit. Rows from before migration 2 give their verstat from ``data``."""
    key = TOP_COLUMNS[by]
    verstat = f"coalesce(verstat, data::jsonb ->> {VERSTAT_INDEX})"
    extra = "trunk_rmd, implementation" if by == "trunks" else "NULL, NULL"
    groups = "1, 2, 3, 4, 5, 6, 7" if by == "trunks" else "1, 2, 3, 4, 5"
    sql = (f"SELECT {key}, attest, {verstat}, caller_check, spc_owner, {extra}, count(*),"
           f" extract(epoch FROM max(at))::float8 FROM {TABLE} WHERE at >= $1 AND at {'<' if before else '<='} $2"
           f" AND {key} IS NOT NULL GROUP BY {groups}")
    return [tuple(row) for row in await conn.fetch(sql, low, high, timeout=timeout)]


def _where(since: float | None, until: float | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if since is not None:
        args.append(utc(since))
        where.append(f"at >= ${len(args)}")
    if until is not None:
        args.append(utc(until))
        where.append(f"at <= ${len(args)}")
    return where, args
