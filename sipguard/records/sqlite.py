"""Records in an embedded SQLite file (``store: memory``): one row per record.

The indexed columns are the ones a traceback searches by (time, Call-ID, caller,
callee) plus what the campaign view groups by; the whole record is kept as a JSON array
(``record.to_row``: versioned, so a new field needs no migration). WAL mode lets several
worker processes append while ``sipguard traceback`` reads. ``UNIQUE(writer, seq)`` makes
re-flushing a spool file harmless. ``trunk_minutes`` and ``spc_minutes`` hold per-minute
roll-ups of the trunk and signer groups (``window_rows``, ``trunk_minutes``), each view's
progress a row of ``minutes_mark``. All methods are synchronous: the writer calls them from
a thread of its own (``writer.SqliteSink``) so the event loop never waits on the disk.

Rows go in ``ROWS`` at a time, each group one multi-row INSERT, so the thread drops and
retakes the GIL once per group (``executemany`` does it around every row, and each retake
can keep the event loop waiting up to the interpreter's switch interval). The rows are
encoded before (``encode``; ``writer.SqliteSink`` does it on the event loop, a few rows at a
time): the thread runs below the event loop's CPU priority, and a thread that holds the GIL
while the scheduler runs other work first stops the event loop for as long (measured: stalls
of 20-33 ms at 1,000 calls/s when it encoded the rows itself; bench/RESULTS.md).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from sipguard.records.record import VERSTAT_INDEX, CallRecord, column_text, from_row, to_row
from sipguard.records.spool import Entry

log = logging.getLogger("sipguard.records")

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    call_id TEXT NOT NULL,
    caller TEXT,
    callee TEXT,
    trunk TEXT,
    spc TEXT,
    action TEXT NOT NULL,
    attest TEXT,
    writer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    verstat TEXT,
    caller_check TEXT,
    spc_owner TEXT,
    trunk_rmd TEXT,
    implementation TEXT,
    UNIQUE (writer, seq)
);
CREATE INDEX IF NOT EXISTS records_time ON records (time);
CREATE INDEX IF NOT EXISTS records_call_id ON records (call_id);
CREATE INDEX IF NOT EXISTS records_caller ON records (caller, time);
CREATE INDEX IF NOT EXISTS records_callee ON records (callee, time);
CREATE TABLE IF NOT EXISTS trunk_minutes (
    minute INTEGER NOT NULL,
    trunk TEXT NOT NULL,
    attest TEXT NOT NULL,
    verstat TEXT NOT NULL,
    caller_check TEXT NOT NULL,
    spc_owner TEXT NOT NULL,
    trunk_rmd TEXT NOT NULL,
    implementation TEXT NOT NULL,
    calls INTEGER NOT NULL,
    last REAL NOT NULL,
    PRIMARY KEY (minute, trunk, attest, verstat, caller_check, spc_owner, trunk_rmd, implementation)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spc_minutes (
    minute INTEGER NOT NULL,
    spc TEXT NOT NULL,
    attest TEXT NOT NULL,
    verstat TEXT NOT NULL,
    caller_check TEXT NOT NULL,
    spc_owner TEXT NOT NULL,
    calls INTEGER NOT NULL,
    last REAL NOT NULL,
    PRIMARY KEY (minute, spc, attest, verstat, caller_check, spc_owner)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS minutes_mark (
    view TEXT PRIMARY KEY,
    rolled INTEGER NOT NULL,
    complete_from INTEGER NOT NULL
);
DROP TABLE IF EXISTS trunk_minutes_mark;
"""

