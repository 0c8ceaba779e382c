"""``sipguard report``'s reader over the real record stores (issue 20): the same day written to
a Redis Stream and to PostgreSQL gives the same summary as the records themselves, read in
bounded pages (PostgreSQL, a page boundary inside an instant) or in one pass (Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sipguard.clock import ManualClock
from sipguard.records.record import CallRecord, TracebackConfig
from sipguard.records.summary import collect, summary
from sipguard.records.writer import open_records
from tests import pg_fixtures
from tests.records_fixtures import START, make_record
from tests.records_fixtures import report_day as day
from tests.redis_fixtures import REDIS_SERVER, RedisProcess, start_redis

pytestmark = pytest.mark.integration
pg_url = pg_fixtures.pg_url       # the fixture: a database of this test's own


@pytest.fixture
def redis() -> Iterator[RedisProcess]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    proc = start_redis()
    yield proc
    proc.stop()


def records() -> list[CallRecord]:
    out = day()
    out += [make_record(500 + i, time=START + 4 * 3600) for i in range(5)]     # one instant
    out += [make_record(600, time=START - 10), make_record(601, time=START + 6 * 3600)]   # outside
    return out


def check(url: str, tmp: str, page: int) -> None:
    cfg = TracebackConfig(path=f"{tmp}/tb.db", spool=f"{tmp}/spool", retention_days=7, store=url)

    async def go() -> None:
        writer = open_records(url, cfg, clock=ManualClock(START + 6 * 3600))
        await writer.start()
        for r in records():
            writer.submit(r)
        await writer.aclose()
        assert writer.counters.written == len(records())
        got = await collect(url, cfg, START, START + 6 * 3600, page=page)
        assert got == summary(records(), START, START + 6 * 3600) and got.calls == 65
    asyncio.run(go())


def test_report_reads_a_redis_stream(redis: RedisProcess, tmp_path: object) -> None:
    check(redis.url, str(tmp_path), page=7)


def test_report_reads_postgresql_in_pages(pg_url: str, tmp_path: object) -> None:
    check(pg_url, str(tmp_path), page=7)
