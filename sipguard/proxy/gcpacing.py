"""The cyclic garbage collector paced by the worker (``GcPacer``) and moved out of the way
of what lives as long as the process (``tune_gc``)."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sipguard.observe.procmem import resident_bytes

log = logging.getLogger("sipguard.gc")

# A full pass runs once the worker's resident memory is this much more than after the last
# one (or the first tick) ...
GROWTH = 0.5
# ... plus this many bytes: a worker starts near 56 MB resident and, at 1,000 calls/s, holds
# ~210 MB once its caches and live transactions have filled (bench/RESULTS.md, session 15);
# that is normal work, not garbage, and must not cost a pause
SLACK = 256 << 20
# ... for this many seconds in a row: a burst's live transactions raise it while they live
# and leave with them (a full pass in a burst is a pause where the worker is already behind);
# a leak stays
HOLD = 120.0


@dataclass(slots=True)
class GcCounters:
    """The full passes and the seconds they paused the worker, for observe/metrics.py."""

    full_passes: int = 0
    full_pass_seconds: float = 0.0


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
    frozen object. It walks every object alive: the start-up heap and the caches (numbers,
    PASSporTs, name-addrs: 160,000 objects frozen once full), 50-75 ms a few seconds into
    3,000 calls/s and 122-134 ms once the caches are full (bench/RESULTS.md, "Session 15"), a pause past ``proxy.shed_delay`` in every worker at
    once, and new INVITEs answered 503 (it ran every ten minutes before). It runs only when
    there may be something to find: garbage that only the collector frees keeps its memory,
    so the worker's resident memory grows with it. When that has stayed ``growth`` over what
    it was after the last full pass (the first tick: after start-up), plus ``slack`` bytes,
    for ``hold`` seconds, a full pass runs; a worker that leaks no cycle never pauses for
    one. (The frozen objects' count would be the exact measure, but ``gc.get_freeze_count``
    walks them all: 10-20 ms at 160,000 in a worker under load.) ``memory`` is injectable
    for tests; where it reads 0 (no /proc) no full pass runs. The full passes and their
    seconds are in ``counters`` (exported as sipguard_gc_full_passes_total and
    sipguard_gc_full_pass_seconds_total)."""

    def __init__(self, growth: float = GROWTH, slack: int = SLACK, hold: float = HOLD,
                 memory: Callable[[], int] = resident_bytes) -> None:
        self.growth = growth
        self.slack = slack
        self.hold = hold
        self.memory = memory
        self.base: int | None = None     # resident bytes after the last full pass (None: no tick yet)
        self.above: float | None = None  # since when the memory is over its bound
        self.counters = GcCounters()

    def tick(self, now: float | None = None) -> bool:
        """Collect the young generation, or everything when the memory has been past its
        bound for ``hold`` seconds; freeze what survives. True when it was a full pass."""
        now = time.monotonic() if now is None else now
        used = self.memory()
        if self.base is None:
            self.base = used
        if used <= self.base * (1.0 + self.growth) + self.slack:
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
        took = time.perf_counter() - started
        self.counters.full_passes += 1
        self.counters.full_pass_seconds += took
        self.base, self.above = self.memory(), None
        log.info("collector: full pass at %.0f MB resident (%.0f MB after the last one), %d objects freed, "
                 "%.0f ms", used / 1e6, last / 1e6, found, took * 1e3)
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
