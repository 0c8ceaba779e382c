"""Know your upstream against real stores: the same generated records give the same measures
from SQLite (GROUP BY), PostgreSQL (GROUP BY over day partitions) and a Redis Stream (scan);
records from before the analytics columns still count; GET /upstreams and the CLI answer them."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sipguard.records import postgres, upstreams
from sipguard.records.measures import fold
from sipguard.records.postgres import PostgresRecords
from sipguard.records.record import CallRecord, TracebackConfig
from sipguard.records.redis_stream import RedisRecords
from sipguard.records.sqlite import SqliteRecords
from sipguard.records.upstreams import Window
from tests import pg_fixtures
from tests.records_fixtures import BASE_TIME, make_record
from tests.redis_fixtures import RedisProcess, redis_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
pg_url = pg_fixtures.pg_url
ROOT = Path(__file__).resolve().parents[2]
VERSTATS = ("TN-Validation-Passed", "TN-Validation-Failed", "No-TN-Validation")


def generated(n: int, seed: int = 7, start: float = BASE_TIME) -> list[CallRecord]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        verstat = rnd.choice(VERSTATS)
        attest = rnd.choice("ABC") if verstat == VERSTATS[0] else None
        spc = rnd.choice(["123A", "456B", None]) if attest else None
        out.append(make_record(i, time=start + i * 7.0, trunk=rnd.choice(["carrier-a", "carrier-b", "carrier-c"]),
                               verstat=verstat, attest=attest, spc=spc,
                               caller_check=rnd.choice(["valid", "valid", "invalid", "unallocated", "dno", "withheld"]),
                               spc_owner=(rnd.choice(["own", "other", "unknown"]) if spc else None),
                               trunk_rmd=rnd.choice(["listed", "listed", "removed"]),
                               trunk_implementation=rnd.choice(["complete", "partial"]), facts={}))
    return out


def expected(records: list[CallRecord], since: float, until: float, min_calls: int = 10) -> dict[str, Any]:
    """The reference: one row per record, folded in Python."""
    inside = [r for r in records if since <= r.time <= until]
    trunks = fold((r.trunk, r.attest, r.verstat, r.caller_check, r.spc_owner, r.trunk_rmd, r.trunk_implementation,
                   1, r.time) for r in inside if r.trunk)
    spcs = fold((r.spc, r.attest, r.verstat, r.caller_check, r.spc_owner, None, None, 1, r.time)
                for r in inside if r.spc)
    return {"upstreams": sorted((m.to_json("trunk", min_calls) for m in trunks.values()), key=lambda d: d["trunk"]),
            "signers": sorted((m.to_json("spc", min_calls) for m in spcs.values()), key=lambda d: d["spc"])}


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    return {"upstreams": sorted(doc["upstreams"], key=lambda d: d["trunk"]),
            "signers": sorted(doc["signers"], key=lambda d: d["spc"])}


RECORDS = generated(400)
WINDOW = Window(BASE_TIME + 700.0, BASE_TIME + 2100.0, 100)    # a part of them, both ends inside


def test_sqlite_group_by_gives_the_reference(tmp_path: Path) -> None:
    cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"))
    db = SqliteRecords(cfg.path)
    db.write([("w", i, r) for i, r in enumerate(RECORDS)])
    plan = " ".join(str(r) for r in db._conn().execute(
        "EXPLAIN QUERY PLAN SELECT trunk, COUNT(*) FROM records WHERE time >= 1 AND time <= 2 GROUP BY trunk"))
    db.close()
    doc = asyncio.run(upstreams.report("memory", cfg, WINDOW, 10))
    assert comparable(doc) == expected(RECORDS, WINDOW.since, WINDOW.until)
    assert doc["upstreams"] and doc["signers"] and doc["since"].endswith("Z")
    assert "records_time" in plan          # the window is found by the time index


def test_a_sqlite_file_from_before_the_columns_is_upgraded_and_its_rows_count(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = make_record(1, time=BASE_TIME + 1000, verstat="TN-Validation-Failed")
    v2 = json.dumps([2, *(getattr(old, name) for name in CallRecord._fields
                          if name in postgres_v2_fields())])
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE records (id INTEGER PRIMARY KEY, time REAL NOT NULL, call_id TEXT NOT NULL,
        caller TEXT, callee TEXT, trunk TEXT, spc TEXT, action TEXT NOT NULL, attest TEXT, writer TEXT NOT NULL,
        seq INTEGER NOT NULL, data TEXT NOT NULL, UNIQUE (writer, seq));""")
    db.execute("INSERT INTO records (time, call_id, trunk, action, writer, seq, data) VALUES (?,?,?,?,?,?,?)",
               (old.time, old.call_id, old.trunk, old.action, "w", 1, v2))
    db.commit()
    db.close()
    new = SqliteRecords(str(path))
    new.write([("w", 2, make_record(2, time=BASE_TIME + 1001, caller_check="dno"))])
    new.close()
    cfg = TracebackConfig(path=str(path))
    doc = asyncio.run(upstreams.report("memory", cfg, WINDOW, 1))
    (row,) = doc["upstreams"]
    assert row["calls"] == 2 and row["failed"] == 1 and row["unknown_caller"] == 1 and row["dno_share"] == 1.0


