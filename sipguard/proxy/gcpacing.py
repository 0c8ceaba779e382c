"""The cyclic garbage collector paced by the worker (``GcPacer``) and moved out of the way
of what lives as long as the process (``tune_gc``)."""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("sipguard.gc")

# A full pass runs once the frozen objects are this much more than the last one left ...
GROWTH = 0.5
# ... plus this many (the start-up heap is ~40,000 objects; the caches hold a few hundred
# thousand once full): cyclic garbage among frozen objects is bounded by about half the
# live heap, and a worker filling its caches is not walked again at every step of that
SLACK = 100_000
# ... for this many seconds in a row: a burst's live transactions raise the count while they
# live and leave with them (a full pass in a burst is a pause where the worker is already
# behind); a leak, or caches filling, keep it up
HOLD = 120.0


class GcPacer:
    """The cyclic collector on the worker's schedule, not the allocator's.

    Left to itself the collector starts a young-generation pass every 50,000 net allocations;
    under load that pass walks every transaction still alive (~10-15 ms, in every worker at
    once since they allocate alike), and the older generations' passes walk far more. Here,
    on every housekeeping tick (twice a second), the young generation is collected and what
    survives is frozen, so no automatic pass ever walks it again; those objects are still
    freed by reference counting when they are no longer used. A pass walks what survived
    since the one before: 2.2-2.9 ms on average at 1,500 calls/s a worker. Ten passes a
    second made each shorter but walked more in all (objects that die between 0.1 and 0.5 s
    old), and cost more CPU per call (bench/RESULTS.md, "Session 15").

    A full pass (everything unfrozen and collected once) frees cyclic garbage that reached a
    frozen object. It walks every object alive: the start-up heap and the caches (the numbers,
    PASSporT and name-addr caches hold hundreds of thousands of objects once full), 50-75 ms
    after 6-12 s at 3,000 calls/s (bench/RESULTS.md, "Session 15"), so a pause past
    ``proxy.shed_delay`` in every worker at once, and new INVITEs answered 503 (it ran every
    ten minutes before). It runs only when it can find something: objects freed by reference
    counting leave the frozen set, so the frozen count is the live heap plus that garbage.
    When it has stayed over ``growth`` of what the last full pass left, plus ``slack``
    objects, for ``hold`` seconds, a full pass runs; a worker whose caches are full and which
    leaks no cycle never pauses for one. The first tick takes the start-up heap
    (``tune_gc``) as the base."""

    def __init__(self, growth: float = GROWTH, slack: int = SLACK, hold: float = HOLD) -> None:
        self.growth = growth
        self.slack = slack
        self.hold = hold
        self.base: int | None = None     # frozen objects the last full pass left (None: no tick yet)
        self.above: float | None = None  # since when the frozen count is over its bound
        self.full_passes = 0

    def tick(self, now: float | None = None) -> bool:
        """Collect the young generation, or everything when the frozen set has been past its
        bound for ``hold`` seconds; freeze what survives. True when it was a full pass."""
        now = time.monotonic() if now is None else now
        frozen = gc.get_freeze_count()
        if self.base is None:
            self.base = frozen
        if frozen <= self.base * (1.0 + self.growth) + self.slack:
            self.above = None
        elif self.above is None:
            self.above = now
        if self.above is None or now - self.above < self.hold:
            gc.collect(0)
            gc.freeze()
            return False
        started, last = time.perf_counter(), self.base
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.full_passes += 1
        self.base, self.above = gc.get_freeze_count(), None
        log.info("collector: full pass at %d frozen objects (the last one left %d), %d freed, %d left, %.0f ms",
                 frozen, last, found, self.base, (time.perf_counter() - started) * 1e3)
        return True


def tune_gc() -> None:
    """Everything made at start-up (config, policy code, tables, caches) lives as long as the
    process: move it out of the collector's sight, and collect the young generation less
    often. The per-call objects are short-lived and acyclic, and a transaction keeps bytes,
    not objects, once decided; measured under load this cut the p99 INVITE response time
    several-fold (bench/RESULTS.md, "Proxy load")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
