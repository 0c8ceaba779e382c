"""Where every INVITE decision goes, once: the traceback record (``records/``), the metrics
(``observe/metrics.py``) and the decision log line (``observe/logs.py``).

The proxy core calls ``DecisionSink.on_outcome`` once per decided INVITE, after the answer or
the forward has been sent; it never waits (``RecordWriter.submit`` only queues) and never
raises into the core (the core logs what a sink raises). The pipeline and the core know
nothing of the record format, metric names or log fields.

The per-call series are counted here in plain ints (``DecisionCounts``, compiled with the
hot path): a Prometheus value is a lock and, with several workers, an mmap write, six or so
per call. ``Metrics.fold`` adds the counts to the Prometheus values on every housekeeping
tick (0.5 s), before this process renders /metrics and when the worker stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sipguard.observe.line import log_decision
from sipguard.records.record import CallRecord

if TYPE_CHECKING:
    from sipguard.pipeline import Outcome
    from sipguard.policy.facts import Facts

# (action, status, verstat, attest, trunk) as the record has them; labels made at the fold
InviteKey = tuple[str, int | None, str, str | None, str | None]


class Records(Protocol):
    def submit(self, record: CallRecord) -> None:
        """Queue one record; O(1), never raises (records/writer.py)."""


class DecisionCounts:
    """What one worker's decisions add to sipguard_invites, _invite_reasons, _rule_hits,
    _rate_limit_hits, _detector_hits, _signed and _decision_seconds since the last ``take``.
    Only the event loop's thread counts and takes (no lock)."""

    def __init__(self, bounds: tuple[float, ...], latency_sum: float = 0.0) -> None:
        self.bounds = bounds                 # the histogram's upper bounds, +Inf last
        self.invites: dict[InviteKey, int] = {}
        self.reasons: dict[str, int] = {}
        self.rules: dict[tuple[str, str | None], int] = {}
        self.limited: dict[str, int] = {}
        self.detectors: dict[tuple[str, str], int] = {}
        self.signed = 0
        self.buckets = [0] * len(bounds)     # per bucket, not cumulative (as prometheus_client)
        # the histogram's sum, from the value it had: each latency added in turn, as
        # Histogram.observe adds them, so the exported float is the same to the last bit
        self.latency_sum = latency_sum

    def count(self, record: CallRecord, latency: float, limited: tuple[str, ...], facts: Facts) -> None:
        """One decided INVITE: its record, seconds to the decision, limits hit, facts."""
        self.decision(record, latency)
        for name in limited:
            self.limit(name)
        self.facts(facts)

    def decision(self, record: CallRecord, latency: float) -> None:
        key = (record.action, record.status, record.verstat, record.attest, record.trunk)
        invites = self.invites
        invites[key] = invites.get(key, 0) + 1
        for reason in record.reasons:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if record.rule is not None:
            rule = (record.rule, record.rule_class)
            self.rules[rule] = self.rules.get(rule, 0) + 1
        if record.signed:
            self.signed += 1
        i = 0
        for bound in self.bounds:
            if latency <= bound:             # as Histogram.observe: the first bound that holds it
                self.buckets[i] += 1
                break
            i += 1
        self.latency_sum += latency

    def limit(self, name: str) -> None:
        self.limited[name] = self.limited.get(name, 0) + 1

    def facts(self, facts: Facts) -> None:
        """One count per detector fact that held (sipguard/detectors.py, threats.py)."""
        if facts.campaign_fanout is True:
            self._detector("campaign.fanout", "")
        if facts.campaign_burst is True:
            self._detector("campaign.burst", "")
        if facts.spoof_neighbor is True:
            self._detector("spoof.neighbor", "")
        if facts.spoof_same is True:
            self._detector("spoof.same", "")
        if facts.spoof_us_cid_foreign_trunk is True:
            self._detector("spoof.us_cid_foreign_trunk", "")
        if facts.spoof_a_on_bad_number is True:
            self._detector("spoof.a_on_bad_number", "")
        if facts.trunk_threat is not None:
            self._detector("trunk.threat", facts.trunk_threat)
        if facts.signer_threat is not None:
            self._detector("signer.threat", facts.signer_threat)

    def _detector(self, fact: str, source: str) -> None:
        key = (fact, source)
        self.detectors[key] = self.detectors.get(key, 0) + 1

    def take(self) -> DecisionCounts:
        """The counts so far; this one starts again from none (the sum goes on)."""
        out = DecisionCounts(self.bounds, self.latency_sum)
        out.invites, self.invites = self.invites, {}
        out.reasons, self.reasons = self.reasons, {}
        out.rules, self.rules = self.rules, {}
        out.limited, self.limited = self.limited, {}
        out.detectors, self.detectors = self.detectors, {}
        out.signed, self.signed = self.signed, 0
        out.buckets, self.buckets = self.buckets, [0] * len(self.bounds)
        return out


class DecisionSink:
    """One worker's fan-out: records, metrics and the decision log of each outcome."""

    __slots__ = ("records", "counts", "instance")

    def __init__(self, records: Records, counts: DecisionCounts, instance: str) -> None:
        self.records = records
        self.counts = counts             # Metrics.decisions: folded into the Prometheus values
        self.instance = instance         # proxy.instance, else host/worker: in every record

    def on_outcome(self, outcome: Outcome, status: int | None, hop: str | None, latency: float) -> None:
        """``status``: what was answered upstream (None: forwarded to ``hop``; 302: redirected
        to it); ``latency``: seconds from the INVITE to its decision."""
        record = CallRecord.of(outcome, status, hop if status is None or status == 302 else None, self.instance)
        self.records.submit(record)
        self.counts.count(record, latency, outcome.lookups.limited, outcome.facts)
        log_decision(record)
