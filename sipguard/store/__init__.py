"""State shared by every sipguard instance: RMD, DNO, lists, notices, rate limits, x5u cache.

``open_store(url, limits, timeout)`` picks the backend by URL: ``memory`` (in process, the
default) or a Redis URL (see connect.py). Both implement ``base.Store`` with the same
behaviour; the same test suite runs against memory, standalone Redis and Redis Cluster.

Round trips per INVITE: with ``redis://``, ``rediss://``, ``unix://`` and Sentinel, one
EVALSHA of lua/lookup.lua does every lookup, every limiter update, the campaign detectors'
windows and the PASSporT seen-set check of the call. With ``redis+cluster://`` the datasets
(one hash tag, one slot) cost one EVALSHA and each applicable limiter, detector and seen-set
key one more EVALSHA on its own slot; they are sent concurrently, so the latency is about one
round trip but the request count is 1 + the number of those keys.
"""

from __future__ import annotations

from collections.abc import Sequence

from sipguard.detectors import NO_DETECTORS, Detectors
from sipguard.observe.hooks import NO_METRICS, MetricHooks
from sipguard.store.base import LimitSpec, LookupKeys, Lookups, Store, parse_limits


def open_store(url: str, limits: Sequence[LimitSpec] = (), timeout: float = 0.05,
               prefix: str = "sg", metrics: MetricHooks = NO_METRICS,
               detectors: Detectors = NO_DETECTORS) -> Store:
    """``memory`` -> MemoryStore; a Redis URL -> RedisStore (which reports its round trips to
    ``metrics``). ConfigError on a bad URL. ``detectors``: the campaign windows the store keeps."""
    if url == "memory" or url == "memory://":
        from sipguard.store.memory import MemoryStore

        return MemoryStore(limits, detectors)
    from sipguard.store.connect import parse_url
    from sipguard.store.redis import RedisStore

    return RedisStore(parse_url(url), limits, timeout, prefix, metrics, detectors)


__all__ = ["LimitSpec", "LookupKeys", "Lookups", "Store", "open_store", "parse_limits"]