# the analytics columns (records/upstreams.py), added to files made before them (``_upgrade``)
ADDED = ("verstat", "caller_check", "spc_owner", "trunk_rmd", "implementation")
TOP_COLUMNS = {"callers": "caller", "trunks": "trunk", "spc": "spc"}
COLUMNS = 16
ROWS = 32               # rows per INSERT statement (32 x 16 parameters, below SQLite's oldest limit of 999)
CHUNK = 16              # rows encoded on the event loop between two chances for calls to run
TRIM_CHUNK = 20000      # expired rows deleted per retention pass (the writer's passes go on between)
MINUTE = 60             # seconds of records per roll-up row of trunk_minutes
ROLL_CHUNK = 100_000    # records folded into trunk_minutes per write transaction (the writers wait meanwhile)
# A report rolls at most this many chunks (the records past them are grouped, read-only, as
# before the roll-ups): a file's first report must not hold the writers off for a week of
# records. Each later report goes on from there.
REPORT_CHUNKS = 10
# How long the roll-ups stay before the oldest window a roll is asked for (the score refresh's):
# the console's longest plot (console/app.py SERIES: 7 days) reads its buckets from them, where
# a roll-up kept for the score window alone left all but its last hour to one GROUP BY over the
# records a bucket (millions of rows at a gateway's rate). Rows: one a minute per trunk and
# group seen (a few dozen a minute for ten trunks), next to a record a call.
KEEP_MINUTES = 7 * 1440 + 60
# what a trunk's measure groups by, as measure_rows reads it; '' stands for NULL in trunk_minutes
# (its primary key would hold NULLs apart)
_VERSTAT = f"COALESCE(verstat, json_extract(data, '$[{VERSTAT_INDEX}]'))"
_BUCKET = f"CAST(time / {MINUTE} AS INTEGER)"
_ROLL = (f"INSERT INTO trunk_minutes SELECT {_BUCKET}, trunk, IFNULL(attest, ''), IFNULL({_VERSTAT}, ''),"
         " IFNULL(caller_check, ''), IFNULL(spc_owner, ''), IFNULL(trunk_rmd, ''), IFNULL(implementation, ''),"
         " COUNT(*), MAX(time) FROM records WHERE id > ? AND id <= ? AND trunk IS NOT NULL"
         " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ON CONFLICT DO UPDATE SET calls = calls + excluded.calls,"
         " last = MAX(last, excluded.last)")
_ROLLED = ("SELECT trunk, NULLIF(attest, ''), NULLIF(verstat, ''), NULLIF(caller_check, ''), NULLIF(spc_owner, ''),"
           " NULLIF(trunk_rmd, ''), NULLIF(implementation, ''), SUM(calls), MAX(last) FROM trunk_minutes"
           " WHERE minute >= ? AND minute < ? GROUP BY 1, 2, 3, 4, 5, 6, 7")
_SPC_ROLL = (f"INSERT INTO spc_minutes SELECT {_BUCKET}, spc, IFNULL(attest, ''), IFNULL({_VERSTAT}, ''),"
             " IFNULL(caller_check, ''), IFNULL(spc_owner, ''), COUNT(*), MAX(time) FROM records"
             " WHERE id > ? AND id <= ? AND spc IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6"
             " ON CONFLICT DO UPDATE SET calls = calls + excluded.calls, last = MAX(last, excluded.last)")
_SPC_ROLLED = ("SELECT spc, NULLIF(attest, ''), NULLIF(verstat, ''), NULLIF(caller_check, ''),"
               " NULLIF(spc_owner, ''), NULL, NULL, SUM(calls), MAX(last) FROM spc_minutes"
               " WHERE minute >= ? AND minute < ? GROUP BY 1, 2, 3, 4, 5")
# each view measure_rows reads, with roll-ups of its own: (table, the roll, the read of whole
# minutes). Each is rolled when it is read: the trunks by every score refresh (every minute),
# the signers by the reports alone (nothing a call when nobody asks for them)
ROLLED = {"trunks": ("trunk_minutes", _ROLL, _ROLLED), "spc": ("spc_minutes", _SPC_ROLL, _SPC_ROLLED)}


