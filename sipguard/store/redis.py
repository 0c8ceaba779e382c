"""The Redis store: one EVALSHA per call on the hot path, bounded by a timeout, never raising.

``lookup`` runs lua/lookup.lua (datasets, every GCRA limiter on the server's clock, the
campaign detectors' windows and the PASSporT seen-set, atomically; the KEYS/ARGV/reply
contract is in the script's header) under ``asyncio.timeout(timeout)``. A timeout or a lost connection returns
``Lookups(degraded=True)`` and is counted; a lost connection (or three timeouts in a row
with no reply from Redis meanwhile: a timeout while replies to other lookups keep coming is
this worker's own delay, not Redis's) marks the store unhealthy: calls then get a degraded answer at once, without waiting, while a
background task reconnects with backoff (50 ms doubling to 400 ms), so the store is back well
within a second of Redis being back. A degraded answer still carries the RMD answers Redis
gave for the same upstream provider and signer within the last day (``REMEMBER_RMD``): the
RMD is published daily, so "this trunk's provider is not in the RMD" keeps being enforced
through an outage; what is per call (DNO, lists, notices, limits) is unknown. Every round trip
(lookup, cert_get, cert_put) reports its time and failure to ``metrics``. In Redis
Cluster, see the package docstring for the per-slot fan-out. The admin methods (imports,
lists, notices; they may raise ``SipguardError``) are in redis_admin.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from sipguard.detectors import NO_DETECTORS, Detectors, burst_key, callee_member
from sipguard.observe.hooks import NO_METRICS, MetricHooks
from sipguard.store.base import DEGRADED, LimitSpec, LookupKeys, Lookups, StoreCounters
from sipguard.store.batch import Autopipe
from sipguard.store.connect import RedisTarget, client_factory
from sipguard.store.keys import KeySchema, digits, frn10, nanp10
from sipguard.store.limits import applicable
from sipguard.store.redis_admin import RedisAdmin, _pack, _s
from sipguard.threats import NO_THREATS, THREAT_SOURCES, ThreatIndex, entries_from_json

THREAT_REFRESH = 30.0          # seconds between checks of threat_gen (an import reaches calls within this)
REMEMBER_RMD = 86400.0           # seconds an RMD answer serves degraded answers (the RMD is daily)
MAX_REMEMBERED_SIGNERS = 20000   # signer SPCs remembered per worker (providers: one per trunk)
FLOOR_WINDOW = 10.0              # seconds: the quickest lookup of a window is Redis's own time (waiting)

log = logging.getLogger("sipguard.store")
LOOKUP_LUA = resources.files("sipguard.store").joinpath("lua/lookup.lua").read_text(encoding="utf-8")
_FAILURES = (RedisError, OSError)   # builtin TimeoutError is an OSError


class RedisStore(RedisAdmin):
    healthy: bool

    def __init__(self, target: RedisTarget, limits: Sequence[LimitSpec] = (), timeout: float = 0.05,
                 prefix: str = "sg", metrics: MetricHooks = NO_METRICS,
                 detectors: Detectors = NO_DETECTORS) -> None:
        self.target = target
        self.metrics = metrics
        self.limits = tuple(limits)
        self.set_detectors(detectors)
        self.threats = NO_THREATS          # threat lists in force: a copy, refreshed off the call path
        self._threat_gen: str | None = None
        self._threat_checked = float("-inf")
        self._threat_task: asyncio.Task[None] | None = None
        self.timeout = timeout
        self.keys = KeySchema(prefix)
        self.healthy = False
        self._make = client_factory(target)
        self._client: Any = None
        self._script: Any = None
        self._sha = hashlib.sha1(LOOKUP_LUA.encode()).hexdigest()
        self._dataset_keys = self.keys.dataset_keys()
        self._pipe: Autopipe | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._timeouts_in_row = 0
        # the lookups waiting on Redis, oldest first: [loop time started, done] (``waiting``)
        self._in_flight: deque[list[Any]] = deque()
        # the quickest lookup answered in the last FLOOR_WINDOW to 2 x FLOOR_WINDOW seconds: what
        # Redis and the network take, not this worker (``waiting`` counts the rest)
        self._floor = (float("inf"), float("inf"))     # (this window's, the last window's)
        self._floor_until = 0.0
        self.counters = StoreCounters()
        # the last RMD answers, for degraded answers: provider (RMD number, FRN) and signer SPC
        self._rmd_by_provider: dict[tuple[str, str], tuple[float, str | None, str | None, str | None]] = {}
        self._rmd_by_signer: dict[str, tuple[float, str | None, str | None]] = {}

    def set_detectors(self, detectors: Detectors) -> None:
        """The campaign detectors (also on SIGHUP). Windows already open in Redis keep their
        TTL and count; the new threshold applies from the next call."""
        self.detectors = detectors
        # the constant script arguments of each detector, made once: (kind, threshold, window ms)
        self._fanout_args = ["f", str(detectors.fanout.callees), str(int(detectors.fanout.window * 1000))] \
            if detectors.fanout is not None else None
        self._burst_args = ["b", str(detectors.burst.calls), str(int(detectors.burst.window * 1000)), ""] \
            if detectors.burst is not None else None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect; if Redis is not there yet, keep trying in the background (calls degrade)."""
        self._client = self._make()
        self._script = self._client.register_script(LOOKUP_LUA)
        if not self.target.cluster:
            self._pipe = Autopipe(self._client.connection_pool, read_timeout=max(1.0, 4 * self.timeout))
        try:
            # load the script now, so the first calls do not pay for NOSCRIPT + SCRIPT LOAD
            await asyncio.wait_for(self._client.script_load(LOOKUP_LUA), max(1.0, self.timeout))
            self.healthy = True
            await self._refresh_threats()
        except _FAILURES as exc:
            log.warning("store %s not reachable at start (%s); retrying in the background",
                        self.target.redacted(), exc)
            self._mark_down()

    async def aclose(self) -> None:
        if self._threat_task is not None:
            self._threat_task.cancel()
            self._threat_task = None
        if self._reconnect is not None:
            self._reconnect.cancel()
            try:
                await self._reconnect
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing anyway
                pass
            self._reconnect = None
        if self._pipe is not None:
            await self._pipe.aclose()
        if self._client is not None:
            try:
                await self._client.aclose()
            except _FAILURES:
                pass
            self._client = None
        self.healthy = False

    def _mark_down(self) -> None:
        self.healthy = False
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = 0.05
        while True:
            await asyncio.sleep(delay)
            self.counters.reconnects += 1
            try:
                # drop every pooled connection: after a restart they are all dead
                if not self.target.cluster:
                    await self._client.connection_pool.disconnect()
                await asyncio.wait_for(self._client.script_load(LOOKUP_LUA), 0.5)   # also a health check
            except _FAILURES:
                delay = min(delay * 2, 0.4)
                continue
            except Exception:  # noqa: BLE001 - keep the loop alive whatever redis-py does
                log.exception("store reconnect: unexpected error")
                delay = 0.4
                continue
            self._timeouts_in_row = 0
            self.healthy = True
            log.info("store %s reachable again", self.target.redacted())
            return

    # -- the hot path ------------------------------------------------------------------------
    async def lookup(self, keys: LookupKeys, now: float) -> Lookups:
        self.counters.lookups += 1
        loop = asyncio.get_running_loop()
        if loop.time() - self._threat_checked >= THREAT_REFRESH and self.healthy:
            self._threat_checked = loop.time()
            if self._threat_task is None or self._threat_task.done():
                self._threat_task = loop.create_task(self._refresh_threats())
        if not self.healthy or self._client is None:
            self.counters.degraded += 1
            return self._remembered(keys, now)
        started = loop.time()
        mark = [started, False]
        self._in_flight.append(mark)
        try:
            return await self._wait(keys, now, started)
        finally:
            mark[1] = True
            in_flight = self._in_flight
            while in_flight and in_flight[0][1]:
                in_flight.popleft()

    async def _wait(self, keys: LookupKeys, now: float, started: float) -> Lookups:
        """One lookup on Redis, bounded by ``timeout``; degraded on a timeout or a failure."""
        loop = asyncio.get_running_loop()
        try:
            # asyncio.timeout, not wait_for: no extra task per call (measured: ~150 µs less)
            async with asyncio.timeout(self.timeout):
                result = await self._lookup(keys, now)
        except TimeoutError:
            self.metrics.observe_store("lookup", loop.time() - started, error=True)
            self.counters.timeouts += 1
            self.counters.degraded += 1
            # Redis answered other lookups while this one waited, or within the last timeout:
            # the time went in this worker (a loop behind under overload reads replies late),
            # not in Redis. Such a timeout does not count toward marking the store down: a
            # reconnect would drop every pooled connection and answer every call degraded.
            if self._pipe is None or self._pipe.answered_at < min(started, loop.time() - self.timeout):
                self._timeouts_in_row += 1
                if self._timeouts_in_row >= 3:
                    self._mark_down()
            return self._remembered(keys, now)
        except Exception as exc:  # noqa: BLE001 - the hot path never raises (bugs are logged)
            self.metrics.observe_store("lookup", loop.time() - started, error=True)
            self.counters.errors += 1
            self.counters.degraded += 1
            if not isinstance(exc, _FAILURES):
                log.exception("store lookup failed")
            self._mark_down()
            return self._remembered(keys, now)
        self._timeouts_in_row = 0
        took = loop.time() - started
        if took < self._floor[0] or started >= self._floor_until:
            self._answered_in(took, started)
        self.metrics.observe_store("lookup", loop.time() - started)
        self._remember(keys, result, now)
        return result

    def _answered_in(self, took: float, started: float) -> None:
        current, last = self._floor
        if started >= self._floor_until:   # a new window: the last one's minimum is kept
            self._floor_until = started + FLOOR_WINDOW
            current, last = float("inf"), current
        self._floor = (min(current, took), last)

    def waiting(self, now: float) -> float:
        """How far into its ``store_timeout`` the oldest lookup still waiting on Redis is, at
        loop time ``now``, beyond the quickest answer of the last 10-20 s (what Redis and the
        network take): 0 when none waits; 1 when it waited a whole timeout more than that.
        The overload guard sheds by it (proxy/overload.py): a worker behind reads Redis's
        replies late, and the calls it let in would be decided degraded; a Redis far away
        is not a worker behind."""
        in_flight = self._in_flight
        while in_flight and in_flight[0][1]:
            in_flight.popleft()
        if not in_flight:
            return 0.0
        floor = min(self._floor)
        waited = now - in_flight[0][0] - (floor if floor < self.timeout else 0.0)
        return waited / self.timeout if waited > 0.0 else 0.0

    async def _refresh_threats(self) -> None:
        """Reload the threat lists when ``threat_gen`` moved (an import). Off the call path
        (the parse runs in a thread: a list may hold 400,000 entries); on any failure the lists
        in force stay."""
        try:
            gen = await self._timed("threats", self._client.hget(self.keys.meta, "threat_gen"))
            gen = _s(gen) if gen is not None else None
            if gen == self._threat_gen:
                return
            raw = await self._timed("threats", self._client.hgetall(self.keys.threats))
            index = await asyncio.to_thread(_threat_index, {_s(k): _s(v) for k, v in raw.items()})
        except _FAILURES as exc:
            log.warning("threat lists not refreshed (%s); the lists in force stay", exc)
            return
        except Exception:  # noqa: BLE001 - a background refresh must not die silently or kill others
            log.exception("threat lists: unexpected error on refresh")
            return
        self.threats = index
        self._threat_gen = gen
        log.info("threat lists loaded: %d entries (generation %s)", len(index), gen)

    def _remember(self, keys: LookupKeys, got: Lookups, now: float) -> None:
        provider = _provider_key(keys)
        if provider is not None:
            self._rmd_by_provider[provider] = (now, got.trunk_rmd, got.trunk_implementation, got.rmd_snapshot)
        if keys.spc:
            signers = self._rmd_by_signer
            spc = keys.spc.upper()
            signers.pop(spc, None)  # re-inserted last: the oldest entries go first when full
            signers[spc] = (now, got.signer_rmd, got.signer_frn)
            if len(signers) > MAX_REMEMBERED_SIGNERS:
                del signers[next(iter(signers))]

    def _remembered(self, keys: LookupKeys, now: float) -> Lookups:
        """The degraded answer, with the RMD answers of the last day for this provider and signer."""
        provider = _provider_key(keys)
        known = self._rmd_by_provider.get(provider) if provider is not None else None
        signer = self._rmd_by_signer.get(keys.spc.upper()) if keys.spc else None
        if known is not None and now - known[0] > REMEMBER_RMD:
            known = None
        if signer is not None and now - signer[0] > REMEMBER_RMD:
            signer = None
        if known is None and signer is None:
            return DEGRADED
        self.counters.rmd_remembered += 1
        return Lookups(trunk_rmd=known[1] if known else None, trunk_implementation=known[2] if known else None,
                       signer_rmd=signer[1] if signer else None, signer_frn=signer[2] if signer else None,
                       rmd_snapshot=known[3] if known else None, degraded=True, passport_replayed=None)

    async def _lookup(self, keys: LookupKeys, now: float) -> Lookups:
        spc = keys.spc.upper() if keys.spc else ""
        args: list[Any] = [4, (keys.trunk_rmd or "").strip().upper(), frn10(keys.trunk_frn) or "",
                           digits(keys.caller) or "", nanp10(keys.caller) or "", keys.trunk or "", spc,
                           digits(keys.callee) or "", repr(float(now))]
        limiters = applicable(self.limits, keys)
        limit_keys = [self.keys.limit(self.limits[i].name, value) for i, value, _, _ in limiters]
        limit_args = [(repr(interval), burst) for _, _, interval, burst in limiters]
        camp_keys, camp_args = self._campaign(keys) if self.detectors.active else ([], [])
        nc = len(camp_keys)
        # PASSporT replay (replay.py): the seen-set key and its 2 arguments (call hash, ttl in ms)
        seen = [self.keys.passport(keys.passport)] if keys.passport else []
        seen_args = [keys.passport_call, str(int(keys.passport_ttl * 1000))] if seen else []
        # lookup.lua's contract (its header comment): KEYS = datasets, limiters, detectors,
        # seen-set; ARGV = the call's 9, 2 per limiter, 4 per detector, 2 with a seen-set key,
        # then nc and np; reply[9] limited, reply[10] campaign, reply[11] replayed flags
        if not self.target.cluster:
            flat = [str(a) for pair in limit_args for a in pair]
            argv = [str(a) for a in args] + flat + camp_args + seen_args
            argv += (str(nc), str(len(seen)))
            reply = await self._evalsha([*self._dataset_keys, *limit_keys, *camp_keys, *seen], argv)
            flags, cflags, replayed = _s(reply[9]), _s(reply[10]), _s(reply[11])
        elif not limiters and not nc and not seen:
            reply = await self._script(keys=self._dataset_keys, args=[*args, 0, 0])
            flags = cflags = replayed = ""
        else:
            # Cluster: each limiter, detector and seen-set key is in its own slot: one script
            # call each (nd = 0), sent together (no extra round trip in sequence)
            only = [0, *args[1:]]
            replies = await asyncio.gather(
                self._script(keys=self.keys.dataset_keys(), args=[*args, 0, 0]),
                *(self._script(keys=[k], args=[*only, *a, 0, 0]) for k, a in zip(limit_keys, limit_args,
                                                                                strict=True)),
                *(self._script(keys=[k], args=[*only, *camp_args[4 * i:4 * i + 4], 1, 0])
                  for i, k in enumerate(camp_keys)),
                *(self._script(keys=[k], args=[*only, *seen_args, 0, 1]) for k in seen))
            reply = replies[0]
            nl = len(limiters)
            flags = "".join(_s(r[9]) for r in replies[1:1 + nl])
            cflags = "".join(_s(r[10]) for r in replies[1 + nl:1 + nl + nc])
            replayed = "".join(_s(r[11]) for r in replies[1 + nl + nc:])
        out = [_s(v) for v in reply[:9]]
        limited = tuple(self.limits[lim[0]].name for lim, flag in zip(limiters, flags, strict=False)
                        if flag == "1")
        if replayed == "1":
            self.counters.passport_replays += 1
        return Lookups(
            trunk_rmd=out[0] or "absent", trunk_implementation=out[1] or None,
            signer_rmd=(out[2] or "absent") if spc else None, signer_frn=out[3] or None,
            caller_dno=out[4] == "1", list=out[5] or None, list_entry=out[6] or None,
            notice=out[7] or None, limited=limited, rmd_snapshot=out[8] or None,
            campaign_fanout=self._flag(cflags, "f", camp_args),
            campaign_burst=self._flag(cflags, "b", camp_args),
            passport_replayed=replayed == "1")

    # -- campaign detectors (detectors.py; the Lua side is the campaign block of lookup.lua) -
    def _campaign(self, keys: LookupKeys) -> tuple[list[str], list[str]]:
        """The detector keys of a call and their 4 script arguments each (fanout first)."""
        cfg = self.detectors
        out_keys: list[str] = []
        out_args: list[str] = []
        caller = digits(keys.caller)
        if self._fanout_args is not None:
            member = callee_member(keys.callee)
            if caller and caller.isdigit() and member is not None:
                out_keys.append(self.keys.campaign("f", caller))
                out_args += self._fanout_args
                out_args.append(str(member))
        if self._burst_args is not None and cfg.burst is not None:
            prefix = burst_key(caller, cfg.burst)
            if prefix is not None:
                out_keys.append(self.keys.campaign("b", prefix))
                out_args += self._burst_args
        return out_keys, out_args

    def _flag(self, cflags: str, kind: str, args: list[str]) -> bool | None:
        """Detector ``kind`` ("f" fanout, "b" burst) from the script's flags: None when it is
        off, False when the call has no value for it (no key was sent)."""
        cfg = self.detectors
        if (cfg.fanout if kind == "f" else cfg.burst) is None:
            return None
        kinds = args[0::4]
        return kind in kinds and cflags[kinds.index(kind):kinds.index(kind) + 1] == "1"

    async def _evalsha(self, keys: list[str], args: list[str]) -> Any:
        """EVALSHA, encoded here and sent through the auto-pipeline (batch.py)."""
        assert self._pipe is not None
        packed = _pack("EVALSHA", self._sha, [str(len(keys)), *keys, *args])
        reply = await self._pipe.submit(packed)
        if isinstance(reply, NoScriptError):
            # Redis restarted or SCRIPT FLUSH: load the script again and retry once
            await self._client.script_load(LOOKUP_LUA)
            reply = await self._pipe.submit(packed)
        if isinstance(reply, Exception):
            raise reply
        return reply

    # -- shared x5u cache (L2): a miss on any failure, never an exception -------------------
    async def get_cert(self, url: str) -> tuple[bytes, float] | None:
        if not self.healthy or self._client is None:
            return None
        try:
            raw = await self._timed("cert_get", self._client.get(self.keys.cert(url)))
        except _FAILURES:
            return None
        if not raw:
            return None
        head, _, pem = bytes(raw).partition(b"\n")
        try:
            return pem, float(head)
        except ValueError:
            return None

    async def put_cert(self, url: str, pem: bytes, expires_at: float) -> None:
        if not self.healthy or self._client is None:
            return
        ms = int(expires_at * 1000)
        try:
            await self._timed("cert_put", self._client.set(
                self.keys.cert(url), repr(float(expires_at)).encode() + b"\n" + pem, pxat=ms))
        except _FAILURES:
            return

    async def _timed(self, op: str, request: Awaitable[Any]) -> Any:
        """A round trip off the hot path: bounded, timed and its failure counted, then raised."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            reply = await asyncio.wait_for(request, max(self.timeout, 0.2))
        except _FAILURES:
            self.metrics.observe_store(op, loop.time() - started, error=True)
            raise
        self.metrics.observe_store(op, loop.time() - started)
        return reply


def _threat_index(stored: dict[str, str]) -> ThreatIndex:
    """The stored lists (source -> JSON) as one index; unknown sources are ignored."""
    return ThreatIndex([e for source, text in stored.items() if source in THREAT_SOURCES
                        for e in entries_from_json(text, source)])


def _provider_key(keys: LookupKeys) -> tuple[str, str] | None:
    """The trunk's provider as the lookup script sees it (RMD number, FRN), None if neither."""
    rmd, frn = (keys.trunk_rmd or "").strip().upper(), frn10(keys.trunk_frn) or ""
    return (rmd, frn) if rmd or frn else None
