"""Records in an embedded SQLite file (``store: memory``): one row per record.

The indexed columns are the ones a traceback searches by (time, Call-ID, caller,
callee) plus what the campaign view groups by; the whole record is kept as a JSON array
(``record.to_row``: versioned, so a new field needs no migration). WAL mode lets several
worker processes append while ``sipguard traceback`` reads. ``UNIQUE(writer, seq)`` makes
re-flushing a spool file harmless. All methods are synchronous: the writer calls them from
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
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from sipguard.records.record import VERSTAT_INDEX, CallRecord, column_text, from_row, to_row
from sipguard.records.spool import Entry

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
"""

# the analytics columns (records/upstreams.py), added to files made before them (``_upgrade``)
ADDED = ("verstat", "caller_check", "spc_owner", "trunk_rmd", "implementation")
TOP_COLUMNS = {"callers": "caller", "trunks": "trunk", "spc": "spc"}
COLUMNS = 16
ROWS = 32               # rows per INSERT statement (32 x 16 parameters, below SQLite's oldest limit of 999)
CHUNK = 16              # rows encoded on the event loop between two chances for calls to run
TRIM_CHUNK = 20000      # expired rows deleted per retention pass (the writer's passes go on between)


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
            cur = self._conn().execute("DELETE FROM records WHERE id IN (SELECT id FROM records WHERE time < ?"
                                       " ORDER BY time LIMIT ?)",
                                       (before, self.trim_chunk if limit is None else limit))
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
        key = TOP_COLUMNS[by]
        verstat = f"COALESCE(verstat, json_extract(data, '$[{VERSTAT_INDEX}]'))"
        extra = "trunk_rmd, implementation" if by == "trunks" else "NULL, NULL"
        groups = "1, 2, 3, 4, 5, 6, 7" if by == "trunks" else "1, 2, 3, 4, 5"
        sql = (f"SELECT {key}, attest, {verstat}, caller_check, spc_owner, {extra}, COUNT(*), MAX(time)"
               f" FROM records WHERE time >= ? AND time <= ? AND {key} IS NOT NULL GROUP BY {groups}")
        with self._lock:
            return self._conn().execute(sql, (since, until)).fetchall()

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
