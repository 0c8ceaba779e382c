"""CallRecord.of: each value of an Outcome in its field, and what records of alike calls share."""

from __future__ import annotations

import ast
import dataclasses
import json
import operator
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sipguard.config import Provider, Trunk
from sipguard.pipeline import Call, Outcome
from sipguard.policy.decision import FORWARD, reject
from sipguard.policy.facts import EXTRA_NAMES, Facts, extra_facts, extra_values
from sipguard.policy.facts import FIELDS as FACT_FIELDS
from sipguard.records.record import FIELDS, CallRecord, caller_check, shared_facts, spc_owner, to_row
from sipguard.shaken.reasons import Reason, Verstat
from sipguard.shaken.result import NOT_VERIFIED
from sipguard.sip import Request, parse
from sipguard.store.base import Lookups

INVITE = (b"INVITE sip:+13036231000@192.0.2.9 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n"
          b"From: <sip:+12127363100@192.0.2.1>;tag=a\r\nTo: <sip:+13036231000@192.0.2.9>\r\n"
          b"Call-ID: of-1@192.0.2.1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
ROOT = Path(__file__).resolve().parents[2]
TRUNK = Trunk("t-of", "foreign", (), Provider(name="Carrier Of", frn="0099887766", rmd="RMD0009999", country="CA"))


def _call() -> Call:
    req = parse(INVITE)
    assert isinstance(req, Request)
    return Call.of(req)


def by_name(outcome: Outcome, status: int | None, next_hop: str | None, instance: str | None) -> CallRecord:
    """The mapping as it was written field by field (keywords), the oracle for ``of``'s positions."""
    trunk, ver, dec, facts, call = outcome.trunk, outcome.verification, outcome.decision, outcome.facts, outcome.call
    provider = trunk.provider if trunk is not None else None
    signed = outcome.signed
    return CallRecord(
        time=outcome.time, call_id=call.call_id, source_ip=outcome.source[0], source_port=outcome.source[1],
        transport=outcome.transport, trunk=trunk.id if trunk else None, trunk_role=trunk.role if trunk else None,
        provider_name=provider.name if provider else None, provider_frn=provider.frn if provider else None,
        provider_rmd=provider.rmd if provider else None, provider_country=provider.country if provider else None,
        rmd_snapshot=outcome.lookups.rmd_snapshot, caller_raw=call.caller.raw, caller=call.caller.e164,
        callee_raw=call.callee.raw, callee=call.callee.e164, verstat=str(ver.verstat), attest=ver.attest,
        origid=ver.origid, x5u=ver.x5u, spc=ver.spc, reasons=tuple(str(r) for r in ver.reasons),
        rule=dec.rule, rule_class=dec.rule_class, notice=dec.notice, action=dec.action, status=status,
        shadow_action=dec.would.action if dec.would is not None else None, signed=signed,
        signed_origid=outcome.signed_origid, identity_dropped=False, next_hop=next_hop, instance=instance,
        signed_attest=outcome.signed_attest if signed else None,
        signed_rule=(dec.rule or "(default)") if signed else None,
        caller_check=caller_check(facts.caller_dno, facts.caller_valid, facts.caller_invalid_reason),
        spc_owner=spc_owner(ver.spc, outcome.lookups.signer_frn, provider.frn if provider else None),
        trunk_rmd=facts.trunk_rmd, trunk_implementation=facts.trunk_implementation, facts=extra_facts(facts),
        passports=ver.report())


SIGNED_VER = dataclasses.replace(NOT_VERIFIED, verstat=Verstat.PASSED, attest="B", origid="oid-in", x5u="https://x5u",
                                 spc="789X", reasons=())
FAILED_VER = dataclasses.replace(NOT_VERIFIED, verstat=Verstat.FAILED, attest="A", spc="123A",
                                 reasons=(Reason.BAD_SIGNATURE, Reason.STALE_IAT))
OUTCOMES: dict[str, tuple[Outcome, int | None, str | None, str | None]] = {
    "forwarded and signed": (Outcome(
        1765000000.25, ("192.0.2.1", 5071), "tcp", _call(), TRUNK, SIGNED_VER,
        Lookups(signer_frn="0099887766", rmd_snapshot="2026-12-01", trunk_rmd="listed"),
        Facts(trunk_rmd="listed", trunk_implementation="partial", caller_valid=True, caller_us=True, div_count=2),
        dataclasses.replace(FORWARD, rule="sign-all", rule_class="signing", sign=True),
        identity_added="eyJ...", signed_origid="oid-out", signed_attest="A"), None, "sip:core:5070", "host/3"),
    "rejected in shadow": (Outcome(
        1765000001.5, ("192.0.2.2", 5060), "udp", _call(), TRUNK, FAILED_VER, Lookups(signer_frn="0011"),
        Facts(caller_dno=True, trunk_rmd="removed", limited=("per-trunk",), notice="n1"),
        dataclasses.replace(FORWARD, notice="shadowed", would=reject(603, "Decline", rule="dno",
                                                                     rule_class="deterministic"))),
        None, None, None),
    "unknown source": (Outcome(
        1765000002.0, ("198.51.100.9", 5062), "tls", _call(), None, NOT_VERIFIED, Lookups(),
        Facts(source_ip="198.51.100.9"), reject(403, "Forbidden", rule="unknown-source", rule_class="c")),
        403, None, "i/0"),
}


def test_of_puts_each_value_of_the_outcome_in_its_field() -> None:
    """``of`` lists the values by position: each must land in the field the keyword mapping names."""
    for name, (outcome, status, hop, instance) in OUTCOMES.items():
        made, expected = CallRecord.of(outcome, status, hop, instance), by_name(outcome, status, hop, instance)
        assert len(made) == len(FIELDS)
        assert {f: getattr(made, f) for f in FIELDS} == {f: getattr(expected, f) for f in FIELDS}, name
        assert to_row(made) == to_row(expected), name
        assert type(made) is CallRecord and made == expected


def test_records_of_alike_calls_share_one_facts_dict() -> None:
    """Records waiting for the writer (tens of thousands under overload) hold one dict for the
    same extra facts, equal to what ``extra_facts`` makes; other facts, another dict."""
    outcome, status, hop, instance = OUTCOMES["forwarded and signed"]
    first, second = CallRecord.of(outcome, status, hop, instance), CallRecord.of(outcome, status, hop, instance)
    assert first.facts == extra_facts(outcome.facts) and first.facts is second.facts
    other = CallRecord.of(dataclasses.replace(outcome, facts=dataclasses.replace(outcome.facts, div_count=3)),
                          status, hop, instance)
    assert other.facts == {**extra_facts(outcome.facts), "div_count": 3} and other.facts is not first.facts


BOOLS = [f.name for f in dataclasses.fields(Facts) if isinstance(f.default, bool)]
FACT_VALUES: dict[str, Any] = {
    **{name: st.booleans() for name in BOOLS},
    "trunk_score": st.none() | st.integers(0, 100), "div_count": st.integers(0, 3),
    "rcd_verified": st.none() | st.booleans(), "passport_replayed": st.none() | st.booleans(),
    "signer_rmd": st.sampled_from([None, "listed", "removed", "absent"]),
    "caller_invalid_reason": st.sampled_from([None, "anonymous", "fictional", "too-short"]),
    "list": st.sampled_from([None, "allow", "block"]), "notice": st.none() | st.text(max_size=4),
    "limited": st.lists(st.sampled_from(["per-trunk", "per-caller"]), max_size=2).map(tuple),
    "div_verstat": st.sampled_from(["No-TN-Validation", "TN-Validation-Passed"]),
    "trunk_threat": st.none() | st.text(max_size=3),
}


@given(st.lists(st.fixed_dictionaries({}, optional=FACT_VALUES).map(lambda kw: Facts(**kw)), min_size=1, max_size=6))
def test_shared_facts_are_extra_facts_byte_for_byte(many: list[Facts]) -> None:
    for facts in many:
        shared = shared_facts(facts)
        assert shared == extra_facts(facts)
        assert json.dumps(shared) == json.dumps(extra_facts(facts))   # True stays true, 1 stays 1


def test_a_fact_that_cannot_be_hashed_gets_a_dict_of_its_own() -> None:
    facts = Facts(limited=(["per-trunk"],))  # type: ignore[arg-type]   # a list inside: unhashable
    assert shared_facts(facts) == {"limited": (["per-trunk"],)} and shared_facts(facts) is not shared_facts(facts)


def test_extra_values_are_the_extra_facts_in_order() -> None:
    """``extra_values`` is written out field by field: it reads each of ``EXTRA_NAMES``, in that
    order, and nothing else. Each fact on its own with a value no default has, then all of them."""
    source = ast.parse((ROOT / "sipguard/policy/facts.py").read_text())   # the annotations as written
    node = next(n for n in ast.walk(source) if isinstance(n, ast.ClassDef) and n.name == "Facts")
    kinds = {a.target.id: ast.unparse(a.annotation) for a in node.body
             if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)}

    def value(name: str, i: int) -> Any:
        kind = kinds[name]
        if kind.startswith("bool"):
            return not dataclasses.fields(Facts)[i].default
        return 1000 + i if kind.startswith("int") else (f"t{i}",) if kind.startswith("tuple") else f"v{i}"

    every: dict[str, Any] = {}
    for i, name in enumerate(FACT_FIELDS):
        every[name] = value(name, i)
        alone = Facts(**{name: every[name]})
        assert extra_values(alone) == operator.attrgetter(*EXTRA_NAMES)(alone), name
    assert extra_values(Facts(**every)) == operator.attrgetter(*EXTRA_NAMES)(Facts(**every))
    assert extra_values(Facts()) == operator.attrgetter(*EXTRA_NAMES)(Facts())
