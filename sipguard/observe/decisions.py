"""Where every INVITE decision goes, once: the traceback record (``records/``), the metrics
(``observe/metrics.py``) and the decision log line (``observe/logs.py``).

The proxy core calls ``DecisionSink.on_outcome`` once per decided INVITE, after the answer or
the forward has been sent; it never waits (``RecordWriter.submit`` only queues) and never
raises into the core (the core logs what a sink raises). The pipeline and the core know
nothing of the record format, metric names or log fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sipguard.observe.logs import log_decision
from sipguard.records.record import CallRecord

if TYPE_CHECKING:
    from sipguard.observe.metrics import Metrics
    from sipguard.pipeline import Outcome


class Records(Protocol):
    def submit(self, record: CallRecord) -> None:
        """Queue one record; O(1), never raises (records/writer.py)."""


class DecisionSink:
    """One worker's fan-out: records, metrics and the decision log of each outcome."""

    __slots__ = ("records", "metrics", "instance")

    def __init__(self, records: Records, metrics: Metrics, instance: str) -> None:
        self.records = records
        self.metrics = metrics
        self.instance = instance         # proxy.instance, else host/worker: in every record

    def on_outcome(self, outcome: Outcome, status: int | None, hop: str | None, latency: float) -> None:
        """``status``: what was answered upstream (None: forwarded to ``hop``; 302: redirected
        to it); ``latency``: seconds from the INVITE to its decision."""
        record = CallRecord.of(outcome, status, hop if status is None or status == 302 else None, self.instance)
        self.records.submit(record)
        self.metrics.observe_decision(record, latency)
        for name in outcome.lookups.limited:
            self.metrics.rate_limited(name)
        self.metrics.detectors_hit(outcome.facts)
        log_decision(record)