def encode(entries: Sequence[Entry]) -> list[object]:
    """The INSERT parameters of ``entries``, ``COLUMNS`` per record, in order."""
    params: list[object] = []
    for w, s, r in entries:
        params += (r.time, column_text(r.call_id), column_text(r.caller), column_text(r.callee),
                   column_text(r.trunk), column_text(r.spc), r.action, r.attest, w, s, to_row(r),
                   r.verstat, r.caller_check, r.spc_owner, r.trunk_rmd, r.trunk_implementation)
    return params


@functools.lru_cache(maxsize=ROWS)
def _insert(rows: int) -> str:
    """INSERT of ``rows`` rows (one text per group size: SQLite's statement cache keeps them)."""
    values = ",".join(["(" + ",".join("?" * COLUMNS) + ")"] * rows)
    return ("INSERT OR IGNORE INTO records (time, call_id, caller, callee, trunk, spc, action, attest, writer,"
            f" seq, data, {', '.join(ADDED)}) VALUES {values}")


class SqliteRecords:
    def __init__(self, path: str) -> None:
        self.path = path
        self.trim_chunk = TRIM_CHUNK
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        with self._lock:
            if self._db is not None:
                return
            folder = os.path.dirname(self.path)
            if folder:
                os.makedirs(folder, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
            _wal(db)
            db.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: durable at checkpoint, fast
            db.executescript(SCHEMA)
            _upgrade(db)
            self._db = db

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.open()
        assert self._db is not None
        return self._db

    def write(self, entries: Sequence[Entry]) -> None:
        self.insert(encode(entries))

    def insert(self, params: Sequence[object]) -> None:
        """Rows ``encode`` made, in one transaction. Between SQLite's calls (which run without
        the GIL) only the binding of the parameters holds it: the encoding is done before."""
        count = len(params) // COLUMNS
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, count, ROWS):
                    rows = min(ROWS, count - start)
                    db.execute(_insert(rows), params[start * COLUMNS:(start + rows) * COLUMNS])
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def trim(self, before: float, limit: int | None = None) -> int:
        """Delete up to ``limit`` records older than ``before`` (epoch), oldest first; returns
        how many went. One statement holds the file's write lock (the other workers' writes
        wait) and this thread (this worker's wait): an hour of records at a high rate is
        millions of rows, so the writer takes them a chunk per pass (``RecordWriter``)."""
        with self._lock:
            db = self._conn()
            cur = db.execute("DELETE FROM records WHERE id IN (SELECT id FROM records WHERE time < ?"
                             " ORDER BY time LIMIT ?)", (before, self.trim_chunk if limit is None else limit))
            if cur.rowcount:
                # the roll-ups of the minutes records left go (those minutes are read from the
                # records), and the rolled mark comes down to the last id left: SQLite gives a
                # new row the last id + 1, so ids of deleted rows past it come again
                gone = int(before / MINUTE) + 1
                for table, _, _ in ROLLED.values():
                    db.execute(f"DELETE FROM {table} WHERE minute < ?", (gone,))
                db.execute("UPDATE minutes_mark SET complete_from = MAX(complete_from, ?),"
                           " rolled = MIN(rolled, IFNULL((SELECT MAX(id) FROM records), 0))", (gone,))
            return cur.rowcount

    def find(self, since: float | None, until: float | None, call_id: str | None,
             caller: str | None, callee: str | None, limit: int) -> list[CallRecord]:
        where, args = _where(since, until)
        for column, value in (("call_id", call_id), ("caller", caller), ("callee", callee)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(column_text(value))  # as it was stored
        sql = "SELECT data FROM records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time, id LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._conn().execute(sql, args).fetchall()
        return [from_row(row[0]) for row in rows]

    def top(self, by: str, since: float | None, until: float | None, n: int) -> list[tuple[str, int, int]]:
        column = TOP_COLUMNS[by]
        where, args = _where(since, until)
        where.append(f"{column} IS NOT NULL")
        where.append("(action = 'reject' OR attest = 'C')")
        sql = (f"SELECT {column}, SUM(action IS 'reject'), SUM(attest IS 'C') FROM records"
               f" WHERE {' AND '.join(where)} GROUP BY {column}"
               " ORDER BY SUM(action IS 'reject') + SUM(attest IS 'C') DESC, 1 LIMIT ?")
        args.append(n)
        with self._lock:
            rows = self._conn().execute(sql, args).fetchall()
        return [(str(key), int(rejected), int(attest_c)) for key, rejected, attest_c in rows]

    def page(self, since: float, until: float, after: tuple[float, int] | None,
             size: int) -> list[tuple[float, int, CallRecord]]:
        """Up to ``size`` records of [since, until] after the key ``after`` (time, id), in
        (time, id) order: a keyset page, so a long window is read in bounded pieces."""
        if after is None:
            sql, args = "time >= ? AND time <= ?", [since, until]
        else:
            sql, args = "time <= ? AND (time > ? OR (time = ? AND id > ?))", [until, after[0], after[0], after[1]]
        with self._lock:
            rows = self._conn().execute(f"SELECT time, id, data FROM records WHERE {sql} ORDER BY time, id LIMIT ?",
                                        (*args, size)).fetchall()
        return [(t, i, from_row(data)) for t, i, data in rows]

    def measure_rows(self, by: str, since: float, until: float) -> list[tuple[Any, ...]]:
        """The groups records/measures.py folds (``measures.Row``), for trunks or spc, in
        [since, until]. The time index narrows the window; every row of it is then read (an
        aggregate over all of a window's calls cannot skip any), one pass, no sort beyond
        the grouping. Rows written before the analytics columns give their verstat from ``data``."""
        with self._lock:
            return self._measure(by, "time >= ? AND time <= ?", (since, until))

    def _measure(self, by: str, where: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        key = TOP_COLUMNS[by]
        extra = "trunk_rmd, implementation" if by == "trunks" else "NULL, NULL"
        groups = "1, 2, 3, 4, 5, 6, 7" if by == "trunks" else "1, 2, 3, 4, 5"
        sql = (f"SELECT {key}, attest, {_VERSTAT}, caller_check, spc_owner, {extra}, COUNT(*), MAX(time)"
               f" FROM records WHERE {where} AND {key} IS NOT NULL GROUP BY {groups}")
        return self._conn().execute(sql, args).fetchall()

    def trunk_rows(self, since: float, until: float) -> list[tuple[Any, ...]]:
        """``window_rows("trunks", since, until)``."""
        return self.window_rows("trunks", since, until)

    def window_rows(self, by: str, since: float, until: float) -> list[tuple[Any, ...]]:
        """``measure_rows(by, since, until)`` (by: "trunks" or "spc"), the same rows to
        ``measures.fold``, without reading every record of the window: the whole minutes
        inside it come from the view's minute roll-ups (``trunk_minutes``, ``spc_minutes``:
        the records' groups a minute, ``roll``), and only the two partial minutes at its ends
        (and the records written since the last roll) from the records. A window in seconds,
        read exactly: the report (``sipguard upstreams``, ``GET /upstreams``, 7 days unless
        asked otherwise), where one GROUP BY a view over every record of the window was
        millions of rows at a gateway's rate (bench/RESULTS.md, session 19). The score
        refresh and the console's series read whole minutes (``trunk_minutes``).

        Minute m holds the records with ``CAST(time / 60 AS INTEGER) = m``, SQLite's double
        division, which Python's ``int(t / 60)`` repeats exactly; the division is monotonic,
        so a record of a minute after since's and before until's lies strictly inside the
        window, and the rest are read from the records by time and minute: each record of the
        window is counted once. A window reaching before the view's minutes kept (older than
        KEEP_MINUTES before the window a roll of the view last asked for, or before the view's
        first roll) reads that part from the records."""
        try:
            self.roll(since, by, REPORT_CHUNKS)
        except sqlite3.Error as exc:   # the file refuses writes (full, read-only): the records, as before
            log.info("records: minutes not rolled up (%s); reading the records", exc)
            return self.measure_rows(by, since, until)
        first, last = int(since / MINUTE) + 1, int(until / MINUTE)   # the whole minutes: [first, last)
        with self._lock:
            db = self._conn()
            if last <= first:
                return self._measure(by, "time >= ? AND time <= ?", (since, until))
            db.execute("BEGIN")   # one snapshot: the mark and the rows agree
            try:
                rows = self._measure(by, f"time >= ? AND time <= ? AND {_BUCKET} < ?",
                                     (since, first * MINUTE, first))
                rows += self._measure(by, f"time >= ? AND time <= ? AND {_BUCKET} >= ?",
                                      (last * MINUTE - 1, until, last))
                rows += self._minutes(by, first, last)
            finally:
                db.execute("COMMIT")
            return rows

    def trunk_minutes(self, first: int, last: int) -> list[tuple[Any, ...]]:
        """The rows ``measures.fold`` reads for the trunk records of the whole minutes
        [first, last) (a record's minute: ``CAST(time / 60 AS INTEGER)``), from
        ``trunk_minutes`` and, for minutes the roll-ups do not hold (yet), the records. What the
        trunk score refresh reads every minute in every worker (``upstreams.measures``): a
        window of whole minutes has no partial minute to read from the records at its ends,
        which at a gateway's rate were a minute of records a refresh (bench/RESULTS.md)."""
        return self.trunk_spans([(first, last)])[0]

    def trunk_spans(self, spans: Sequence[tuple[int, int]]) -> list[list[tuple[Any, ...]]]:
        """``trunk_minutes`` of each span [first, last), after one roll and in one snapshot:
        the console's series reads a span a bucket (up to 48), which rolled once each."""
        live = [first for first, last in spans if last > first]
        if not live:
            return [[] for _ in spans]
        try:
            self.roll(min(live) * MINUTE)
        except sqlite3.Error as exc:   # the file refuses writes (full, read-only): the records
            log.info("records: trunk minutes not rolled up (%s); reading the records", exc)
            with self._lock:
                return [self._from_records("trunks", first, last) if last > first else []
                        for first, last in spans]
        with self._lock:
            db = self._conn()
            db.execute("BEGIN")   # one snapshot: the mark and the rows agree
            try:
                return [self._minutes("trunks", first, last) if last > first else [] for first, last in spans]
            finally:
                db.execute("COMMIT")

    def _minutes(self, by: str, first: int, last: int) -> list[tuple[Any, ...]]:
        """The ``by`` rows of the whole minutes [first, last), inside the caller's
        transaction: the minutes rolled up from the view's roll-ups plus the records written
        since the last roll (past the mark), the minutes before the roll-ups are complete
        from the records."""
        db = self._conn()
        rolled, complete = db.execute("SELECT rolled, complete_from FROM minutes_mark WHERE view = ?",
                                      (by,)).fetchone() or (0, last)
        split = min(max(first, complete), last)
        rows: list[tuple[Any, ...]] = []
        if split > first:     # minutes the roll-ups do not hold (yet): from the records
            rows += self._from_records(by, first, split)
        if last > split:
            rows += db.execute(ROLLED[by][2], (split, last)).fetchall()
            rows += self._measure(by, f"id > ? AND {_BUCKET} >= ? AND {_BUCKET} < ?", (rolled, split, last))
        return rows

    def _from_records(self, by: str, first: int, last: int) -> list[tuple[Any, ...]]:
        """The ``by`` rows of the minutes [first, last) from the records: by time, a second of
        margin for the division, then by minute exactly."""
        return self._measure(by, f"time >= ? AND time <= ? AND {_BUCKET} >= ? AND {_BUCKET} < ?",
                             (first * MINUTE - 1, last * MINUTE + 1, first, last))

    def roll(self, keep_since: float, by: str = "trunks", chunks: int | None = None) -> int:
        """Fold the records written since the view's last roll into its roll-ups
        (``ROLLED[by]``; each record once, by insertion order: a late record, a spool flushed
        after an outage, lands in its own minute), ``ROLL_CHUNK`` at a time, each chunk its own
        transaction so the writers wait for one chunk at most; drop the minutes more than
        KEEP_MINUTES before ``keep_since``. The first roll of a view starts at the file's first
        record of ``keep_since`` or later (older minutes are read from the records until the
        roll-ups reach back there). ``chunks``: at most that many (the records past the mark
        are read from the records). Returns the records folded."""
        done = 0
        for _ in itertools.count() if chunks is None else range(chunks):
            with self._lock:
                db = self._conn()
                db.execute("BEGIN IMMEDIATE")
                try:
                    step = self._roll_chunk(db, keep_since, by)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            done += step
            if step < ROLL_CHUNK:
                break
        return done

    def _roll_chunk(self, db: sqlite3.Connection, keep_since: float, by: str) -> int:
        table, roll, _ = ROLLED[by]
        keep = int(keep_since / MINUTE)
        top = db.execute("SELECT MAX(id) FROM records").fetchone()[0] or 0
        mark = db.execute("SELECT rolled, complete_from FROM minutes_mark WHERE view = ?", (by,)).fetchone()
        if mark is None or mark[0] > top:
            # a new file or view (or rows deleted by hand past the mark): start at the first
            # record of the minute after keep_since's, complete from that minute
            keep += 1
            first = db.execute("SELECT MIN(id) FROM records WHERE time >= ?", (keep * MINUTE - 1,)).fetchone()[0]
            db.execute(f"DELETE FROM {table}")
            rolled, complete = (first - 1 if first is not None else top), keep
        else:
            rolled, complete = mark[0], max(mark[1], keep - KEEP_MINUTES)
        upto = min(top, rolled + ROLL_CHUNK)
        if upto > rolled:
            db.execute(roll, (rolled, upto))
        db.execute(f"DELETE FROM {table} WHERE minute < ?", (complete,))
        db.execute("INSERT OR REPLACE INTO minutes_mark VALUES (?, ?, ?)", (by, upto, complete))
        return upto - rolled

    def count(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def shrink_memory(self) -> None:
        """Give back the connection's page cache (``PRAGMA shrink_memory``): after a burst it
        holds up to ``cache_size`` (2 MB) of pages a quiet worker does not need; refilled from
        the file by the next writes or queries."""
        with self._lock:
            if self._db is not None:
                self._db.execute("PRAGMA shrink_memory")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _upgrade(db: sqlite3.Connection) -> None:
    """Add the ``ADDED`` columns a file made by an earlier version lacks (NULL in its rows: the
    analytics read ``verstat`` of those from ``data`` and count the rest as unknown). Adding a
    nullable column rewrites nothing. Two workers may race: the loser's "duplicate column" is fine."""
    have = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    for column in ADDED:
        if column not in have:
            try:
                db.execute(f"ALTER TABLE records ADD COLUMN {column} TEXT")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise


def _wal(db: sqlite3.Connection, attempts: int = 200) -> None:
    """Switch to WAL. Several workers open a new file at once, and the switch does not wait
    on the busy timeout: "database is locked" is retried (50 ms apart, 10 s at most) instead of
    failing the worker's start."""
    for attempt in range(attempts):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def _where(since: float | None, until: float | None) -> tuple[list[str], list[object]]:
    where: list[str] = []
    args: list[object] = []
    if since is not None:
        where.append("time >= ?")
        args.append(since)
    if until is not None:
        where.append("time <= ?")
        args.append(until)
    return where, args


def memory_used() -> int | None:
    """SQLite's own count of the bytes it holds (page caches included), from the library
    Python's sqlite3 module runs on; None where that library cannot be opened by name."""
    import ctypes

    try:
        lib = ctypes.CDLL("libsqlite3.so.0")   # the instance sqlite3 already loaded
    except OSError:
        return None
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())
