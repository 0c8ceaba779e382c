"""The trunk score's minute roll-ups in PostgreSQL (migration 4, ``PostgresRecords.trunk_rows``)
against a real server: the same measures as the GROUP BY over every record of the window,
whatever the batches (a spool flushed twice, late records), the windows asked, the record times
on and next to minute boundaries, and the minutes from before the roll-ups began."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from sipguard.records import postgres
from sipguard.records.measures import fold
from sipguard.records.postgres import PostgresRecords
from sipguard.records.record import CallRecord
from tests.pg_fixtures import pg_url  # noqa: F401 (fixture)
from tests.records_fixtures import make_record
from tests.rollup_strategies import BASE, store_scenarios

pytestmark = pytest.mark.integration
NOW = BASE + 600




@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(**store_scenarios(0.000001, 4))
def test_minute_roll_ups_give_what_the_group_by_over_the_window_gives(
        pg_url: str, batches: list[list[CallRecord]], again: bool,  # noqa: F811
        windows: list[list[float]], began: int) -> None:

    async def scenario() -> None:
        pg = PostgresRecords(pg_url, 30000)
        try:
            conn = await pg._connection()
            await conn.execute(f"TRUNCATE {postgres.TABLE}, {postgres.MINUTES}")
            await conn.execute(f"UPDATE {postgres.MINUTES_SINCE} SET since = $1", postgres.utc(BASE - 600))
            seq = 0
            sent = []
            for batch in batches:
                entries = [("w", seq + k + 1, r) for k, r in enumerate(batch)]
                seq += len(batch)
                sent.append(entries)
                assert await pg.write(entries, NOW) == len(entries)
            if again:   # a spool file flushed twice: nothing stored or counted twice
                assert await pg.write(sent[0], NOW) == 0
            if began >= 0:   # the roll-ups began later: the minutes before come from the records
                first = postgres.utc(BASE + began * 60)
                await conn.execute(f"UPDATE {postgres.MINUTES_SINCE} SET since = $1", first)
                await conn.execute(f"DELETE FROM {postgres.MINUTES} WHERE minute < $1", first)
            for since, until in windows:
                got = fold(await pg.trunk_rows(since, until))
                assert got == fold(await pg.measure_rows("trunks", since, until)), (since, until)
                # the refresh's whole minutes, against the GROUP BY over every record of them
                first, last = int(since // 60), int(until // 60) + 1
                assert fold(await pg.trunk_minutes(first, last)) == fold(await postgres._groups(
                    conn, "trunks", postgres.utc(first * 60.0), postgres.utc(last * 60.0), 60.0,
                    before=True)), (first, last)
        finally:
            await pg.aclose()

    asyncio.run(scenario())


def test_the_refresh_reads_the_minutes_and_migration_4_starts_them_after_itself(pg_url: str) -> None:  # noqa: F811
    async def scenario() -> dict[str, Any]:
        pg = PostgresRecords(pg_url, 30000)
        try:
            conn = await pg._connection()
            began = await conn.fetchval(f"SELECT since FROM {postgres.MINUTES_SINCE}")
            now = datetime.datetime.now(datetime.UTC)
            assert began.second == 0 and now < began <= now + datetime.timedelta(minutes=1)
            await conn.execute(f"UPDATE {postgres.MINUTES_SINCE} SET since = $1", postgres.utc(BASE - 600))
            records = [make_record(0, time=BASE + i * 1.5, trunk="carrier-a", attest="A") for i in range(2400)]
            for start in range(0, len(records), 400):
                await pg.write([("w", start + k + 1, r) for k, r in enumerate(records[start:start + 400])], NOW)
            assert await conn.fetchval(f"SELECT sum(calls) FROM {postgres.MINUTES}") == 2400
            since, until = BASE + 10.5, BASE + 3550.25
            got = fold(await pg.trunk_rows(since, until))["carrier-a"]
            assert got.calls == sum(1 for r in records if since <= r.time <= until)
            return {"calls": got.calls}
        finally:
            await pg.aclose()

    assert asyncio.run(scenario())["calls"] > 2000


def test_a_database_without_the_roll_ups_is_read_from_the_records(pg_url: str) -> None:  # noqa: F811
    """A read-only replica still at migration 3 (or a user who may not migrate): the refresh
    reads the records, as before."""
    async def scenario() -> None:
        pg = PostgresRecords(pg_url, 30000)
        try:
            records = [make_record(0, time=BASE + i * 7.5, trunk="carrier-a", attest="B") for i in range(80)]
            await pg.write([("w", i + 1, r) for i, r in enumerate(records)], NOW)
            conn = await pg._connection()
            await conn.execute(f"DROP TABLE {postgres.MINUTES_SINCE}, {postgres.MINUTES}")
            reader = PostgresRecords(pg_url, 30000, writer=False)
            try:
                got = fold(await reader.trunk_rows(BASE + 20, BASE + 500))
                assert got == fold(await reader.measure_rows("trunks", BASE + 20, BASE + 500))
                assert got["carrier-a"].calls == sum(1 for r in records if BASE + 20 <= r.time <= BASE + 500)
            finally:
                await reader.aclose()
        finally:
            await pg.aclose()

    asyncio.run(scenario())
