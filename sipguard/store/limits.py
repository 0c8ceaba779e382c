"""GCRA rate limiting in Python (memory store) and the limiter arguments both backends use.

GCRA (generic cell rate algorithm): one number per bucket, the theoretical arrival time
``tat``. With emission interval ``T = 1/rate`` and ``burst`` B, a call at ``now`` is allowed
when ``max(tat, now) + T - B*T <= now``; then ``tat = max(tat, now) + T``. A refused call
does not move ``tat`` (a flood does not lock a caller out for longer than its own rate).
lua/lookup.lua does exactly this with the Redis server's clock, so every instance agrees.
"""

from __future__ import annotations

from collections.abc import Sequence

from sipguard.store.base import LimitSpec, LookupKeys
from sipguard.store.keys import digits


def field_value(field: str, keys: LookupKeys) -> str | None:
    if field == "trunk":
        return keys.trunk
    if field == "source":
        return keys.source_ip
    if field == "caller":
        return digits(keys.caller)
    if field == "callee":
        return digits(keys.callee)
    if field == "spc":
        return keys.spc
    return None


def applicable(limits: Sequence[LimitSpec], keys: LookupKeys) -> list[tuple[int, str, float, int]]:
    """(index, bucket value, emission interval, burst) of each limiter this call is keyed by.

    A limiter whose key field is unknown for this call (no caller number, no SPC, trunk
    without cps for ``trunk.cps``) does not apply: counting every anonymous call in one
    bucket would punish the wrong people.
    """
    out = []
    for index, spec in enumerate(limits):
        rate = spec.rate_for(keys.trunk)
        if rate is None or rate <= 0:
            continue
        parts = [field_value(f, keys) for f in spec.key]
        if any(p is None or p == "" for p in parts):
            continue
        out.append((index, "|".join(p for p in parts if p), 1.0 / rate, spec.burst))
    return out


class Gcra:
    """Buckets in a dict, with expiry so idle buckets do not pile up."""

    __slots__ = ("_tat", "_sweep_at")

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._sweep_at = 0.0

    def hit(self, key: str, interval: float, burst: int, now: float) -> bool:
        """Count one call; True when it is over the limit."""
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + interval
        if new_tat - burst * interval > now:
            return True
        self._tat[key] = new_tat
        if now >= self._sweep_at:
            self._sweep(now)
        return False

    def _sweep(self, now: float) -> None:
        # a bucket whose tat is in the past is the same as no bucket: drop it
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
        self._sweep_at = now + 10.0

    def __len__(self) -> int:
        return len(self._tat)
