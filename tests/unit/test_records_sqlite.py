"""The SQLite record file: its layouts, its keys, and that every traceback query is indexed.

The plans are taken of the statements ``SqliteRecords`` really runs (the trace callback gives
them with their values), so a change of a query or of an index shows here."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipguard.records import sqlite
from sipguard.records.record import to_row
from sipguard.records.sqlite import SqliteRecords, key
from tests.records_fixtures import BASE_TIME, make_record

# the schema every file had before layout 1 (session 8 and earlier), as such files still are
OLD_SCHEMA = """
CREATE TABLE records (id INTEGER PRIMARY KEY, time REAL NOT NULL, call_id TEXT NOT NULL, caller TEXT,
    callee TEXT, trunk TEXT, spc TEXT, action TEXT NOT NULL, attest TEXT, writer TEXT NOT NULL,
    seq INTEGER NOT NULL, data TEXT NOT NULL, verstat TEXT, caller_check TEXT, spc_owner TEXT,
    trunk_rmd TEXT, implementation TEXT, UNIQUE (writer, seq));
CREATE INDEX records_time ON records (time);
CREATE INDEX records_call_id ON records (call_id);
CREATE INDEX records_caller ON records (caller, time);
CREATE INDEX records_callee ON records (callee, time);
"""


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
    # "SCAN records" alone is a full scan of the table; a SEARCH or an index scan is not
    assert "SCAN records" not in plan.replace(f"SCAN records USING COVERING INDEX {index}", ""), plan


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


def test_a_new_file_has_layout_1_and_every_traceback_query_uses_an_index(tmp_path: Path) -> None:
    db = SqliteRecords(str(tmp_path / "tb.db"))
    records = calls(200)
    db.write([("w", i, r) for i, r in enumerate(records)])
    assert db.keyed and db._conn().execute("PRAGMA user_version").fetchone() == (1,)
    got = traceback_plans(db, records[100])
    expected = {"call_id": "records_call_key", "call_id in a window": "records_call_key",
                "caller": "records_caller_key", "callee": "records_callee_key", "window": "records_time",
                "page": "records_time", "next page": "records_time", "measures": "records_time",
                "trim": "records_time"}
    for name, index in expected.items():
        assert len(got[name]) == 1, (name, got[name])
        assert_indexed(got[name][0], index)
    db.close()


def test_traceback_finds_in_a_new_file(tmp_path: Path) -> None:
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


def test_two_values_under_one_key_never_answer_for_each_other(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Call-ID and number gets the same key (as if all collided): the text decides."""
    monkeypatch.setattr(sqlite, "key", lambda text: 7)
    db = SqliteRecords(str(tmp_path / "tb.db"))
    records = calls(20)
    db.write([("w", i, r) for i, r in enumerate(records)])
    for probe in records[::3]:
        assert db.find(None, None, probe.call_id, None, None, 100) == [probe]
        assert db.find(None, None, None, probe.caller, None, 100) == [r for r in records if r.caller == probe.caller]
        assert db.find(None, None, None, None, probe.callee, 100) == [r for r in records if r.callee == probe.callee]
    db.close()


def test_a_file_made_by_the_old_schema_is_read_and_written_by_its_own_indexes(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = calls(30)
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.executemany("INSERT INTO records (time, call_id, caller, callee, trunk, action, writer, seq, data)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     [(r.time, r.call_id, r.caller, r.callee, r.trunk, r.action, "old", i, to_row(r))
                      for i, r in enumerate(old)])
    conn.commit()
    conn.close()

    db = SqliteRecords(str(path))
    new = calls(30, first=30)
    db.write([("new", i, r) for i, r in enumerate(new)])
    db.write([("old", 3, old[3])])                    # a replayed spool: kept once
    assert not db.keyed and db.count() == 60
    conn = db._conn()
    assert conn.execute("PRAGMA user_version").fetchone() == (0,)
    assert "call_key" not in {row[1] for row in conn.execute("PRAGMA table_info(records)")}
    for probe in (old[12], new[12]):
        assert db.find(None, None, probe.call_id, None, None, 10) == [probe]
        window = (probe.time - 3, probe.time + 3)
        assert probe in db.find(*window, None, probe.caller, None, 10)
        assert probe in db.find(*window, None, None, probe.callee, 10)
    assert [r for _, _, r in db.page(BASE_TIME, BASE_TIME + 100, None, 100)] == old + new
    got = traceback_plans(db, old[12])
    expected = {"call_id": "records_call_id", "caller": "records_caller", "callee": "records_callee",
                "page": "records_time", "trim": "records_time"}
    for name, index in expected.items():
        assert_indexed(got[name][0], index)
    assert db.trim(BASE_TIME + 10) == 10 and db.count() == 50
    db.close()


def test_a_file_of_the_old_schema_before_the_analytics_columns_gets_them_and_stays_old(tmp_path: Path) -> None:
    path = tmp_path / "older.db"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA.replace(", verstat TEXT, caller_check TEXT, spc_owner TEXT,\n"
                                          "    trunk_rmd TEXT, implementation TEXT", ""))
    conn.close()
    db = SqliteRecords(str(path))
    db.write([("w", 1, make_record(1, verstat="TN-Validation-Passed"))])
    columns = {row[1] for row in db._conn().execute("PRAGMA table_info(records)")}
    assert not db.keyed and {"verstat", "implementation"} <= columns and "call_key" not in columns
    assert [r.verstat for r in db.find(None, None, make_record(1).call_id, None, None, 5)] == ["TN-Validation-Passed"]
    db.close()


@pytest.mark.parametrize("text, expected", [
    ("12025550123", 12025550123),
    ("442071838750", 442071838750),
    ("999999999999999999", 999999999999999999),
])
def test_a_number_is_its_own_key(text: str, expected: int) -> None:
    assert key(text) == expected


@pytest.mark.parametrize("text", ["0123", "1234567890123456789", "anonymous", "", "call-1@198.51.100.7", "١٢٣"])
def test_other_text_is_keyed_by_its_hash(text: str) -> None:
    import hashlib

    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    assert key(text) == int.from_bytes(digest, "big", signed=True)


@given(st.text(max_size=80))
def test_every_text_has_a_key_sqlite_can_hold(text: str) -> None:
    value = key(text)
    assert value is not None and -(2 ** 63) <= value < 2 ** 63
    assert key(text) == value


def test_a_call_id_with_undecodable_bytes_is_found_in_a_new_file(tmp_path: Path) -> None:
    db = SqliteRecords(str(tmp_path / "tb.db"))
    hostile = dataclasses.replace(make_record(), call_id="evil-\udcff\x00-1")
    db.write([("w", 1, hostile)])
    assert db.find(None, None, hostile.call_id, None, None, 5) == [hostile]
    db.close()