def postgres_v2_fields() -> tuple[str, ...]:
    from sipguard.records.record import ROW_FIELDS
    return ROW_FIELDS[2]


def test_postgresql_group_by_gives_the_reference_and_migration_2_keeps_old_rows(pg_url: str, tmp_path: Path) -> None:
    cfg = TracebackConfig(store=pg_url, retention_days=30000, path=str(tmp_path / "x.db"))

    async def scenario() -> dict[str, Any]:
        conn = await postgres.connect(pg_url)
        try:   # a database at schema 1, with a row written then
            async with conn.transaction():
                await conn.execute(f"CREATE TABLE {postgres.VERSION_TABLE} (version integer PRIMARY KEY,"
                                   " description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
                await conn.execute(postgres.MIGRATIONS[0][2])
                await conn.execute(f"INSERT INTO {postgres.VERSION_TABLE} (version, description) VALUES (1, 'x')")
            await postgres.ensure_partitions(conn, [postgres.day_of(BASE_TIME)])
            old = make_record(0, time=BASE_TIME + 800, trunk="legacy", verstat="TN-Validation-Passed", attest="B")
            v2 = json.dumps([2, *(getattr(old, name) for name in postgres_v2_fields())])
            await conn.execute(f"INSERT INTO {postgres.TABLE} VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                               postgres.utc(old.time), old.call_id, None, None, "legacy", None, "forward", "B",
                               "old", 1, v2)
            assert (await postgres.migrate(conn)) == postgres.Migrated(1, postgres.LATEST)
        finally:
            await conn.close()
        pg = PostgresRecords(pg_url, 30000)
        await pg.write([("w", i, r) for i, r in enumerate(RECORDS)], BASE_TIME)
        await pg.aclose()
        return await upstreams.report("postgresql", cfg, WINDOW, 10)

    doc = asyncio.run(scenario())
    legacy = next(r for r in doc["upstreams"] if r["trunk"] == "legacy")
    assert legacy["verified"] == 1 and legacy["attest"]["B"] == 1 and legacy["unknown_caller"] == 1
    doc["upstreams"] = [r for r in doc["upstreams"] if r["trunk"] != "legacy"]
    assert comparable(doc) == expected(RECORDS, WINDOW.since, WINDOW.until)


def test_redis_stream_scan_gives_the_reference(redis_server: RedisProcess) -> None:  # noqa: F811
    url = redis_server.url.rsplit("/", 1)[0] + "/9"
    cfg = TracebackConfig(retention_days=7)

    async def scenario() -> dict[str, Any]:
        rs = RedisRecords(url)
        await rs.client.flushdb()
        for start in range(0, len(RECORDS), 100):
            await rs.write([("w", i + 1, RECORDS[i]) for i in range(start, start + 100)], 0, BASE_TIME)
        await rs.aclose()
        return await upstreams.report(url, cfg, WINDOW, 10)

    assert comparable(asyncio.run(scenario())) == expected(RECORDS, WINDOW.since, WINDOW.until)


# -- the endpoint and the command -----------------------------------------------------------

def _config(tmp_path: Path, records: list[CallRecord], token: bool = False) -> Path:
    import shutil

    import yaml
    shutil.copytree(ROOT / "config/demo", tmp_path / "demo", dirs_exist_ok=True)
    data = yaml.safe_load((ROOT / "config/sipguard.example.yaml").read_text())
    data.pop("policy", None)
    data["traceback"] = {"path": str(tmp_path / "tb.db"), "spool": str(tmp_path / "spool")}
    data["upstreams"] = {"score_min_calls": 10}
    path = tmp_path / "sipguard.yaml"
    path.write_text(yaml.safe_dump(data))
    db = SqliteRecords(str(tmp_path / "tb.db"))
    db.write([("w", i, r) for i, r in enumerate(records)])
    db.close()
    return path


def test_get_upstreams_contract_token_and_bad_parameters(tmp_path: Path) -> None:
    import time

    from sipguard.config import load_config
    from sipguard.observe.http import HttpServer
    from tests.unit.test_observe_http import request

    now = time.time()
    config = load_config(str(_config(tmp_path, generated(300, start=now - 3000))))
    token = "t" * 20

    async def scenario() -> list[tuple[int, Any]]:
        server = HttpServer(config.store, config.traceback, token=token, upstreams=config.upstreams)
        await server.start("127.0.0.1", 0)
        out = []
        try:
            for path, auth in (("/upstreams?since=1h", True), ("/upstreams", False), ("/upstreams?since=900d", True),
                               ("/upstreams?n=abc", True), ("/upstreams?since=1h&since=2h", True),
                               ("/upstreams?since=1h&n=1", True)):
                head = f"GET {path} HTTP/1.1\r\nHost: x\r\n" + (f"Authorization: Bearer {token}\r\n" if auth else "")
                status, _, body = await request(server.port, (head + "\r\n").encode())
                out.append((status, json.loads(body)))
        finally:
            await server.aclose()
        return out

    ok, no_token, too_old, bad_n, twice, one = asyncio.run(scenario())
    assert ok[0] == 200 and set(ok[1]) >= {"since", "until", "upstreams", "signers"}
    assert {r["trunk"] for r in ok[1]["upstreams"]} == {"carrier-a", "carrier-b", "carrier-c"}
    row = ok[1]["upstreams"][0]
    assert isinstance(row["calls"], int) and 0 <= row["score"] <= 100 and row["rmd"] in ("listed", "removed")
    assert all(isinstance(s["spc"], str) and isinstance(s["calls"], int) for s in ok[1]["signers"])
    assert no_token[0] == 401
    assert too_old[0] == 400 and too_old[1]["parameter"] == "since" and "retention" in too_old[1]["error"]
    assert bad_n[0] == 400 and bad_n[1]["parameter"] == "n"
    assert twice[0] == 400
    assert one[0] == 200 and len(one[1]["upstreams"]) == 1 and one[1]["upstreams_total"] == 3


def test_cli_upstreams_table_jsonl_and_nothing_found(tmp_path: Path) -> None:
    import time
    path = _config(tmp_path, generated(200, start=time.time() - 2000))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sipguard", "upstreams", "-c", str(path), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=60,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})

    table = cli("--since", "1h")
    assert table.returncode == 0, table.stderr
    assert "upstreams (3 of 3)" in table.stdout and "carrier-a" in table.stdout and "score" in table.stdout
    lines = [json.loads(line) for line in cli("--since", "1h", "--format", "jsonl").stdout.splitlines()]
    assert {line.get("trunk") for line in lines} >= {"carrier-a", "carrier-b", "carrier-c"}
    assert any("spc" in line for line in lines)
    empty = cli("--since", "1h", "--until", "2020-01-01T00:00:00Z")
    assert empty.returncode in (1, 3)
    bad = cli("--since", "tomorrow")
    assert bad.returncode == 1 and "since" in bad.stderr


# -- every record of a window, page by page (policy whatif reads them so) ---------------------

def _iterated(url: str, cfg: TracebackConfig, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from sipguard.records import query
    monkeypatch.setattr(query, "PAGE", 7)       # many pages, and records sharing a time across pages

    async def collect() -> list[str]:
        return [r.call_id async for r in query.iterate(url, cfg, WINDOW.since, WINDOW.until)]
    return asyncio.run(collect())


SAME_TIME = [make_record(1000 + i, time=BASE_TIME + 1400.0) for i in range(10)]   # one instant, 10 calls


def test_iterate_pages_sqlite_and_postgresql_and_scans_redis(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                             redis_server: RedisProcess) -> None:  # noqa: F811
    everything = RECORDS + SAME_TIME
    want = sorted(r.call_id for r in everything if WINDOW.since <= r.time <= WINDOW.until)
    cfg = TracebackConfig(path=str(tmp_path / "tb.db"))
    db = SqliteRecords(cfg.path)
    db.write([("w", i, r) for i, r in enumerate(everything)])
    db.close()
    got = _iterated("memory", cfg, monkeypatch)
    assert sorted(got) == want and len(got) == len(set(got))

    async def to_pg() -> None:
        pg = PostgresRecords(pg_url, 30000)
        await pg.write([("w", i, r) for i, r in enumerate(everything)], BASE_TIME)
        await pg.aclose()
    asyncio.run(to_pg())
    got = _iterated(pg_url, TracebackConfig(store=pg_url, retention_days=30000), monkeypatch)
    assert sorted(got) == want and len(got) == len(set(got))

    url = redis_server.url.rsplit("/", 1)[0] + "/10"

    async def to_redis() -> None:
        rs = RedisRecords(url)
        await rs.client.flushdb()
        await rs.write([("w", i + 1, r) for i, r in enumerate(sorted(everything, key=lambda r: r.time))], 0, BASE_TIME)
        await rs.aclose()
    asyncio.run(to_redis())
    got = _iterated(url, TracebackConfig(retention_days=7), monkeypatch)
    assert sorted(got) == want


def test_get_upstreams_reads_postgresql_and_an_outage_is_503(pg_url: str, tmp_path: Path) -> None:
    import time

    from sipguard.observe.http import HttpServer
    from tests.unit.test_observe_http import get, request

    now = time.time()
    records = generated(120, start=now - 1000)

    async def scenario() -> list[tuple[int, Any]]:
        pg = PostgresRecords(pg_url, 548)
        await pg.write([("w", i, r) for i, r in enumerate(records)], now)
        await pg.aclose()
        out = []
        for url in (pg_url, "postgresql://postgres@127.0.0.1:1/none"):
            server = HttpServer(url, TracebackConfig(store=url, retention_days=548))
            await server.start("127.0.0.1", 0)
            try:
                status, _, body = await request(server.port, get(server.port, "/upstreams?since=1h"))
                out.append((status, json.loads(body)))
            finally:
                await server.aclose()
        return out

    (ok, body), (down, error) = asyncio.run(scenario())
    assert ok == 200 and sum(r["calls"] for r in body["upstreams"]) == 120
    assert comparable(body) == expected(records, now - 3600, now + 1, min_calls=50)
    assert down == 503 and "cannot read records from postgresql://postgres@127.0.0.1:1/none" in error["error"]


def test_postgresql_hourly_rollups_match_the_records_late_records_roll_again_read_only_reads_records(
        pg_url: str) -> None:
    import time as clock
    records = generated(3000, seed=11)                        # 7 s apart: about 5.8 hours
    since, until = BASE_TIME + 1000.0, BASE_TIME + 20000.0     # partial hours at both ends
    cfg = TracebackConfig(store=pg_url, retention_days=30000)
    late = make_record(5000, time=BASE_TIME + 9000.0, trunk="carrier-a", verstat="TN-Validation-Failed",
                       caller_check="dno", trunk_rmd="removed", trunk_implementation="none", facts={})
    late2 = make_record(5001, time=BASE_TIME + 16000.0, trunk="carrier-z", attest="A", spc="999Z",
                        verstat="TN-Validation-Passed", caller_check="invalid", spc_owner="other", facts={})

    async def scenario() -> list[Any]:
        pg = PostgresRecords(pg_url, 30000)
        await pg.write([("w", i, r) for i, r in enumerate(records)], BASE_TIME + 30000)
        first = await pg.measure_rows_rolled(since, until, clock.time())
        second = await pg.measure_rows_rolled(since, until, clock.time())
        doc1 = await upstreams.report("postgresql", cfg, Window(since, until, 100), 10)
        await pg.write([("w2", 1, late), ("w2", 2, late2)], clock.time())   # a spool flushed long after
        third = await pg.measure_rows_rolled(since, until, clock.time())
        doc2 = await upstreams.report("postgresql", cfg, Window(since, until, 100), 10)
        await pg.aclose()
        conn = await postgres.connect(pg_url)
        try:
            await conn.execute(f"DELETE FROM {postgres.ROLLED}")
            await conn.execute(f"DELETE FROM {postgres.HOURS}")
            name = pg_url.rsplit("/", 1)[1]
            await conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
        finally:
            await conn.close()
        doc3 = await upstreams.report(pg_url, cfg, Window(since, until, 100), 10)
        conn = await postgres.connect(pg_url)
        try:
            rolled = await conn.fetchval(f"SELECT count(*) FROM {postgres.ROLLED}")
            await conn.execute("SET default_transaction_read_only = off")
            await conn.execute(f"ALTER DATABASE {name} RESET default_transaction_read_only")
        finally:
            await conn.close()
        return [first[2], second[2], third[2], doc1, doc2, doc3, rolled]

    rolled1, rolled2, rolled3, doc1, doc2, doc3, rolled_read_only = asyncio.run(scenario())
    whole = int((until // 3600) - -(-since // 3600))            # hours wholly inside the window: 4
    assert whole == 4 and rolled1 == whole and rolled2 == 0 and rolled3 == 2    # then the late ones' 2 hours
    assert comparable(doc1) == expected(records, since, until)
    assert comparable(doc2) == expected([*records, late, late2], since, until)
    assert comparable(doc3) == expected([*records, late, late2], since, until) and rolled_read_only == 0
    assert any(r["trunk"] == "carrier-z" for r in doc2["upstreams"]) and any(r["spc"] == "999Z" for r in doc2["signers"])


def test_retention_drops_the_rollups_with_their_partitions(pg_url: str) -> None:
    import time as clock

    async def scenario() -> tuple[int, int, int]:
        pg = PostgresRecords(pg_url, 30000)
        await pg.write([("w", i, r) for i, r in enumerate(generated(1500, seed=3))], BASE_TIME + 30000)
        _, _, rolled = await pg.measure_rows_rolled(BASE_TIME, BASE_TIME + 10000, clock.time())
        await pg.aclose()
        short = PostgresRecords(pg_url, 30)          # 2023's days are now older than retention
        await short.trim(clock.time())
        await short.aclose()
        conn = await postgres.connect(pg_url)
        try:
            return (rolled, await conn.fetchval(f"SELECT count(*) FROM {postgres.HOURS}"),
                    await conn.fetchval(f"SELECT count(*) FROM {postgres.ROLLED}"))
        finally:
            await conn.close()

    rolled, hours, marks = asyncio.run(scenario())
    assert rolled == 2 and hours == 0 and marks == 0


def test_the_score_refresh_over_postgresql_scores_and_rolls_the_hours_that_ended(pg_url: str) -> None:
    import time as clock

    from sipguard.records.measures import UpstreamsConfig
    from sipguard.records.upstreams import ScoreRefresher
    now = clock.time()
    records = generated(600, seed=5, start=now - 3 * 3600)      # 7 s apart: the last 70 minutes are empty
    cfg = TracebackConfig(store=pg_url, retention_days=548)
    installed: list[dict[str, int]] = []

    async def scenario() -> int:
        pg = PostgresRecords(pg_url, 548)
        await pg.write([("w", i, r) for i, r in enumerate(records)], now)
        await pg.aclose()
        refresher = ScoreRefresher("x", cfg, UpstreamsConfig(score_window=4 * 3600, score_min_calls=10),
                                   installed.append, clock=lambda: now)
        await refresher.refresh()
        conn = await postgres.connect(pg_url)
        try:
            return int(await conn.fetchval(f"SELECT count(*) FROM {postgres.ROLLED}"))
        finally:
            await conn.close()

    assert asyncio.run(scenario()) == 3
    want = {m["trunk"]: m["score"] for m in expected(records, now - 4 * 3600, now)["upstreams"]}
    assert installed == [want] and set(want) == {"carrier-a", "carrier-b", "carrier-c"}


def test_a_report_with_many_hours_not_rolled_groups_the_records_instead(pg_url: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import time as clock
    monkeypatch.setattr(postgres, "ROLL_INLINE", 3)             # the window below has 4 whole hours
    records = generated(3000, seed=13)
    since, until = BASE_TIME + 1000.0, BASE_TIME + 20000.0

    async def scenario() -> tuple[int, int, Any]:
        pg = PostgresRecords(pg_url, 30000)
        await pg.write([("w", i, r) for i, r in enumerate(records)], BASE_TIME + 30000)
        trunks, spcs, rolled = await pg.measure_rows_rolled(since, until, clock.time())
        conn = await pg._connection()
        marks = int(await conn.fetchval(f"SELECT count(*) FROM {postgres.ROLLED}"))
        await pg.aclose()
        return rolled, marks, fold(trunks)

    rolled, marks, trunks = asyncio.run(scenario())
    assert rolled == 0 and marks == 0
    assert sorted((m.to_json("trunk", 10) for m in trunks.values()), key=lambda d: d["trunk"]) == \
        expected(records, since, until)["upstreams"]


def test_the_consoles_series_is_the_same_from_every_store(pg_url: str, redis_server: RedisProcess,  # noqa: F811
                                                           tmp_path: Path) -> None:
    """``upstreams.series`` (the console's plots: a span of whole minutes a bucket, all read over
    one connection) gives the same buckets from SQLite, PostgreSQL and a Redis Stream, and they
    hold every record of their minutes."""
    import time as clock
    now = clock.time()
    records = generated(400, seed=3, start=now - 2900)
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/8"
    sqlite_cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"))
    pg_cfg = TracebackConfig(store=pg_url, retention_days=548)

    async def scenario() -> list[dict[str, Any]]:
        db = SqliteRecords(sqlite_cfg.path)
        db.write([("w", i, r) for i, r in enumerate(records)])
        db.close()
        pg = PostgresRecords(pg_url, 548)
        await pg.write([("w", i, r) for i, r in enumerate(records)], now)
        await pg.aclose()
        rs = RedisRecords(redis_url)
        await rs.client.flushdb()
        await rs.write([("w", i + 1, r) for i, r in enumerate(records)], 0, now)
        await rs.aclose()
        return [await upstreams.series(url, cfg, now, 6, 600.0, 1)
                for url, cfg in (("memory", sqlite_cfg), (pg_url, pg_cfg), (redis_url, TracebackConfig(retention_days=7)))]

    sqlite_doc, pg_doc, redis_doc = asyncio.run(scenario())
    assert sqlite_doc == pg_doc == redis_doc
    first = int(now // 60) + 1 - 6 * 10          # six buckets of ten minutes, the last ending with this one
    inside = [r for r in records if int(r.time // 60) >= first]
    assert sum(sum(t["calls"]) for t in sqlite_doc["trunks"].values()) == len(inside) > 0
