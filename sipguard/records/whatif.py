"""What-if over history: stored call records re-decided by a candidate policy.

``whatif(records, current, candidate)`` rebuilds each record's policy facts and asks both
policies; the Report counts calls per rule under each, the transitions (``forward [default]
-> reject 603 [new-rule]``) and keeps a few samples of each. ``sipguard policy whatif`` prints
it; the console can call the same function on any iterable of records.

What is re-decided, and what is not:

* the facts are those of the call when it came (records of version 3 and later keep every
  fact: record fields plus ``CallRecord.facts``): the RMD, DNO and list answers of that day,
  the ``limited`` limiters the call hit then, the ``trunk.score`` it had. A candidate that
  rejects more calls would have changed later calls' rate-limit counts: not modelled;
* records written before version 3 lack the lookup facts (DNO, lists, limits, notices, RMD
  status) and are counted in ``no_facts``, not guessed;
* decisions the policy never took are kept as they were and counted in ``not_policy``: calls
  from no trunk rejected by ``unknown_source: reject`` and calls refused because the store
  failed with ``store_failure: fail-closed``;
* ``sign`` is what the policy asks; whether a call is signed also depends on the signer
  (foreign trunk, the caller shown, shaken.signing), which does not change with the policy.

``drift`` counts calls whose re-decision by the current policy differs from the recorded one:
the policy changed within the window, or the engine did; those calls' comparison is still
current vs candidate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sipguard.pipeline import default_decision
from sipguard.policy.decision import Decision
from sipguard.policy.engine import DEFAULT_RULE, Policy
from sipguard.policy.facts import EXTRA, IN_RECORD, TUPLE_FACTS, Facts
from sipguard.records.record import CallRecord

NOT_POLICY = frozenset(("unknown-source", "store-failure"))
_EXTRA_NAMES = frozenset(name for name, _ in EXTRA)
DEFAULT_SAMPLES = 5


def facts_of(record: CallRecord) -> Facts | None:
    """The Facts the policy saw for this call; None for a record without them (before version 3).
    A fact name this version does not know (written by a newer one) is left out."""
    if record.facts is None:
        return None
    values: dict[str, Any] = {name: getattr(record, column) for name, column in IN_RECORD.items()}
    for name, value in record.facts.items():
        if name in _EXTRA_NAMES:
            values[name] = tuple(value) if name in TUPLE_FACTS and value is not None else value
    values["reasons"] = tuple(values["reasons"] or ())
    return Facts(**values)


def outcome(decision: Decision) -> tuple[str, int | None, str, bool]:
    """What a comparison looks at: action, status, rule, sign."""
    return decision.action, decision.status, decision.rule or DEFAULT_RULE, decision.sign


def describe(o: tuple[str, int | None, str, bool]) -> str:
    action, status, rule, sign = o
    what = f"reject {status}" if action == "reject" else ("forward+sign" if sign else "forward")
    return f"{what} [{rule}]"


@dataclass(frozen=True, slots=True)
class Sample:
    time: float
    call_id: str
    trunk: str | None
    caller: str | None
    callee: str | None
    current: str
    candidate: str


@dataclass(slots=True)
class Report:
    records: int = 0
    redecided: int = 0
    no_facts: int = 0
    not_policy: int = 0
    drift: int = 0
    changed: int = 0
    current_rules: Counter[str] = field(default_factory=Counter)
    candidate_rules: Counter[str] = field(default_factory=Counter)
    transitions: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    first: float | None = None
    last: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"records": self.records, "redecided": self.redecided, "no_facts": self.no_facts,
                "not_policy": self.not_policy, "drift": self.drift, "changed": self.changed,
                "rules": {rule: {"current": self.current_rules[rule], "candidate": self.candidate_rules[rule]}
                          for rule in sorted(set(self.current_rules) | set(self.candidate_rules))},
                "transitions": [{"change": name, "calls": count,
                                 "samples": [_sample(s) for s in self.samples.get(name, [])]}
                                for name, count in self.transitions.most_common()]}

    def notes(self) -> list[str]:
        """What the comparison could not re-decide, or found changed: one sentence each."""
        out = []
        if self.no_facts:
            out.append(f"{self.no_facts} record(s) from before sipguard kept their facts (record version 3): "
                       "not re-decided")
        if self.not_policy:
            out.append(f"{self.not_policy} decision(s) the policy did not take (unknown source, store failure): "
                       "kept")
        if self.drift:
            out.append(f"{self.drift} call(s) the current policy decides otherwise than recorded (the policy "
                       "changed within the window)")
        return out

    def lines(self) -> list[str]:
        out = [f"{self.records} record(s) read, {self.redecided} re-decided, {self.changed} decided differently"]
        out += self.notes()
        out.append("")
        out.append(f"{'rule':<32} {'current':>10} {'candidate':>10} {'change':>10}")
        for rule in sorted(set(self.current_rules) | set(self.candidate_rules),
                           key=lambda r: -(self.current_rules[r] + self.candidate_rules[r])):
            a, b = self.current_rules[rule], self.candidate_rules[rule]
            out.append(f"{rule[:32]:<32} {a:>10} {b:>10} {b - a:>+10}")
        if self.transitions:
            out.append("")
            out.append("changes:")
        for name, count in self.transitions.most_common():
            out.append(f"  {count:>8}  {name}")
            for s in self.samples.get(name, []):
                out.append(f"            e.g. {_iso(s.time)} {s.call_id[:40]} trunk {s.trunk or '-'} "
                           f"{s.caller or '-'} -> {s.callee or '-'}")
        return out


def _sample(s: Sample) -> dict[str, Any]:
    return {"time": s.time, "call_id": s.call_id, "trunk": s.trunk, "caller": s.caller, "callee": s.callee}


def _iso(t: float) -> str:
    from sipguard.records.query import iso_utc

    return iso_utc(t) or "-"


class WhatIf:
    """The comparison, one record at a time (``add``), so any source can feed it."""

    def __init__(self, current: Policy | None, candidate: Policy, samples: int = DEFAULT_SAMPLES) -> None:
        self.current = current
        self.candidate = candidate
        self.samples = samples
        self.report = Report()

    def _decide(self, policy: Policy | None, facts: Facts) -> Decision:
        return policy.evaluate(facts) if policy is not None else default_decision(facts)

    def add(self, record: CallRecord) -> Sample | None:
        """Count one record; the Sample when its decision changes."""
        rep = self.report
        rep.records += 1
        rep.first = record.time if rep.first is None else min(rep.first, record.time)
        rep.last = record.time if rep.last is None else max(rep.last, record.time)
        if record.rule in NOT_POLICY:
            rep.not_policy += 1
            return None
        facts = facts_of(record)
        if facts is None:
            rep.no_facts += 1
            return None
        rep.redecided += 1
        old = outcome(self._decide(self.current, facts))
        new = outcome(self._decide(self.candidate, facts))
        rep.current_rules[old[2]] += 1
        rep.candidate_rules[new[2]] += 1
        if (old[0], old[2]) != (record.action, record.rule or DEFAULT_RULE):
            rep.drift += 1
        if old == new:
            return None
        rep.changed += 1
        name = f"{describe(old)} -> {describe(new)}"
        rep.transitions[name] += 1
        sample = Sample(record.time, record.call_id, record.trunk, record.caller, record.callee,
                        describe(old), describe(new))
        kept = rep.samples.setdefault(name, [])
        if len(kept) < self.samples:
            kept.append(sample)
        return sample


def whatif(records: Iterable[CallRecord], current: Policy | None, candidate: Policy,
           samples: int = DEFAULT_SAMPLES) -> Report:
    """Re-decide ``records`` by ``current`` (None: the built-in default) and ``candidate``."""
    w = WhatIf(current, candidate, samples)
    for record in records:
        w.add(record)
    return w.report


async def whatif_async(records: AsyncIterable[CallRecord], current: Policy | None, candidate: Policy,
                       samples: int = DEFAULT_SAMPLES) -> Report:
    """``whatif`` over a store's records (``query.iterate``)."""
    w = WhatIf(current, candidate, samples)
    async for record in records:
        w.add(record)
    return w.report
