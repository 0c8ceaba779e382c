"""The memory store's PASSporT seen-set: replay, retransmission, expiry, the bound."""

from __future__ import annotations

import asyncio

from sipguard.store.base import LookupKeys
from sipguard.store.memory import MemoryStore
from sipguard.store.replay import SeenSet, call_key, replay_ttl

NOW = 1_750_000_000.0


def test_replay_retransmission_and_expiry() -> None:
    seen = SeenSet()
    assert seen.check("k1", "call-a", 60, NOW) is False
    assert seen.check("k1", "call-a", 60, NOW + 1) is False      # same call: a retransmission
    assert seen.check("k1", "call-b", 60, NOW + 2) is True       # another call: a replay
    assert seen.check("k2", "call-b", 60, NOW + 2) is False      # another PASSporT
    assert seen.check("k1", "call-c", 60, NOW + 61) is False     # expired: a first sighting again
    assert seen.check("k1", "call-d", 60, NOW + 62) is True


def test_bound_drops_the_oldest_first() -> None:
    seen = SeenSet(limit=100)
    for n in range(250):
        seen.check(f"k{n}", "c", 3600, NOW + n)
    assert len(seen) == 100 and seen.evicted == 150
    assert seen.check("k249", "other", 3600, NOW + 300) is True   # the newest are kept
    assert seen.check("k0", "other", 3600, NOW + 300) is False    # the oldest went


def test_full_set_drops_expired_entries_before_live_ones() -> None:
    seen = SeenSet(limit=10)
    for n in range(5):
        seen.check(f"old{n}", "c", 1, NOW)
    for n in range(5):
        seen.check(f"live{n}", "c", 3600, NOW)
    seen.check("new", "c", 3600, NOW + 10)
    assert len(seen) == 6 and seen.check("live0", "x", 3600, NOW + 11) is True


def test_entry_size_matches_the_documented_bound() -> None:
    """README: about 255 bytes an entry, 131072 entries (~34 MB) at most."""
    import tracemalloc

    seen = SeenSet()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(20000):
        seen.check(f"{n:032x}", call_key(f"call-{n}"), 60.0, NOW + n / 1000)
    per_entry = (tracemalloc.get_traced_memory()[0] - before) / 20000
    tracemalloc.stop()
    assert per_entry < 300, per_entry


def test_ttl_follows_iat() -> None:
    assert replay_ttl(int(NOW), NOW, 60, 5) == 61.0
    assert replay_ttl(int(NOW) - 59, NOW, 60, 5) == 2.0
    assert replay_ttl(int(NOW) - 600, NOW, 60, 5) == 1.0          # never below a second
    assert replay_ttl(int(NOW) + 5, NOW, 60, 5) == 66.0


def test_memory_store_lookup_answers_replay() -> None:
    async def main() -> list[bool | None]:
        store = MemoryStore()

        def keys(call_id: str, key: str | None = "abc") -> LookupKeys:
            return LookupKeys("t1", None, None, "192.0.2.1", "+12025550123", "+13035550100", None,
                              passport=key, passport_call=call_key(call_id), passport_ttl=61.0)
        out = [(await store.lookup(keys(c, k), NOW)).passport_replayed
               for c, k in (("c1", "abc"), ("c1", "abc"), ("c2", "abc"), ("c3", None))]
        assert store.counters.passport_replays == 1
        return out

    assert asyncio.run(main()) == [False, False, True, False]
