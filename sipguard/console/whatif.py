"""What a candidate policy would have decided for stored calls: the console's what-if.

MERGE NOTE: the ``policy whatif --since`` command (helper "upstreams") evaluates policies
over stored records too; when it lands, ``changes`` should call its function instead
of ``facts_of`` + ``evaluate`` here. This module is the one place the console does it.

A record keeps what the call said and what was decided, not every lookup: the facts it
does not hold (caller.dno, trunk.rmd, signer.rmd, trunk.implementation, list, limited,
store.degraded) are unknown here, as when the store does not answer (null: a rule on
them does not match). Both policies see the same facts, so a difference is the policies'.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sipguard.numbers import parse_tn
from sipguard.policy.decision import Decision
from sipguard.policy.engine import Policy
from sipguard.policy.facts import Facts
from sipguard.records.record import CallRecord

UNKNOWN_FACTS = ("caller.dno", "trunk.rmd", "signer.rmd", "trunk.implementation", "list", "limited",
                 "store.degraded")


def facts_of(record: CallRecord) -> Facts:
    caller = parse_tn(record.caller_raw or record.caller)
    callee = parse_tn(record.callee_raw or record.callee)
    return Facts(verstat=record.verstat, attest=record.attest, reasons=record.reasons, trunk=record.trunk,
                 trunk_role=record.trunk_role, trunk_rmd=None, trunk_frn=record.provider_frn,
                 signer_spc=record.spc, signer_rmd=None, source_ip=record.source_ip,
                 caller=caller.e164, callee=callee.e164, caller_nanp=caller.nanp, caller_us=caller.us,
                 caller_valid=caller.valid, caller_invalid_reason=caller.invalid_reason, caller_dno=False,
                 caller_anonymous=caller.anonymous, list=None, limited=(), notice=record.notice)


def outcome(decision: Decision) -> str:
    """A decision in one short phrase: ``reject 603 (rule robocall)``, ``forward (default)``."""
    what = decision.action if decision.status is None else f"{decision.action} {decision.status}"
    return f"{what} ({'rule ' + decision.rule if decision.rule else 'default'})"


@dataclass(frozen=True, slots=True)
class Change:
    record: CallRecord
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class Report:
    examined: int
    changes: list[Change]
    summary: list[tuple[str, str, int]]     # (before, after, calls), most calls first


def changes(records: list[CallRecord], current: Policy, candidate: Policy, keep: int = 200) -> Report:
    """Each record decided by both policies on the same facts; the calls decided otherwise
    (at most ``keep`` of them listed) and a count per kind of change."""
    listed: list[Change] = []
    counts: Counter[tuple[str, str]] = Counter()
    for record in records:
        facts = facts_of(record)
        before, after = outcome(current.evaluate(facts)), outcome(candidate.evaluate(facts))
        if before != after:
            counts[(before, after)] += 1
            if len(listed) < keep:
                listed.append(Change(record, before, after))
    summary = [(b, a, n) for (b, a), n in counts.most_common()]
    return Report(len(records), listed, summary)
