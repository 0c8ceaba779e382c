"""The cyclic garbage collector paced by the worker (``GcPacer``) and moved out of the way
of what lives as long as the process (``tune_gc``)."""

from __future__ import annotations

import gc
import time


class GcPacer:
    """The cyclic collector on the worker's schedule, not the allocator's.

    Left to itself the collector starts a young-generation pass every 50,000 net allocations;
    under load that pass walks every transaction still alive (~10-15 ms, in every worker at
    once since they allocate alike), and the older generations' passes walk far more. Here,
    twice a second, the young generation is collected (half a second of survivors: well
    under a millisecond) and what survives is frozen, so no automatic pass ever walks it
    again; those objects are still freed by reference counting when their transaction ends.
    Every ``full_every`` seconds everything is unfrozen and collected once, so cyclic
    garbage that reached a frozen object is not kept for ever."""

    def __init__(self, full_every: float = 600.0, now: float | None = None) -> None:
        self.full_every = full_every
        self._last_full = time.monotonic() if now is None else now

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._last_full >= self.full_every:
            self._last_full = now
            gc.unfreeze()
            gc.collect()
        else:
            gc.collect(0)
        gc.freeze()


def tune_gc() -> None:
    """Everything made at start-up (config, policy code, tables, caches) lives as long as the
    process: move it out of the collector's sight, and collect the young generation less
    often. The per-call objects are short-lived and acyclic, and a transaction keeps bytes,
    not objects, once decided; measured under load this cut the p99 INVITE response time
    several-fold (bench/RESULTS.md, "Proxy load")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
