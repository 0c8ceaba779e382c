"""The minute roll-ups of the trunks and the signers (``SqliteRecords.window_rows``, the
trunk score's ``trunk_minutes``) give what a GROUP BY over every record of the window gives
(``measure_rows``), folded the same, whatever the order records arrive in (late ones, a
spool's), the windows asked, the retention passes between, and the record times on and
around minute boundaries."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sipguard.records import sqlite as sqlite_mod
from sipguard.records.measures import fold
from sipguard.records.sqlite import MINUTE, SqliteRecords
from tests.records_fixtures import make_record
from tests.rollup_strategies import BASE, records, times, windows

record = records(groups=True)
window = windows()
# "stale": the refresh reads without rolling first, as when another worker's writer commits
# between the roll and the read (those records are past the rolled mark)
# "refresh": the score refresh alone (the trunks rolled, the signers' roll-ups left behind)
op = st.one_of(
    st.tuples(st.just("write"), st.lists(record, min_size=1, max_size=12)),
    st.tuples(st.sampled_from(("ask", "stale", "refresh")), window),
    st.tuples(st.just("trim"), times(), st.integers(1, 6)))


def same(db: SqliteRecords, since: float, until: float, stale: bool = False) -> None:
    """window_rows of both views over [since, until] and trunk_minutes over the minutes it
    touches, each against the GROUP BY over every record it covers (a minute: CAST(time / 60
    AS INTEGER))."""
    first, last = int(since / MINUTE), int(until / MINUTE) + 1
    if stale:
        db.roll = lambda *args: 0      # type: ignore[method-assign]
    try:
        rolled = fold(db.trunk_rows(since, until))
        signers = fold(db.window_rows("spc", since, until))
        minutes = fold(db.trunk_minutes(first, last))
    finally:
        db.__dict__.pop("roll", None)
    assert rolled == fold(db.measure_rows("trunks", since, until)), (since, until)
    assert signers == fold(db.measure_rows("spc", since, until)), (since, until)
    assert minutes == fold(db._measure("trunks", f"{sqlite_mod._BUCKET} >= ? AND {sqlite_mod._BUCKET} < ?",
                                       (first, last))), (first, last)


def rec(t: float) -> Any:
    return make_record(0, time=t, trunk="carrier-a")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=14), chunk=st.sampled_from((3, 100_000)))
# a retention pass empties the file: the next records get ids 1, 2... again, below the mark
@example(ops=[("ask", [BASE - 120, BASE - 120]), ("write", [rec(BASE - 120), rec(BASE - 120)]),
              ("ask", [BASE - 120, BASE - 120]), ("trim", BASE - 119, 2),
              ("write", [rec(BASE - 120), rec(BASE - 60)])], chunk=3)
# records committed after the roll, read in the same refresh
@example(ops=[("ask", [BASE - 120, BASE + 300]), ("write", [rec(BASE + 30), rec(BASE + 90)]),
              ("stale", [BASE - 120, BASE + 300])], chunk=100_000)
def test_minutes_rolled_up_count_every_record_of_the_window_once(ops: list[tuple], chunk: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = SqliteRecords(str(Path(folder) / "tb.db"))
        old, reports = sqlite_mod.ROLL_CHUNK, sqlite_mod.REPORT_CHUNKS
        sqlite_mod.ROLL_CHUNK = chunk     # 3: every roll takes several transactions
        sqlite_mod.REPORT_CHUNKS = 2      # ... and a report's roll leaves records past its mark
        try:
            seq = 0
            for o in ops:
                if o[0] == "write":
                    db.write([("w", seq + k, r) for k, r in enumerate(o[1])])
                    seq += len(o[1])
                elif o[0] in ("ask", "stale"):
                    same(db, *o[1], stale=o[0] == "stale")
                elif o[0] == "refresh":
                    db.trunk_minutes(int(o[1][0] / MINUTE), int(o[1][1] / MINUTE) + 1)
                else:
                    db.trim(o[1], o[2])
            same(db, BASE - 3 * MINUTE, BASE + 9 * MINUTE)
        finally:
            sqlite_mod.ROLL_CHUNK, sqlite_mod.REPORT_CHUNKS = old, reports
            db.close()


def test_each_record_is_rolled_up_once_and_the_refresh_reads_the_minutes(tmp_path: Path) -> None:
    db = SqliteRecords(str(tmp_path / "tb.db"))
    db.write([("w", i, make_record(0, time=BASE + i, trunk="carrier-a", attest="A")) for i in range(600)])
    since, until = BASE + 30.5, BASE + 570.25
    # the first roll of a file starts at the minute after since's (a second early: the division)
    assert db.roll(since) == 600 - 59
    assert db.roll(since) == 0                       # nothing new: nothing folded again

    def statements(action: Callable[[], object]) -> list[str]:
        seen: list[str] = []
        db._conn().set_trace_callback(seen.append)
        try:
            action()
        finally:
            db._conn().set_trace_callback(None)
        return seen

    rows: list[tuple[Any, ...]] = []
    read = statements(lambda: rows.extend(db.trunk_rows(since, until)))
    assert fold(rows)["carrier-a"].calls == 540      # BASE+31 .. BASE+570
    assert fold(rows) == fold(db.measure_rows("trunks", since, until))
    whole = f"time >= {since!r} AND time <= {until!r}"
    assert any(whole in s for s in statements(lambda: db.measure_rows("trunks", since, until)))
    assert not any(whole in s for s in read)         # no read of every record of the window
    assert any("FROM trunk_minutes WHERE minute" in s for s in read)
    # the late record of an old minute (a spool flushed after an outage) lands in its minute
    db.write([("w", 600, make_record(0, time=BASE + 200.5, trunk="carrier-a", attest="C"))])
    later = fold(db.trunk_rows(since, until))["carrier-a"]
    assert later.calls == 541 and later.attest["C"] == 1
    db.close()


def test_the_report_reads_both_views_from_the_roll_ups(tmp_path: Path) -> None:
    """``sipguard upstreams`` / ``GET /upstreams`` (7 days unless asked otherwise): the trunks
    and the signers of the window's whole minutes from their roll-ups; only its two partial
    minutes are grouped from the records. The signers are rolled up by the reports alone."""
    db = SqliteRecords(str(tmp_path / "tb.db"))
    db.write([("w", i, make_record(0, time=BASE + i, trunk="carrier-a", spc=("123A", "456B")[i % 2],
                                   attest="A", verstat="TN-Validation-Passed")) for i in range(600)])
    since, until = BASE + 30.5, BASE + 570.25
    # the score refresh rolls the trunks alone: the signers cost a call nothing until asked for
    db.trunk_minutes(int(BASE / MINUTE), int(BASE / MINUTE) + 10)
    assert db._conn().execute("SELECT COUNT(*) FROM spc_minutes").fetchone()[0] == 0
    seen: list[str] = []
    db._conn().set_trace_callback(seen.append)
    try:
        trunks, signers = fold(db.window_rows("trunks", since, until)), fold(db.window_rows("spc", since, until))
    finally:
        db._conn().set_trace_callback(None)
    assert signers == fold(db.measure_rows("spc", since, until))
    assert trunks == fold(db.measure_rows("trunks", since, until))
    assert signers["123A"].calls + signers["456B"].calls == 540
    assert not any(f"time >= {since!r} AND time <= {until!r} AND spc" in s for s in seen)
    assert any("FROM spc_minutes WHERE minute" in s for s in seen)
    db.close()


def test_a_report_rolls_a_bounded_part_and_reads_the_rest(tmp_path: Path, monkeypatch: Any) -> None:
    """A file's first report does not roll a week of records in one go (the writers would wait
    for all of it): ``REPORT_CHUNKS`` chunks at most; the records past the mark are grouped as
    they are, read-only, and the next report goes on from there."""
    monkeypatch.setattr(sqlite_mod, "ROLL_CHUNK", 100)
    monkeypatch.setattr(sqlite_mod, "REPORT_CHUNKS", 2)
    db = SqliteRecords(str(tmp_path / "tb.db"))
    db.write([("w", i, make_record(0, time=BASE + i, trunk="carrier-a", spc="123A")) for i in range(1000)])
    since, until = BASE - 0.5, BASE + 999.5

    def mark() -> int:
        return int(db._conn().execute("SELECT rolled FROM minutes_mark WHERE view = 'spc'").fetchone()[0])

    assert fold(db.window_rows("spc", since, until))["123A"].calls == 1000
    assert mark() == 200
    assert fold(db.window_rows("spc", since, until))["123A"].calls == 1000
    assert mark() == 400
    assert fold(db.window_rows("spc", since, until)) == fold(db.measure_rows("spc", since, until))
    db.close()


def test_a_file_of_the_previous_version_rolls_both_views_again(tmp_path: Path) -> None:
    """A file rolled up by the version before the signers' roll-ups (``trunk_minutes`` and its
    ``trunk_minutes_mark``): its mark goes, and the first roll starts both views again from
    the window asked; the minutes before it are read from the records."""
    path = tmp_path / "tb.db"
    db = SqliteRecords(str(path))
    db.write([("w", i, make_record(0, time=BASE + i, trunk="carrier-a", spc="123A")) for i in range(600)])
    db.roll(BASE)
    conn = db._conn()   # as the previous version left it: the trunks rolled, a mark of their own
    conn.execute("DROP TABLE minutes_mark")
    conn.execute("DELETE FROM spc_minutes")
    conn.execute("CREATE TABLE trunk_minutes_mark (one INTEGER PRIMARY KEY CHECK (one = 1),"
                 " rolled INTEGER NOT NULL, complete_from INTEGER NOT NULL)")
    conn.execute("INSERT INTO trunk_minutes_mark VALUES (1, 600, ?)", (int(BASE / MINUTE) + 1,))
    db.close()
    db = SqliteRecords(str(path))
    db.open()
    tables = {row[0] for row in db._conn().execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "trunk_minutes_mark" not in tables and {"minutes_mark", "spc_minutes"} <= tables
    since, until = BASE + 120, BASE + 599
    assert fold(db.window_rows("spc", since, until)) == fold(db.measure_rows("spc", since, until))
    assert fold(db.window_rows("spc", BASE, until))["123A"].calls == 600
    assert fold(db.window_rows("trunks", BASE, until))["carrier-a"].calls == 600
    db.close()


def test_the_roll_ups_stay_for_the_consoles_longest_plot(tmp_path: Path) -> None:
    """The score refresh asks for its last hour; the minutes before it, back to KEEP_MINUTES
    and to the file's first roll, are still read from the roll-ups (the console's 24-hour and
    7-day plots), not grouped from the records again."""
    db = SqliteRecords(str(tmp_path / "tb.db"))
    start = BASE - 3 * 86400
    db.write([("w", i, make_record(0, time=start + i * 600, trunk="carrier-a")) for i in range(3 * 144)])
    assert db.roll(start) == 3 * 144 - 1          # the first roll: from the minute after start's
    first, last = int(start / MINUTE) + 1, int(BASE / MINUTE)
    db.roll(BASE - 3600)                          # the score refresh, later: its window's start
    seen: list[str] = []
    db._conn().set_trace_callback(seen.append)
    try:
        got = fold(db.trunk_minutes(first, last))
    finally:
        db._conn().set_trace_callback(None)
    assert got["carrier-a"].calls == 3 * 144 - 1
    assert not any("FROM records WHERE time >=" in s for s in seen), seen   # none grouped from the records
    # past KEEP_MINUTES before the window asked, they go (and are read from the records again)
    later = BASE + sqlite_mod.KEEP_MINUTES * MINUTE
    db.roll(later - 86400)
    assert db._conn().execute("SELECT MIN(minute) FROM trunk_minutes").fetchone()[0] >= \
        int((later - 86400) / MINUTE) - sqlite_mod.KEEP_MINUTES
    assert fold(db.trunk_minutes(first, last)) == got
    db.close()


def test_the_consoles_series_rolls_once_and_reads_each_bucket(tmp_path: Path) -> None:
    """``trunk_spans`` (the console's series: a span a bucket) rolls once for all its buckets
    and gives each what ``trunk_minutes`` gives it alone."""
    db = SqliteRecords(str(tmp_path / "tb.db"))
    db.write([("w", i, make_record(0, time=BASE + i * 7, trunk="carrier-a", attest="ABC"[i % 3]))
              for i in range(600)])
    first = int(BASE / MINUTE)
    spans = [(first + 5 * k, first + 5 * (k + 1)) for k in range(14)] + [(first, first)]
    seen: list[str] = []
    db._conn().set_trace_callback(seen.append)
    try:
        got = [fold(rows) for rows in db.trunk_spans(spans)]
    finally:
        db._conn().set_trace_callback(None)
    assert sum("BEGIN IMMEDIATE" in s for s in seen) == 1
    assert got == [fold(db.trunk_minutes(a, b)) for a, b in spans]
    assert sum(m.calls for g in got for m in g.values()) == 600 and got[-1] == {}
    db.close()


def test_a_file_whose_records_all_expired_starts_its_roll_again(tmp_path: Path) -> None:
    db = SqliteRecords(str(tmp_path / "tb.db"))
    db.write([("w", i, make_record(0, time=BASE + i, trunk="carrier-a")) for i in range(300)])
    db.trunk_rows(BASE, BASE + 299)
    assert db.trim(BASE + 10_000, 1000) == 300      # everything expired: ids start again at 1
    db.write([("w", 300 + i, make_record(0, time=BASE + 400 + i, trunk="carrier-b")) for i in range(120)])
    got = fold(db.trunk_rows(BASE, BASE + 600))
    assert set(got) == {"carrier-b"} and got["carrier-b"].calls == 120
    db.close()


def test_a_file_that_refuses_writes_is_read_the_old_way(tmp_path: Path) -> None:
    path = tmp_path / "tb.db"
    db = SqliteRecords(str(path))
    db.write([("w", i, make_record(0, time=BASE + i, trunk="carrier-a")) for i in range(200)])
    db.close()
    ro = SqliteRecords(str(path))
    ro.open()
    ro._conn().execute("PRAGMA query_only = ON")   # as a read-only file or a full disk would
    got = fold(ro.trunk_rows(BASE + 10, BASE + 190))
    assert got["carrier-a"].calls == 181
    ro.close()
