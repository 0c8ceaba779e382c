"""PASSporT replay seen-set in Redis: shared by instances, inside the one lookup round trip,
the same Call-ID not a replay, expiry with the PASSporT, unknown during an outage."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from sipguard.store import open_store
from sipguard.store.base import LimitSpec, LookupKeys
from sipguard.store.replay import call_key
from tests import redis_fixtures
from tests.redis_fixtures import REDIS_SERVER, RedisProcess, start_redis

redis_server = redis_fixtures.redis_server
redis_cluster = redis_fixtures.redis_cluster

pytestmark = pytest.mark.integration
NOW = 1_750_000_000.0
KEY = "5f1e" * 8


def keys(call_id: str, key: str = KEY, ttl: float = 61.0) -> LookupKeys:
    return LookupKeys("t1", None, "RMD0000001", "192.0.2.1", "+12025550123", "+13035550100", "938K",
                      passport=key, passport_call=call_key(call_id), passport_ttl=ttl)


def test_second_call_with_the_same_passport_is_a_replay_across_instances(redis_server: RedisProcess) -> None:
    limits = (LimitSpec("a", ("caller",), 1000.0, 1000),)

    async def main() -> list[bool | None]:
        a = open_store(redis_server.url, limits, timeout=2.0, prefix="rp1")
        b = open_store(redis_server.url, limits, timeout=2.0, prefix="rp1")
        await a.start()
        await b.start()
        out = [(await a.lookup(keys("call-1"), NOW)).passport_replayed,
               (await a.lookup(keys("call-1"), NOW)).passport_replayed,     # retransmission
               (await b.lookup(keys("call-1"), NOW)).passport_replayed,     # same call, other instance
               (await b.lookup(keys("call-2"), NOW)).passport_replayed,     # another call: replay
               (await a.lookup(keys("call-3", key="77" * 16), NOW)).passport_replayed,  # other PASSporT
               (await a.lookup(dataclasses.replace(keys("x"), passport=None), NOW)).passport_replayed]
        assert b.counters.passport_replays == 1
        # the limiter still counts (the seen-set key sits after the limiter keys)
        assert (await a.lookup(keys("call-1"), NOW)).limited == ()
        await a.aclose()
        await b.aclose()
        return out

    assert asyncio.run(main()) == [False, False, False, True, False, False]


def test_seen_set_entry_expires_with_the_passport(redis_server: RedisProcess) -> None:
    async def main() -> tuple[bool | None, bool | None, int]:
        store = open_store(redis_server.url, (), timeout=2.0, prefix="rp2")
        await store.start()
        await store.lookup(keys("call-1", ttl=0.3), NOW)
        client = store._client
        ttl_ms = await client.pttl(store.keys.passport(KEY))
        await asyncio.sleep(0.5)
        after = (await store.lookup(keys("call-2", ttl=0.3), NOW)).passport_replayed
        again = (await store.lookup(keys("call-3", ttl=0.3), NOW)).passport_replayed
        await store.aclose()
        return after, again, ttl_ms

    after, again, ttl_ms = asyncio.run(main())
    assert 0 < ttl_ms <= 300
    assert after is False     # stale by then: a new first sighting
    assert again is True


def test_one_round_trip_with_the_replay_check(redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.asyncio.connection import AbstractConnection

    sent: list[bytes] = []
    original = AbstractConnection.send_packed_command

    async def counting(self, command, check_health=True):  # type: ignore[no-untyped-def]
        sent.append(b"".join(command) if isinstance(command, list) else bytes(command))
        return await original(self, command, check_health)

    async def main() -> None:
        store = open_store(redis_server.url, (LimitSpec("a", ("caller",), 1.0, 5),), timeout=2.0, prefix="rp3")
        await store.start()
        await store.lookup(keys("warm"), NOW)
        if store._threat_task is not None:      # the threat lists' refresh the first lookup starts
            await store._threat_task            # may make a connection (CLIENT SETINFO) meanwhile
        monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
        for n in range(10):
            await store.lookup(keys(f"call-{n}", key=f"{n:032x}"), NOW)
        monkeypatch.setattr(AbstractConnection, "send_packed_command", original)
        await store.aclose()

    asyncio.run(main())
    assert len(sent) == 10 and all(b"EVALSHA" in packet.upper() for packet in sent)


def test_cluster_replay(redis_cluster) -> None:  # type: ignore[no-untyped-def]
    async def main() -> list[bool | None]:
        store = open_store(redis_cluster.url, (LimitSpec("a", ("caller",), 1 / 60, 5),), timeout=2.0,
                           prefix="rpc")
        await store.start()
        out = []
        for call_id in ("c1", "c1", "c2"):
            got = await store.lookup(keys(call_id), NOW)
            assert not got.degraded
            out.append(got.passport_replayed)
        await store.aclose()
        return out

    assert asyncio.run(main()) == [False, False, True]


def test_outage_makes_replay_unknown() -> None:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = start_redis()

    async def main() -> tuple[bool | None, bool | None]:
        store = open_store(server.url, (), timeout=0.2, prefix="rp4")
        await store.start()
        before = (await store.lookup(keys("call-1"), NOW)).passport_replayed
        server.stop()
        during = await store.lookup(keys("call-2"), NOW)
        assert during.degraded
        await store.aclose()
        return before, during.passport_replayed

    try:
        assert asyncio.run(main()) == (False, None)
    finally:
        server.stop()


def test_lookup_lua_replay_contract(redis_server: RedisProcess) -> None:
    """lookup.lua's replay block on its own, as the script's header describes it: the seen-set
    key is the last of KEYS, its 2 ARGV (call hash, ttl ms) come before the counts (nc, np);
    its flags are the 12th reply slot, after the limiters' (10th) and the detectors' (11th)."""
    import redis.asyncio as aioredis

    from sipguard.store.redis import LOOKUP_LUA

    async def main() -> None:
        client = aioredis.from_url(redis_server.url, decode_responses=True)
        script = client.register_script(LOOKUP_LUA)
        base = ["", "", "12025550123", "2025550123", "t1", "", "13035550100", str(NOW)]
        limiter = ["60", 5]
        seen_key = "c:pp:{abc}"
        first = await script(keys=["c:l:{a:1}", seen_key], args=[0, *base, *limiter, "call-a", 5000, 0, 1])
        again = await script(keys=["c:l:{a:1}", seen_key], args=[0, *base, *limiter, "call-a", 5000, 0, 1])
        other = await script(keys=["c:l:{a:1}", seen_key], args=[0, *base, *limiter, "call-b", 5000, 0, 1])
        assert (first[9], first[10], first[11], again[11], other[11]) == ("0", "", "0", "0", "1")
        assert await client.get(seen_key) == "call-a" and 0 < await client.pttl(seen_key) <= 5000
        plain = await script(keys=["c:l:{a:1}"], args=[0, *base, *limiter, 0, 0])
        assert len(plain) == 12 and plain[11] == ""
        # every block in one call, in the contract's order: limiter, burst detector (threshold
        # 2), seen-set; the second call flips the burst and is a replay
        keys = ["c:l:{b:1}", "c:cb:{1212}", "c:pp:{def}"]
        burst = ["b", 2, 60000, ""]
        one = await script(keys=keys, args=[0, *base, *limiter, *burst, "call-y", 5000, 1, 1])
        two = await script(keys=keys, args=[0, *base, *limiter, *burst, "call-z", 5000, 1, 1])
        assert (one[9], one[10], one[11]) == ("0", "0", "0")
        assert (two[9], two[10], two[11]) == ("0", "1", "1")
        assert await client.get("c:cb:{1212}") == "2" and await client.get("c:pp:{def}") == "call-y"
        await client.aclose()

    asyncio.run(main())
