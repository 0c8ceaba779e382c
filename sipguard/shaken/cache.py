"""Bounded caches, single flight, the per-host circuit breaker and the per-trunk fetch budget
behind certificate and CRL lookups.

Every cache here has an owner (the CredentialCache), a bound (LRU size) and its ``CacheCounters``
(hits, misses, evictions); the verifier's own counts are one ``VerifierCounters``, shared by the
credential cache and the CRL checker (observe/metrics.py exports both). `CertStore` is the shared second-level cache
(Redis) that the store package implements; the in-process LRU sits in front of it.
Time is passed in (`now`), never read here.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

K = TypeVar("K")
V = TypeVar("V")


@dataclass(slots=True)
class CacheCounters:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


@dataclass(slots=True)
class VerifierCounters:
    """What the verifier counts, cumulative (the credential cache and the CRL checker add theirs)."""

    passed: int = 0               # calls by verification outcome (none: unsigned or no verdict)
    failed: int = 0
    none: int = 0
    internal_errors: int = 0      # a bug caught: no verdict, a loud log line
    token_cache_hits: int = 0     # ES256 checks answered from the token cache
    x5u_fetches: int = 0          # downloads attempted
    x5u_fetch_failures: int = 0
    x5u_refused: int = 0          # URL refused before any connection (scheme, port, network)
    x5u_breaker_skips: int = 0    # not tried: the host's breaker is open
    x5u_not_found: int = 0        # 404 / 410
    x5u_budget_skips: int = 0     # not tried: the trunk's download budget is spent
    x5u_failed_hits: int = 0      # answered from the list of URLs that gave no credential
    l2_hits: int = 0              # certificates found in the shared (Redis) cache
    l2_errors: int = 0
    stale_served: int = 0         # expired credentials used while being fetched again
    crl_fetches: int = 0
    crl_failures: int = 0


class CertStore(Protocol):
    """Shared certificate cache (L2), keyed by x5u URL. Implemented by the Redis store."""

    async def get_cert(self, url: str) -> tuple[bytes, float] | None:
        """(PEM bytes, expires_at epoch) or None."""
        ...

    async def put_cert(self, url: str, pem: bytes, expires_at: float) -> None: ...


class LruCache(Generic[K, V]):
    """A dict with a size bound: the least recently used entry goes first."""

    __slots__ = ("_data", "maxsize", "counters")

    def __init__(self, maxsize: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self.maxsize = max(1, maxsize)
        self.counters = CacheCounters()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is None:
            self.counters.misses += 1
            return None
        self.counters.hits += 1
        self._data.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        """The value, without counting a hit or a miss and without moving it."""
        return self._data.get(key)

    def count_miss(self) -> None:
        """Count the miss a ``get`` would have counted, after a ``peek`` found nothing."""
        self.counters.misses += 1

    def put(self, key: K, value: V) -> None:
        data = self._data
        if key in data:
            data.move_to_end(key)  # a new key goes to the end by itself
        data[key] = value
        while len(data) > self.maxsize:
            data.popitem(False)  # the least recently used (positional: no keyword to parse)
            self.counters.evictions += 1

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class SingleFlight(Generic[K, V]):
    """One run of a load per key, however many callers ask while it runs (one download per
    x5u or CRL URL). The key is free again once the run ends; an exception reaches every
    waiter, and ``on_error`` hears of it too, as nobody may be waiting (stale-while-revalidate)."""

    __slots__ = ("_runs", "on_error")

    def __init__(self, on_error: Callable[[K, BaseException], None] | None = None) -> None:
        self._runs: dict[K, asyncio.Future[V]] = {}
        self.on_error = on_error

    def start(self, key: K, load: Callable[[], Awaitable[V]]) -> asyncio.Future[V]:
        """The run of ``key`` under way, else a new one of ``load()``."""
        run = self._runs.get(key)
        if run is None:
            run = self._runs[key] = asyncio.ensure_future(load())
            run.add_done_callback(lambda done: self._ended(key, done))
        return run

    async def join(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        # shield: a caller that gives up (call cancelled) must not cancel everyone's download
        return await asyncio.shield(self.start(key, load))

    def _ended(self, key: K, done: asyncio.Future[V]) -> None:
        self._runs.pop(key, None)
        exc = None if done.cancelled() else done.exception()
        if exc is not None and self.on_error is not None:
            self.on_error(key, exc)

    def cancel(self) -> None:
        for run in list(self._runs.values()):
            run.cancel()

    def __len__(self) -> int:
        return len(self._runs)


@dataclass(slots=True)
class _HostState:
    failures: int = 0
    open_until: float = 0.0


class Breaker:
    """Per-host circuit breaker: after `threshold` consecutive failures the host is skipped
    for `open_for` seconds (no I/O: a dead repository costs nothing per call), then one
    attempt is let through (half-open); success closes it, failure opens it again.
    """

    __slots__ = ("threshold", "open_for", "_hosts", "maxhosts")

    def __init__(self, threshold: int = 5, open_for: float = 30.0, maxhosts: int = 10000) -> None:
        self.threshold = threshold
        self.open_for = open_for
        self.maxhosts = maxhosts
        self._hosts: dict[str, _HostState] = {}

    def allow(self, host: str, now: float) -> bool:
        state = self._hosts.get(host)
        if state is None or state.failures < self.threshold:
            return True
        if now >= state.open_until:
            # half-open: one attempt; pretend it failed until it reports, so concurrent
            # callers for other URLs of the host keep being refused meanwhile
            state.open_until = now + self.open_for
            return True
        return False

    def success(self, host: str) -> None:
        self._hosts.pop(host, None)

    def failure(self, host: str, now: float) -> None:
        state = self._hosts.get(host)
        if state is None:
            if len(self._hosts) >= self.maxhosts:
                self._hosts.pop(next(iter(self._hosts)))
            state = self._hosts[host] = _HostState()
        state.failures += 1
        if state.failures >= self.threshold:
            state.open_until = now + self.open_for

    def state(self, host: str, now: float) -> str:
        """closed | open | half-open (for metrics and health pages)."""
        state = self._hosts.get(host)
        if state is None or state.failures < self.threshold:
            return "closed"
        return "open" if now < state.open_until else "half-open"

    def states(self, now: float) -> dict[str, str]:
        return {host: self.state(host, now) for host in self._hosts}


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class FetchBudget:
    """Token bucket per key (a trunk; traffic from no trunk shares one): how many
    downloads of URLs we hold nothing for it may start. The x5u URL comes from the caller
    unsigned (the signature is checked after the download), so without a budget one trunk could
    spend our fetches on URLs of its choosing at the rate it sends INVITEs.
    `rate` tokens a second up to `burst`; rate 0 turns the budget off. At most `maxkeys` keys
    are remembered (the oldest is dropped: it starts again with a full bucket).
    """

    __slots__ = ("rate", "burst", "maxkeys", "_keys")

    def __init__(self, rate: float, burst: float, maxkeys: int = 10000) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.maxkeys = maxkeys
        self._keys: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> bool:
        """One token for key at `now`; False when its bucket is empty."""
        if self.rate <= 0:
            return True
        bucket = self._keys.get(key)
        if bucket is None:
            if len(self._keys) >= self.maxkeys:
                self._keys.pop(next(iter(self._keys)))
            bucket = self._keys[key] = _Bucket(self.burst, now)
        else:
            # a clock that went back (replay, manual clocks) refills nothing
            bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
            bucket.at = max(bucket.at, now)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def __len__(self) -> int:
        return len(self._keys)
