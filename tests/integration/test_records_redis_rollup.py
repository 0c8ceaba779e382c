"""The trunk score's minute roll-ups in Redis (append.lua, ``RedisRecords.trunk_rows``) against
a real redis-server: the same measures as a scan of every record of the window, whatever the
batches (a spool flushed twice, late records), the windows asked, the record times on and next
to minute boundaries, and the minutes from before the roll-ups began."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from sipguard.records import upstreams
from sipguard.records.measures import fold
from sipguard.records.record import CallRecord
from sipguard.records.redis_stream import TM, TM_SINCE, RedisRecords, _minute
from tests.records_fixtures import make_record
from tests.redis_fixtures import RedisProcess, redis_server  # noqa: F401 (fixture)
from tests.rollup_strategies import BASE, store_scenarios

pytestmark = pytest.mark.integration
NOW = BASE + 600




def reference(kept: dict[tuple[str, int], CallRecord], since: float, until: float) -> dict[str, Any]:
    return fold((r.trunk, r.attest, r.verstat, r.caller_check, r.spc_owner, r.trunk_rmd, r.trunk_implementation,
                 1, r.time) for r in kept.values() if r.trunk is not None and since <= r.time <= until)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(**store_scenarios(0.0004, 5))
def test_minute_roll_ups_give_what_a_scan_of_the_window_gives(
        redis_server: RedisProcess, batches: list[list[CallRecord]], again: bool,  # noqa: F811
        windows: list[list[float]], began: int) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/11"

    async def scenario() -> None:
        rs = RedisRecords(url)
        try:
            await rs.client.flushdb()
            kept: dict[tuple[str, int], CallRecord] = {}
            seq = 0
            sent = []
            for batch in batches:
                entries = [("w", seq + k + 1, r) for k, r in enumerate(batch)]
                seq += len(batch)
                sent.append(entries)
                await rs.write(entries, 0, NOW)
                kept.update({(w, s): r for w, s, r in entries})
            if again:   # a spool file flushed twice: nothing counted twice
                await rs.write(sent[0], 0, NOW)
            # the roll-ups began before every record (-1), or later: the minutes before that
            # come from the stream (all written now, so the roll-ups hold every minute)
            first = _minute(BASE) + (began if began >= 0 else -5)
            await rs.client.set(TM_SINCE, first)
            for minute in range(_minute(BASE) - 3, first):
                await rs.client.delete(TM + str(minute))
            for since, until in windows:
                got = fold(await rs.trunk_rows(since, until))
                assert got == reference(kept, since, until), (since, until)
                scanned, _ = await upstreams._scan(rs, since, until, False)
                assert got == scanned
                # the refresh's whole minutes, against every record of those minutes
                first, last = _minute(since), _minute(until) + 1
                assert fold(await rs.trunk_minutes(first, last)) == fold(
                    (r.trunk, r.attest, r.verstat, r.caller_check, r.spc_owner, r.trunk_rmd,
                     r.trunk_implementation, 1, r.time) for r in kept.values()
                    if r.trunk is not None and first <= _minute(r.time) < last), (first, last)
        finally:
            await rs.aclose()

    asyncio.run(scenario())


def test_the_score_refresh_reads_minutes_not_the_window(redis_server: RedisProcess) -> None:  # noqa: F811
    """An hour of records: the refresh decodes only the two partial minutes' entries."""
    url = redis_server.url.rsplit("/", 1)[0] + "/12"

    async def scenario() -> None:
        rs = RedisRecords(url)
        try:
            await rs.client.flushdb()
            records = [make_record(0, time=BASE + i * 1.5, trunk="carrier-a", attest="A") for i in range(2400)]
            for start in range(0, len(records), 200):
                await rs.write([("w", start + k + 1, r) for k, r in enumerate(records[start:start + 200])], 0,
                               BASE - 120)   # the roll-ups began before the first record
            decoded = 0
            real = rs.scan

            async def counting(since: float | None, until: float | None) -> Any:
                nonlocal decoded
                async for r in real(since, until):
                    decoded += 1
                    yield r

            rs.scan = counting   # type: ignore[method-assign]
            since, until = BASE + 10.5, BASE + 3550.25
            got = fold(await rs.trunk_rows(since, until))["carrier-a"]
            assert got.calls == sum(1 for r in records if since <= r.time <= until)
            assert decoded < 50, decoded      # the two partial minutes' (about 40), not 2,400
        finally:
            await rs.aclose()

    asyncio.run(scenario())


def test_the_script_refuses_a_batch_whose_record_time_is_not_a_number(redis_server: RedisProcess) -> None:  # noqa: F811
    """Checked before anything is written: a half-written batch would count records twice."""
    import redis

    from sipguard.records import redis_stream

    url = redis_server.url.rsplit("/", 1)[0] + "/13"

    async def scenario() -> None:
        rs = RedisRecords(url)
        try:
            await rs.client.flushdb()
            good = make_record(0, time=BASE, trunk="carrier-a")
            argv = [0, redis_stream.LATE_MS, int(NOW * 1000), redis_stream.MAX_RANGES, TM]
            argv += ["w", 1, int(BASE * 1000), "[]", redis_stream._group(redis_stream._group_key(good)), repr(BASE)]
            argv += ["w", 2, int(BASE * 1000), "[]", redis_stream._group(redis_stream._group_key(good)), "nan?"]
            keys = [redis_stream.STREAM, redis_stream.LATE, redis_stream.SEQS, redis_stream.WRITERS,
                    redis_stream.HIGH_WATER, TM_SINCE, redis_stream.MOVED]
            with pytest.raises(redis.ResponseError, match="bad sequence number or time"):
                await rs._append(keys=keys, args=argv)
            assert await rs.client.xlen(redis_stream.STREAM) == 0
            assert await rs.client.keys(TM + "*") == []
        finally:
            await rs.aclose()

    asyncio.run(scenario())
