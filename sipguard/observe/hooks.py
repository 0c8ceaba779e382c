"""The metric hooks the verifier and the stores call where their I/O happens.

A component takes a ``MetricHooks`` (observe/metrics.Metrics is one) and defaults to
``NO_METRICS``, which does nothing (h2's DummyLogger): so tests, replay and tools build
components without a registry, and the component never asks whether metrics are on.
This module must not import prometheus_client: shaken/ and store/ import it.
"""

from __future__ import annotations

from typing import Protocol


class MetricHooks(Protocol):
    def observe_x5u_fetch(self, seconds: float, outcome: str = "ok") -> None:
        """A certificate download that succeeded, and how long it took."""

    def observe_store(self, op: str, seconds: float, error: bool = False) -> None:
        """One round trip to the state store (op: lookup | cert_get | cert_put)."""


class NoMetrics:
    __slots__ = ()

    def observe_x5u_fetch(self, seconds: float, outcome: str = "ok") -> None:
        pass

    def observe_store(self, op: str, seconds: float, error: bool = False) -> None:
        pass


NO_METRICS: MetricHooks = NoMetrics()
