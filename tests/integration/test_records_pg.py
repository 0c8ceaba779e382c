"""Records in PostgreSQL (issue 19, section 2), against a real server and a database of the
test's own: migrations once and idempotent under concurrency, day partitions ahead, retention
by dropping whole partitions, (writer, seq) kept once in any order, the look-ups the
traceback CLI, the HTTP endpoint and the ITG answer use, and ``sipguard db migrate``."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sipguard.clock import ManualClock
from sipguard.records import postgres, query
from sipguard.records.postgres import PostgresRecords
from sipguard.records.record import TracebackConfig
from sipguard.records.writer import PostgresSink, open_records
from tests import pg_fixtures
from tests.records_fixtures import BASE_TIME, make_record

pytestmark = pytest.mark.integration
pg_url = pg_fixtures.pg_url       # the fixture: a database of this test's own
DAY = 86400.0


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _fetch(url: str, sql: str, *args: Any) -> list[Any]:
    conn = await postgres.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def test_migrations_run_once_and_are_idempotent_under_concurrency(pg_url: str) -> None:
    async def scenario() -> list[postgres.Migrated]:
        conns = [await postgres.connect(pg_url) for _ in range(4)]
        try:
            first = await asyncio.gather(*(postgres.migrate(c) for c in conns))
            again = await postgres.migrate(conns[0])
            return [*first, again]
        finally:
            for c in conns:
                await c.close()

    results = run(scenario())
    # exactly one of the four concurrent starts migrated; the rest (and a rerun) found it done
    assert sorted((m.before, m.after) for m in results[:4]) == [(0, postgres.LATEST)] + [
        (postgres.LATEST, postgres.LATEST)] * 3
    assert (results[4].before, results[4].after) == (postgres.LATEST, postgres.LATEST)
    rows = run(_fetch(pg_url, f"SELECT version FROM {postgres.VERSION_TABLE}"))
    assert [r[0] for r in rows] == [m[0] for m in postgres.MIGRATIONS]
    indexes = {r[0] for r in run(_fetch(pg_url, "SELECT indexname FROM pg_indexes WHERE tablename = $1",
                                        postgres.TABLE))}
    assert {f"{postgres.TABLE}_{n}" for n in ("writer_seq", "caller", "callee", "trunk", "call_id")} <= indexes


def test_partitions_made_ahead_by_several_writers_at_once(pg_url: str) -> None:
    now = BASE_TIME

    async def scenario() -> None:
        dbs = [PostgresRecords(pg_url, 30) for _ in range(3)]
        try:
            await asyncio.gather(*(db.open(now) for db in dbs))
            await asyncio.gather(*(db.trim(now) for db in dbs))
        finally:
            for db in dbs:
                await db.aclose()

    run(scenario())
    names = sorted(r[0] for r in run(_fetch(
        pg_url, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = $1::regclass", postgres.TABLE)))
    today = datetime.datetime.fromtimestamp(now, datetime.UTC).date()
    assert names == [postgres.partition_name(today + datetime.timedelta(days=n)) for n in range(postgres.AHEAD + 1)]


def test_retention_drops_whole_day_partitions_and_never_readds_expired_records(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "sipguard.records")
    retention = 10

    async def scenario() -> tuple[int, list[float], int]:
        db = PostgresRecords(pg_url, retention)
        try:
            # records on 15 consecutive days, written while all were within retention
            entries = [("w1", d + 1, make_record(int(d * DAY), call_id=f"day-{d}")) for d in range(15)]
            assert await db.write(entries, BASE_TIME + 5 * DAY) == 15
            later = BASE_TIME + 20 * DAY      # days 0..9 are now wholly older than 10 days
            dropped = await db.trim(later)
            kept = [r.time for r in await db.find(None, None, None, None, None, 100)]
            # a spool flushed late brings day 2 back: retention would drop it, it is not written
            readded = await db.write([("w1", 3, make_record(int(2 * DAY), call_id="day-2"))], later)
            return dropped, kept, readded
        finally:
            await db.aclose()

    dropped, kept, readded = run(scenario())
    assert [round((t - BASE_TIME) / DAY) for t in kept] == list(range(10, 15))
    assert readded == 0
    assert dropped >= 0
    days = sorted(r[0] for r in run(_fetch(
        pg_url, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = $1::regclass", postgres.TABLE)))
    base_day = datetime.datetime.fromtimestamp(BASE_TIME, datetime.UTC).date()
    assert days[0] == postgres.partition_name(base_day + datetime.timedelta(days=10))
    expired = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]   # expiry is logged
    assert len(expired) == 1 and postgres.partition_name(base_day) in expired[0] and "10 days" in expired[0]


def test_each_writer_seq_kept_once_whatever_the_order(pg_url: str) -> None:
    async def scenario() -> tuple[list[int], int]:
        db = PostgresRecords(pg_url, 548)
        try:
            entries = [("w1", s, make_record(s * 10)) for s in range(1, 101)]
            new = [await db.write(entries[50:], BASE_TIME)]          # a later spool file first
            new.append(await db.write(entries[:60], BASE_TIME))     # then the earlier one, overlapping
            new.append(await db.write(list(reversed(entries)), BASE_TIME))   # the whole replayed
            new.append(await db.write([("w2", 1, make_record(10))], BASE_TIME))  # another writer, same seq
            return new, await db.count()
        finally:
            await db.aclose()

    new, count = run(scenario())
    assert new == [50, 50, 0, 1]
    assert count == 101


def test_lookups_by_caller_callee_call_id_trunk_and_top(pg_url: str, tmp_path: Path) -> None:
    cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"), store=pg_url)

    async def scenario() -> None:
        writer = open_records("memory", cfg, clock=ManualClock(BASE_TIME + 1000))
        assert isinstance(writer.sink, PostgresSink)
        await writer.start()
        for i in range(50):
            writer.submit(make_record(i * 60, caller=f"1202555{i:04d}", callee="13125550188",
                                      trunk="carrier-b" if i % 2 else "carrier-a",
                                      action="reject" if i % 5 == 0 else "forward", status=608 if i % 5 == 0 else None))
        writer.submit(make_record(99_000, call_id="the-one"))
        await writer.aclose()
        assert writer.counters.written == 51
        got = await query.find("memory", cfg, caller="+1 (202) 555-0007", callee="tel:+1-312-555-0188",
                               at=BASE_TIME + 7 * 60 + 30)
        assert [r.call_id for r in got] == [f"call-{7 * 60}@198.51.100.7"]
        assert got[0] == make_record(7 * 60, caller="12025550007", callee="13125550188", trunk="carrier-b")
        around = await query.find("memory", cfg, at=BASE_TIME + 600)
        assert [r.time - BASE_TIME for r in around] == [300, 360, 420, 480, 540, 600, 660, 720, 780, 840, 900]
        assert [r.call_id for r in await query.find("memory", cfg, call_id="the-one")] == ["the-one"]
        assert len(await query.find("memory", cfg, since=BASE_TIME, until=BASE_TIME + 120)) == 3
        assert len(await query.find("memory", cfg, limit=5)) == 5
        top = await query.top("memory", cfg, "trunks", BASE_TIME, None)
        assert top == [("carrier-a", 5, 0), ("carrier-b", 5, 0)]

    run(scenario())


def test_the_plan_for_a_caller_in_a_window_uses_the_index_and_prunes_days(pg_url: str) -> None:
    async def scenario() -> str:
        db = PostgresRecords(pg_url, 548)
        try:
            await db.write([("w", s, make_record(int(s * 3600), caller=f"1202555{s % 97:04d}"))
                            for s in range(1, 24 * 5)], BASE_TIME + 6 * DAY)
        finally:
            await db.aclose()
        conn = await postgres.connect(pg_url)
        try:
            await conn.execute(f"ANALYZE {postgres.TABLE}")
            await conn.execute("SET enable_seqscan = off")
            rows = await conn.fetch(f"EXPLAIN SELECT data FROM {postgres.TABLE} WHERE caller = $1 AND at >= $2"
                                    " AND at <= $3", "12025550007", postgres.utc(BASE_TIME + DAY),
                                    postgres.utc(BASE_TIME + DAY + 600))
            return "\n".join(r[0] for r in rows)
        finally:
            await conn.close()

    plan = run(scenario())
    assert f"{postgres.TABLE}_p" in plan and "caller" in plan
    assert plan.count(f"on {postgres.TABLE}_p") <= 1, plan   # one day's partition, not five


def test_cli_db_migrate_and_traceback_read_postgresql(pg_url: str, tmp_path: Path) -> None:
    config = tmp_path / "sipguard.yaml"
    config.write_text(f"store: memory\ntraceback: {{store: '{pg_url}', spool: {tmp_path / 'spool'},"
                      " retention_days: 548}\n")
    cli = [sys.executable, "-m", "sipguard"]
    first = subprocess.run([*cli, "db", "migrate", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert f"from version 0 to {postgres.LATEST}" in first.stdout
    again = subprocess.run([*cli, "db", "migrate", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "nothing to migrate" in again.stdout
    status = subprocess.run([*cli, "db", "status", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert f"schema version {postgres.LATEST}" in status.stdout

    async def write() -> None:
        db = PostgresRecords(pg_url, 548)
        try:
            await db.write([("w", 1, make_record(0, call_id="cli-call"))], BASE_TIME)
        finally:
            await db.aclose()

    run(write())
    out = subprocess.run([*cli, "traceback", "-c", str(config), "--caller", "+12025550123", "--at",
                          str(BASE_TIME), "--format", "jsonl"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["call_id"] for line in out.stdout.splitlines()] == ["cli-call"]


def test_a_database_without_records_is_a_clear_query_error(pg_url: str, tmp_path: Path) -> None:
    cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"),
                          store=pg_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@"))
    with pytest.raises(query.QueryError) as err:
        run(query.find("memory", cfg, caller="2025550123", at=BASE_TIME))
    assert "no sipguard_records table" in str(err.value)
    assert "s3cret" not in str(err.value)


def test_http_traceback_and_answer_read_postgresql_and_an_outage_is_503(pg_url: str, tmp_path: Path) -> None:
    from sipguard.observe.http import HttpServer

    cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"), store=pg_url)
    down = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"),
                           store="postgresql://postgres:pw@127.0.0.1:1/none")

    async def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        head, _, body = (await reader.read()).partition(b"\r\n\r\n")
        writer.close()
        return int(head.split()[1]), json.loads(body)

    async def scenario() -> None:
        writer = open_records("memory", cfg, clock=ManualClock(BASE_TIME))
        await writer.start()
        for i in range(5):
            writer.submit(make_record(i * 100, caller=f"1202555000{i}"))
        await writer.aclose()
        servers = [HttpServer("memory", c, ready=lambda: (True, {})) for c in (cfg, down)]
        for server in servers:
            await server.start("127.0.0.1", 0)
        try:
            port = servers[0].port
            status, doc = await get(port, f"/traceback?caller=%2B12025550003&at={BASE_TIME + 250}")
            assert status == 200 and doc["count"] == 1
            assert doc["records"][0]["time_utc"] == "2023-11-14T22:18:20.000Z"
            status, doc = await get(port, f"/traceback/answer?caller=%2B12025550003&at={BASE_TIME + 250}")
            assert status == 200 and doc["answer"] == "found"
            status, doc = await get(port, "/traceback?top=trunks&since=0")
            assert status == 200 and doc["rows"] == []
            status, doc = await get(servers[1].port, f"/traceback?caller=%2B12025550003&at={BASE_TIME}")
            assert status == 503 and "postgres:***@" in doc["error"] and "pw@" not in doc["error"]
        finally:
            for server in servers:
                await server.aclose()

    run(scenario())


def test_a_call_id_with_raw_bytes_or_nul_is_stored_whole_and_found(pg_url: str) -> None:
    """A hostile Call-ID (an undecodable byte, kept by the SIP parser as a lone surrogate, and
    NUL) must not fail its batch: that batch would be retried forever and hold every later
    record in the spool."""
    odd = "a\udcffb\x00c@198.51.100.7"

    async def scenario() -> tuple[int, list[Any], list[Any]]:
        db = PostgresRecords(pg_url, 548)
        try:
            new = await db.write([("w", 1, make_record(0, call_id=odd)), ("w", 2, make_record(1))], BASE_TIME)
            return new, await db.find(None, None, odd, None, None, 10), await db.find(None, None, None, None,
                                                                                      None, 10)
        finally:
            await db.aclose()

    new, by_call_id, every = run(scenario())
    assert new == 2
    assert [r.call_id for r in by_call_id] == [odd]          # the record keeps every byte
    assert len(every) == 2


def test_each_identity_headers_result_is_stored_without_a_schema_change(pg_url: str) -> None:
    """The record's `passports` (one result per Identity header) lives in the row's JSON
    (`data`), a new row version: no migration."""
    results = ("shaken:passed", "div:failed:div-no-history", "rcd:failed:rcdi-mismatch")

    async def scenario() -> list[Any]:
        db = PostgresRecords(pg_url, 548)
        try:
            await db.write([("pp", 1, make_record(0, call_id="pp-1@x", passports=results))], BASE_TIME)
            return await db.find(None, None, "pp-1@x", None, None, 10)
        finally:
            await db.aclose()

    found = run(scenario())
    assert [r.passports for r in found] == [results]
