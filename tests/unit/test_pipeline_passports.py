"""div, rcd and replay through Pipeline.decide (memory store): facts, record, 302 and forward."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sipguard.clock import ManualClock
from sipguard.pipeline import Pipeline, call_history
from sipguard.proxy.act import apply_forward, redirect_response
from sipguard.records.record import CallRecord, from_row, to_row
from sipguard.records.whatif import facts_of
from sipguard.shaken.rcd import integrity
from sipguard.sip import parse
from tests.proxy_fixtures import example_config
from tests.shaken_pki import StiPki, div_identity, rcd_identity, shaken_identity

NOW = 1_800_000_000.0
X5U = "https://certs.example.net/good.pem"
A, B, C = "12125551234", "13036231000", "14155550100"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StiPki:
    return StiPki(tmp_path_factory.mktemp("pki"), now=NOW)


def config(tmp_path: Path, pki: StiPki, policy: str | None = None) -> Any:
    return example_config(tmp_path, policy, pki.anchors)


def invite(identities: list[str], call_id: str = "c1", ruri: str = B, extra: tuple[str, ...] = ()) -> bytes:
    lines = [f"INVITE sip:+{ruri}@10.0.0.1;user=phone SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1",
             f"From: <sip:+{A}@192.0.2.10;user=phone>;tag=1", f"To: <sip:+{B}@10.0.0.1;user=phone>",
             f"Call-ID: {call_id}", "CSeq: 1 INVITE", "Max-Forwards: 70", *extra]
    lines += [f"Identity: {value}" for value in identities]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def decide_all(tmp_path: Path, pki: StiPki, calls: list[bytes], policy: str | None = None) -> list[Any]:
    async def run() -> list[Any]:
        pipeline = await Pipeline.create(config(tmp_path, pki, policy), ManualClock(NOW),
                                         x5u_map={X5U: pki.chain_pem("good")})
        try:
            return [await pipeline.decide(parse(data), ("192.0.2.10", 5060), "udp") for data in calls]
        finally:
            await pipeline.aclose()
    return asyncio.run(run())


def shaken(pki: StiPki) -> str:
    return shaken_identity(pki.key("good"), X5U, orig=A, dest=[B], iat=int(NOW))


def test_replayed_passport_on_a_second_call(tmp_path: Path, pki: StiPki) -> None:
    ident = shaken(pki)
    first, retransmitted, replayed = decide_all(
        tmp_path, pki, [invite([ident], "call-1"), invite([ident], "call-1"), invite([ident], "call-2")])
    assert first.facts.passport_replayed is False and first.decision.action == "forward"
    assert retransmitted.facts.passport_replayed is False            # same Call-ID: not a replay
    assert replayed.facts.passport_replayed is True
    assert replayed.verification.passed                              # the signature itself is fine...
    assert replayed.decision.rule == "passport-replayed" and replayed.decision.action == "reject"
    # the stored record keeps the fact: policy whatif re-decides the call on it
    stored = from_row(to_row(CallRecord.of(replayed, 603, None, "i1")))
    again = facts_of(stored)
    assert again is not None and again.passport_replayed is True and again == replayed.facts


def test_replay_unknown_when_the_store_is_down(tmp_path: Path, pki: StiPki) -> None:
    from sipguard.store.base import DEGRADED, Lookups

    async def run() -> Any:
        pipeline = await Pipeline.create(config(tmp_path, pki), ManualClock(NOW), x5u_map={X5U: pki.chain_pem("good")})

        async def down(keys: Any, now: float) -> Lookups:
            return DEGRADED
        pipeline.store.lookup = down  # type: ignore[method-assign]
        try:
            signed = await pipeline.decide(parse(invite([shaken(pki)])), ("192.0.2.10", 5060), "udp")
            unsigned = await pipeline.decide(parse(invite([])), ("192.0.2.10", 5060), "udp")
            return signed, unsigned
        finally:
            await pipeline.aclose()
    signed, unsigned = asyncio.run(run())
    assert signed.facts.passport_replayed is None
    assert unsigned.facts.passport_replayed is False  # nothing to replay


def test_div_chain_with_history_info_facts_and_record(tmp_path: Path, pki: StiPki) -> None:
    div = div_identity(pki.key("good"), X5U, orig=A, dest=[C], div=B, iat=int(NOW))
    history = ("History-Info: <sip:+13036231000@10.0.0.1;user=phone>;index=1",
               "History-Info: <sip:+14155550100@10.0.0.1;user=phone?Reason=SIP%3Bcause%3D302>;index=1.1")
    with_history, without = decide_all(tmp_path, pki, [invite([shaken(pki), div], ruri=C, extra=history),
                                                       invite([shaken(pki), div], "c2", ruri=C)])
    assert with_history.facts.div_count == 1 and with_history.facts.div_verstat == "TN-Validation-Passed"
    assert without.facts.div_verstat == "TN-Validation-Failed"
    record = CallRecord.of(with_history, None, "sip:core", "i1")
    assert record.passports == ("shaken:passed", "div:passed")
    assert CallRecord.of(without, None, None, None).passports == ("shaken:passed", "div:failed:div-no-history")
    again = facts_of(from_row(to_row(record)))
    assert again is not None and (again.div_count, again.div_verstat) == (1, "TN-Validation-Passed")


def test_call_history_reads_diversion_and_history_info() -> None:
    req = parse(invite([], extra=("Diversion: <tel:+13036231000>;reason=unconditional, <sip:4155550100@x>",
                                  "History-Info: garbage;;", "History-Info: <sip:+16175550100@h>;index=1")))
    forms = call_history(req)
    assert "13036231000" in forms and "16175550100" in forms and "4155550100" in forms


def test_rcd_on_foreign_trunk_flagged_in_forward_and_302(tmp_path: Path, pki: StiPki) -> None:
    jcard = ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Example Bank"]]]
    good = rcd_identity(pki.key("good"), X5U, orig=A, dest=[B], iat=int(NOW),
                        rcd={"nam": "Example Bank", "jcd": jcard}, rcdi={"/jcd": integrity(jcard)})
    tampered = rcd_identity(pki.key("good"), X5U, orig=A, dest=[B], iat=int(NOW),
                            rcd={"nam": "Example Bank", "jcd": jcard}, rcdi={"/jcd": integrity(["other"])})
    forged = ("X-Sipguard-Rcd: verified", "X-Sipguard-Replayed: no")
    calls = [invite([shaken(pki), good], "r1", extra=forged), invite([shaken(pki), tampered], "r2", extra=forged)]
    verified, failed = decide_all(tmp_path, pki, calls)
    assert (verified.facts.rcd_present, verified.facts.rcd_verified) == (True, True)
    assert (failed.facts.rcd_present, failed.facts.rcd_verified) == (True, False)
    assert verified.decision.rule == "flag-rcd-from-foreign-trunk"
    for outcome, data, value in ((verified, calls[0], "verified"), (failed, calls[1], "failed")):
        moved = parse(redirect_response(parse(data), outcome, "sip:10.0.0.1:5060", "t1"))
        forwarded = parse(data)
        apply_forward(forwarded, outcome)
        assert forwarded.headers("X-Sipguard-Replayed") == []             # an upstream's claim goes
        for msg in (moved, forwarded):
            assert msg.headers("X-Sipguard-Rcd") == [value]
            assert msg.header("X-Call-Screen") == "rcd-foreign"
            assert msg.header("X-Sipguard-Div") is None            # no div on the call: no header
        # every Identity header the caller sent goes on unaltered
        assert forwarded.identity == parse(data).identity


def test_div_result_tagged_in_302(tmp_path: Path, pki: StiPki) -> None:
    div = div_identity(pki.key("good"), X5U, orig=A, dest=[C], div=B, iat=int(NOW))
    data = invite([shaken(pki), div], ruri=C)
    (outcome,) = decide_all(tmp_path, pki, [data], policy="config/policies/permissive-tagging.yaml")
    assert outcome.decision.rule == "tag-div-chain-failed"  # no History-Info: the link is unproven
    moved = parse(redirect_response(parse(data), outcome, "sip:10.0.0.1:5060", "t1"))
    assert moved.header("X-Sipguard-Div") == "TN-Validation-Failed;count=1"
