"""The metric hooks components call where their events happen.

A component takes a ``MetricHooks`` (observe/metrics.Metrics is one) and defaults to
``NO_METRICS``, which does nothing (h2's DummyLogger): so tests, replay and tools build
components without a registry, and the component never asks whether metrics are on.
Hooks carry what a counter cannot: a duration (x5u downloads, store round trips, record
batches). What a component only counts it keeps in its ``counters`` (a slotted dataclass
of ints, incremented in place), which observe/metrics.py reads every half second.
This module must not import prometheus_client: shaken/, store/ and records/ import it.
"""

from __future__ import annotations

from typing import Protocol


class MetricHooks(Protocol):
    def observe_x5u_fetch(self, seconds: float, outcome: str = "ok") -> None:
        """A certificate download that succeeded, and how long it took."""

    def observe_store(self, op: str, seconds: float, error: bool = False) -> None:
        """One round trip to the state store (op: lookup | cert_get | cert_put)."""

    def records_written(self, count: int, seconds: float) -> None:
        """A batch of traceback records stored, and how long the write took."""

    def records_spooled(self, count: int) -> None:
        """Records written to the local spool (the store failed, or an earlier batch waits there)."""

    def records_write_failed(self) -> None:
        """A batch write that failed."""


class NoMetrics:
    __slots__ = ()

    def observe_x5u_fetch(self, seconds: float, outcome: str = "ok") -> None:
        pass

    def observe_store(self, op: str, seconds: float, error: bool = False) -> None:
        pass

    def records_written(self, count: int, seconds: float) -> None:
        pass

    def records_spooled(self, count: int) -> None:
        pass

    def records_write_failed(self) -> None:
        pass


NO_METRICS: MetricHooks = NoMetrics()
