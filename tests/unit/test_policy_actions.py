"""Every action and class, table-driven: facts in, the exact decision out."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipguard.policy import Redress
from sipguard.policy.decision import Decision, Tag
from sipguard.policy.facts import Facts
from sipguard.shaken.reasons import RFC8224_RESPONSE
from tests.policy_fixtures import REDRESS, one_rule, policy_of

BLOCKED = ('Q.850;cause=21;location=TN;text="Network Blocked;url=https://example.net/blocked-calls;'
           'tel=+18005550100;email=noc@example.net"')
Q850 = "Q.850;cause=21"

# (id, action lines, facts, status, phrase, headers, rule_class, notice)
REJECTS = [
    ("analytics is 603+", "class: analytics", Facts(), 603, "Network Blocked", (("Reason", BLOCKED),),
     "analytics", None),
    ("status 603+", "status: 603+", Facts(), 603, "Network Blocked", (("Reason", BLOCKED),), None, None),
    ("deterministic", "class: deterministic", Facts(), 603, "Decline", (("Reason", Q850),),
     "deterministic", None),
    ("deterministic with reason", "class: deterministic\nreason: upstream not in RMD", Facts(), 603,
     "Decline", (("Reason", Q850 + ';text="upstream not in RMD"'),), "deterministic", None),
    ("notice carries the reference", "class: notice", Facts(notice="EB-2026-17"), 603, "Decline",
     (("Reason", Q850),), "notice", "EB-2026-17"),
    ("notice without reference", "class: notice", Facts(), 603, "Decline", (("Reason", Q850),), "notice", None),
    ("rfc8224 first reason", "{}", Facts(reasons=("cert-expired", "bad-signature")), 437,
     "Unsupported Credential", (("Reason", 'SIP;cause=437;text="cert-expired"'),), None, None),
    ("rfc8224 stale", "{}", Facts(reasons=("stale-iat",)), 403, "Stale Date",
     (("Reason", 'SIP;cause=403;text="stale-iat"'),), None, None),
    ("rfc8224 no reasons", "{}", Facts(), 403, "Forbidden", (), None, None),
    ("rfc8224 unknown reason", "{}", Facts(reasons=("martian",)), 403, "Forbidden", (), None, None),
    ("rfc8224 no reasons with rule reason", "reason: no identity", Facts(), 403, "Forbidden",
     (("Reason", 'SIP;cause=403;text="no identity"'),), None, None),
    ("608 with jwscard", "status: 608", Facts(), 608, "Rejected",
     (("Call-Info", "<https://example.net/blocked-calls>;purpose=jwscard"),), None, None),
    ("503 retry-after default", "status: 503", Facts(), 503, "Service Unavailable",
     (("Retry-After", "30"),), None, None),
    ("503 retry-after", "status: 503\nretry_after: 7", Facts(), 503, "Service Unavailable",
     (("Retry-After", "7"),), None, None),
    ("explicit 603", "status: 603", Facts(), 603, "Decline", (("Reason", Q850),), None, None),
    ("explicit code with reason", "status: 486\nreason: go away", Facts(), 486, "Busy Here",
     (("Reason", 'SIP;cause=486;text="go away"'),), None, None),
    ("explicit code as string", "status: '404'", Facts(), 404, "Not Found", (), None, None),
    ("class analytics with explicit code", "class: analytics\nstatus: 608", Facts(), 608, "Rejected",
     (("Call-Info", "<https://example.net/blocked-calls>;purpose=jwscard"),), "analytics", None),
    ("deterministic may use 603+", "class: deterministic\nstatus: 603+", Facts(), 603, "Network Blocked",
     (("Reason", BLOCKED),), "deterministic", None),
]


@pytest.mark.parametrize(("lines", "facts", "status", "phrase", "headers", "rule_class", "notice"),
                         [c[1:] for c in REJECTS], ids=[c[0] for c in REJECTS])
def test_reject(tmp_path: Path, lines: str, facts: Facts, status: int, phrase: str,
                headers: tuple[tuple[str, str], ...], rule_class: str | None, notice: str | None) -> None:
    extra = "" if lines == "{}" else "\n" + lines
    decision = one_rule(tmp_path, "{}", "action: reject" + extra).evaluate(facts)
    assert decision == Decision("reject", status=status, phrase=phrase, headers=headers, rule="hit",
                                rule_class=rule_class, notice=notice)


@pytest.mark.parametrize("reason", sorted(r.value for r in RFC8224_RESPONSE))
def test_every_verification_reason_gets_its_rfc8224_response(tmp_path: Path, reason: str) -> None:
    decision = one_rule(tmp_path, "{}", "action: reject").evaluate(Facts(reasons=(reason,)))
    status, phrase = next(v for k, v in RFC8224_RESPONSE.items() if k.value == reason)
    assert (decision.status, decision.phrase) == (status, phrase)


def test_603_plus_with_only_some_contacts_and_another_location(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, """
        version: 1
        rules: [{name: burst, action: reject, class: analytics}]
        """, redress=Redress(email="noc@example.net", location="LN"))
    assert policy.evaluate(Facts()).headers == (
        ("Reason", 'Q.850;cause=21;location=LN;text="Network Blocked;email=noc@example.net"'),)


def test_608_without_redress_url_has_no_call_info(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, """
        version: 1
        rules: [{name: r, action: reject, status: 608}]
        """, redress=Redress(tel="+18005550100"))
    assert policy.evaluate(Facts()).headers == ()


FORWARDS = [
    ("plain", "action: forward", Decision("forward", rule="hit")),
    ("sign", "action: forward\nsign: true", Decision("forward", rule="hit", sign=True)),
    ("tag", "action: forward\ntag: {display_prefix: 'SPAM? ', headers: {X-Call-Screen: attest-c, X-B: 2}}",
     Decision("forward", rule="hit", tag=Tag("SPAM? ", (("X-Call-Screen", "attest-c"), ("X-B", "2"))))),
    ("tag headers only", "action: forward\ntag: {headers: {X-A: a}}",
     Decision("forward", rule="hit", tag=Tag(None, (("X-A", "a"),)))),
    ("to", "action: forward\nto: 'sip:192.0.2.10:5080;transport=tcp'",
     Decision("forward", rule="hit", to="sip:192.0.2.10:5080;transport=tcp")),
    ("to hostname", "action: forward\nto: sips:sbc.example.net", Decision("forward", rule="hit", to="sips:sbc.example.net")),
    ("to ipv6", "action: forward\nto: 'sip:[2001:db8::5]:5060'", Decision("forward", rule="hit", to="sip:[2001:db8::5]:5060")),
    ("class recorded", "action: forward\nclass: analytics", Decision("forward", rule="hit", rule_class="analytics")),
    ("notice forward", "action: forward\nclass: notice", Decision("forward", rule="hit", rule_class="notice",
                                                                   notice="EB-9")),
]


@pytest.mark.parametrize(("lines", "expected"), [c[1:] for c in FORWARDS], ids=[c[0] for c in FORWARDS])
def test_forward(tmp_path: Path, lines: str, expected: Decision) -> None:
    assert one_rule(tmp_path, "{}", lines).evaluate(Facts(notice="EB-9")) == expected


POLICY = """
    version: 1
    {mode}
    default: {{action: forward, sign: true}}
    rules:
      - name: dno
        when: {{caller.dno: true}}
        action: reject
        class: deterministic
      - name: tag-c
        when: {{attest: C}}
        action: forward
        tag: {{display_prefix: "C "}}
    """


def test_first_matching_rule_decides_then_default(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, POLICY.format(mode=""))
    assert policy.evaluate(Facts(caller_dno=True, attest="C")).rule == "dno"
    assert policy.evaluate(Facts(attest="C")).rule == "tag-c"
    assert policy.evaluate(Facts()) == Decision("forward", sign=True)
    assert policy.rule_names() == ("dno", "tag-c")
    assert policy.hits() == {"dno": 1, "tag-c": 1, "default": 1}
    assert not policy.shadow and policy.version == 1


def test_emergency_calls_are_never_rejected(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, POLICY.format(mode=""))
    decision = policy.evaluate(Facts(caller_dno=True, emergency=True))
    assert decision.action == "forward" and decision.rule == "dno"
    assert decision.would == Decision("reject", status=603, phrase="Decline", headers=(("Reason", Q850),),
                                      rule="dno", rule_class="deterministic")
    # a forward stays what the rule says
    assert policy.evaluate(Facts(attest="C", emergency=True)).tag == Tag("C ")


def test_emergency_overrides_a_reject_default(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, "version: 1\ndefault: {action: reject, status: 403}\n")
    assert policy.evaluate(Facts()).status == 403
    decision = policy.evaluate(Facts(emergency=True))
    assert decision.action == "forward" and decision.would is not None and decision.would.status == 403


def test_shadow_forwards_everything_untouched_and_keeps_the_real_decision(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, POLICY.format(mode="mode: shadow"))
    assert policy.shadow
    rejected = policy.evaluate(Facts(caller_dno=True))
    assert (rejected.action, rejected.rule, rejected.rule_class) == ("forward", "dno", "deterministic")
    assert rejected.would is not None and rejected.would.status == 603
    tagged = policy.evaluate(Facts(attest="C"))
    assert tagged.tag is None and tagged.would is not None and tagged.would.tag == Tag("C ")
    default = policy.evaluate(Facts())
    assert not default.sign and default.rule is None and default.would == Decision("forward", sign=True)


def test_no_default_forwards(tmp_path: Path) -> None:
    assert policy_of(tmp_path, "version: 1\n").evaluate(Facts()) == Decision("forward")


def test_redress_from_section() -> None:
    from sipguard.yamlconf import parse, section_of

    sec = section_of(parse("url: https://e.net/r\ntel: '+18005550100'\nemail: a@b.net\n", "c.yaml"), "c.yaml")
    assert Redress.from_section(sec) == Redress("https://e.net/r", "+18005550100", "a@b.net")
    bad = section_of(parse("url: http://e.net/r\n", "c.yaml"), "c.yaml", "blocking.redress")
    with pytest.raises(Exception) as info:
        Redress.from_section(bad)
    assert str(info.value) == "c.yaml:1: blocking.redress.url: must be an https:// URL without spaces, quotes or ';'"
    assert REDRESS.empty is False and Redress().empty
