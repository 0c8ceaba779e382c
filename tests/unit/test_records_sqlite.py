"""The SQLite record file: every traceback query is answered through an index.

The plans are taken of the statements ``SqliteRecords`` really runs (the trace callback gives
them with their values), so a change of a query or of an index shows here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sipguard.records.sqlite import SqliteRecords
from tests.records_fixtures import BASE_TIME, make_record


def calls(count: int, first: int = 0) -> list[Any]:
    """Records with distinct Call-IDs, 7 callers and 5 callees, one a second."""
    return [make_record(i, caller=f"1202555{i % 7:04d}", callee=f"1312555{i % 5:04d}")
            for i in range(first, first + count)]


def plans(db: SqliteRecords, action: Callable[[], object]) -> list[str]:
    """The query plan of each statement ``action`` runs (trace callback: values expanded)."""
    statements: list[str] = []
    conn = db._conn()
    conn.set_trace_callback(statements.append)
    try:
        action()
    finally:
        conn.set_trace_callback(None)
    out = []
    for sql in statements:
        if sql.split()[0].upper() in ("SELECT", "DELETE"):
            out.append(" | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)))
    return out


def assert_indexed(plan: str, index: str) -> None:
    assert f"USING INDEX {index} " in plan or f"USING COVERING INDEX {index} " in plan, plan
    # a SEARCH reads a range of the index; any SCAN of records reads all of the table or an index
    assert "SEARCH records USING" in plan and "SCAN records" not in plan, plan


def traceback_plans(db: SqliteRecords, probe: Any) -> dict[str, list[str]]:
    since, until = probe.time - 300, probe.time + 300
    return {
        "call_id": plans(db, lambda: db.find(None, None, probe.call_id, None, None, 10)),
        "call_id in a window": plans(db, lambda: db.find(since, until, probe.call_id, None, None, 10)),
        "caller": plans(db, lambda: db.find(since, until, None, probe.caller, None, 10)),
        "callee": plans(db, lambda: db.find(since, until, None, None, probe.callee, 10)),
        "window": plans(db, lambda: db.find(since, until, None, None, None, 10)),
        "page": plans(db, lambda: db.page(since, until, None, 10)),
        "next page": plans(db, lambda: db.page(since, until, (probe.time, 5), 10)),
        "measures": plans(db, lambda: db.measure_rows("trunks", since, until)),
        "trim": plans(db, lambda: db.trim(BASE_TIME - 86400)),
    }


def test_every_traceback_query_uses_an_index(tmp_path: Path) -> None:
    db = SqliteRecords(str(tmp_path / "tb.db"))
    records = calls(200)
    db.write([("w", i, r) for i, r in enumerate(records)])
    got = traceback_plans(db, records[100])
    expected = {"call_id": "records_call_id", "call_id in a window": "records_call_id",
                "caller": "records_caller", "callee": "records_callee", "window": "records_time",
                "page": "records_time", "next page": "records_time", "measures": "records_time",
                "trim": "records_time"}
    for name, index in expected.items():
        assert len(got[name]) == 1, (name, got[name])
        assert_indexed(got[name][0], index)
    db.close()


def test_traceback_finds_by_each_key(tmp_path: Path) -> None:
    db = SqliteRecords(str(tmp_path / "tb.db"))
    records = calls(70)
    db.write([("w", i, r) for i, r in enumerate(records)])
    probe = records[35]
    assert db.find(None, None, probe.call_id, None, None, 10) == [probe]
    window = (probe.time - 10, probe.time + 10)
    assert db.find(*window, None, probe.caller, None, 100) == [r for r in records[25:46] if r.caller == probe.caller]
    assert db.find(*window, None, None, probe.callee, 100) == [r for r in records[25:46] if r.callee == probe.callee]
    assert db.find(*window, None, probe.caller, probe.callee, 100) == [probe]
    assert db.find(None, None, "no-such-call", None, None, 10) == []
    assert db.find(None, None, None, "12025559999", None, 10) == []
    assert db.trim(probe.time) == 35 and db.count() == 35
    db.close()


def test_two_writers_alternating_on_one_file_lose_and_double_nothing(tmp_path: Path) -> None:
    """Two workers' connections on one file: each transaction of one begins with a cache the
    other's commit made stale, and must still see, update and find every row."""
    path = str(tmp_path / "tb.db")
    writers = [SqliteRecords(path), SqliteRecords(path)]
    records = calls(1200)
    for n, start in enumerate(range(0, len(records), 100)):
        k = n % 2
        writers[k].write([(f"w{k}", i, r) for i, r in enumerate(records[start:start + 100], start)])
        writers[1 - k].write([(f"w{k}", start, records[start])])     # a replay: kept once
    for k, db in enumerate(writers):
        assert db.count() == len(records)
        for probe in records[k::97]:
            assert db.find(None, None, probe.call_id, None, None, 10) == [probe]
    assert [r for _, _, r in writers[0].page(records[0].time, records[-1].time, None, 2000)] == records
    for db in writers:
        db.close()
