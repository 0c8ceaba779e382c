"""Time is an input. The core takes ``now`` from a clock, never from ``time.time()`` itself.

``SystemClock`` serves live traffic, ``ManualClock`` tests, and replay sets a
``ManualClock`` to each packet's capture time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (iat, certificate validity, records)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (timers, caches, rate limits)."""
        ...


class SystemClock:
    __slots__ = ()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (tests, replay)."""

    __slots__ = ("now",)

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, now: float) -> None:
        self.now = now
