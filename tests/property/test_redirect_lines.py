"""Differential: ``redirect_response`` (session 14: its Contact and its X-Sipguard-Verstat,
-Attest and -Rule lines encoded once per value, appended to ``response_head``'s lines) against
the definition it replaces, kept here verbatim as the reference (on ``build_response``). The same
bytes for generated calls (PAI or not, From with and without verstat), verification results,
rules, tags and next hops: unicode, control characters, lone surrogates, empty and oversized
values, each asked twice (the second time from the lines kept)."""

from __future__ import annotations

import dataclasses

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipguard.config import Provider, Trunk
from sipguard.pipeline import Call, Outcome
from sipguard.policy.decision import FORWARD, Tag
from sipguard.policy.facts import Facts
from sipguard.proxy import act
from sipguard.proxy.act import (
    _PASSED,
    PHRASES,
    _bare,
    _identity_headers,
    add_verstat,
    redirect_response,
    strip_verstat,
    verstat_of,
)
from sipguard.shaken.reasons import Reason, Verstat
from sipguard.shaken.result import NOT_VERIFIED, Verification
from sipguard.sip import Request, build_response, parse
from sipguard.sip.message import ENC, ERRORS
from sipguard.store.base import Lookups


# -- the reference: main at 2013e2e --------------------------------------------------------------
def old_redirect_response(req: Request, outcome: Outcome, contact: str, to_tag: str) -> bytes:
    verstat = str(outcome.verification.verstat)
    headers = [("Contact", f"<{contact}>")]
    extra = _identity_headers(req, outcome)
    if not req.has("P-Asserted-Identity"):
        caller = strip_verstat(_bare(req.header("From") or ""))
        extra.insert(0, ("P-Asserted-Identity", add_verstat(caller, verstat_of(caller, outcome.verification))))
    prefix = outcome.decision.tag.display_prefix if outcome.decision.tag else None
    if prefix:
        extra.append(("X-Sipguard-Display-Prefix", prefix))
    headers.extend(extra)
    headers.append(("X-Sipguard-Verstat", verstat))
    ver = outcome.verification
    if ver.verstat is _PASSED and ver.attest:
        headers.append(("X-Sipguard-Attest", ver.attest))
    if outcome.decision.rule:
        headers.append(("X-Sipguard-Rule", outcome.decision.rule))
    return build_response(req, 302, PHRASES[302], headers, to_tag=to_tag)
# ---------------------------------------------------------------------------------------------


HOSTILE = st.sampled_from(["", "a" * 70000, "caf\u00e9 \u2603", "\x00\x01\x7f\t", "\udcff\udc80", "\r\n",
                           '"q" \\ ;verstat=x'])
TEXT = st.text(max_size=30) | HOSTILE
FROMS = ["<sip:+12127363100@192.0.2.1;user=phone>;tag=a", "<sip:+12127363100;verstat=TN-Validation-Passed@h>;tag=b",
         '"Caf\u00e9 \u2603" <sip:12127363100@h>;tag=c', "sip:+12127363100@h;tag=d", "<tel:+12127363100>;tag=e",
         "<sip:anonymous@anonymous.invalid>;tag=f", "<sip:" + "1" * 5000 + "@h>;tag=g"]
PAIS = [[], ["<sip:+13125550000@192.0.2.10;user=phone>"], ["<sip:+12127363100@h>", "<tel:+12127363100>"],
        ["<sip:+1212;verstat=TN-Validation-Failed@h>"]]
VERSTATS = [Verstat.PASSED, Verstat.FAILED, Verstat.NONE]
TRUNK = Trunk("t-302", "foreign", (), Provider(name="Carrier"))


def request(from_: str, pais: list[str]) -> Request:
    lines = ["INVITE sip:+13036231000@192.0.2.9 SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1",
             f"From: {from_}", "To: <sip:+13036231000@192.0.2.9>", "Call-ID: c302@192.0.2.1", "CSeq: 1 INVITE",
             *(f"P-Asserted-Identity: {p}" for p in pais), "Max-Forwards: 70", "Content-Length: 0"]
    msg = parse(("\r\n".join(lines) + "\r\n\r\n").encode(ENC, ERRORS))
    assert isinstance(msg, Request)
    return msg


@settings(max_examples=300)
@given(from_=st.sampled_from(FROMS), pais=st.sampled_from(PAIS), verstat=st.sampled_from(VERSTATS),
       attest=st.none() | st.sampled_from(["A", "B", "C"]) | TEXT, orig=st.sampled_from(["12127363100", "1999"]),
       rule=st.none() | TEXT, contact=TEXT | st.just("sip:10.0.0.1:5060"),
       tag=st.none() | st.builds(Tag, display_prefix=st.none() | TEXT,
                                 headers=st.lists(st.tuples(st.just("X-Tag"), TEXT), max_size=2).map(tuple),
                                 passports=st.booleans()),
       identity=st.none() | st.just("eyJ.signed.x"), to_tag=st.sampled_from(["sg1f2e", ""]))
@example(from_=FROMS[0], pais=[], verstat=Verstat.PASSED, attest="A", orig="12127363100", rule="r" * 70000,
         contact="c" * 70000, tag=None, identity=None, to_tag="sg1")
def test_redirect_response_is_the_definition_it_replaces(from_: str, pais: list[str], verstat: Verstat,
                                                         attest: str | None, orig: str, rule: str | None,
                                                         contact: str, tag: Tag | None, identity: str | None,
                                                         to_tag: str) -> None:
    req = request(from_, pais)
    reasons = (Reason.BAD_SIGNATURE,) if verstat is Verstat.FAILED else ()
    ver = Verification(verstat, attest=attest, orig_tn=orig, reasons=reasons)
    outcome = Outcome(1765000000.0, ("192.0.2.1", 5060), "udp", Call.of(req), TRUNK, ver, Lookups(),
                      Facts(div_count=1, rcd_present=True),
                      dataclasses.replace(FORWARD, rule=rule, tag=tag), identity_added=identity)
    for _ in range(2):
        assert redirect_response(req, outcome, contact, to_tag) == old_redirect_response(req, outcome, contact, to_tag)


def test_lines_kept_are_bounded() -> None:
    req = request(FROMS[0], [])
    for i in range(600):
        outcome = Outcome(1765000000.0, ("192.0.2.1", 5060), "udp", Call.of(req), TRUNK, NOT_VERIFIED, Lookups(),
                          Facts(), dataclasses.replace(FORWARD, rule=f"rule-{i}"))
        hop = f"sip:10.0.0.{i % 250}:{5060 + i}"
        assert redirect_response(req, outcome, hop, "t") == old_redirect_response(req, outcome, hop, "t")
    assert len(act._CONTACTS) <= act.LINES and len(act._VERDICTS) <= act.LINES
