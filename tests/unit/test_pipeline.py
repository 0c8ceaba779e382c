"""Pipeline.decide on real parts (memory store, verifier, policy, signer), no sockets."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sipguard.clock import ManualClock
from sipguard.config import PipelineSettings
from sipguard.pipeline import Pipeline
from sipguard.proxy.act import apply_forward, redirect_response
from sipguard.records.record import CallRecord
from sipguard.shaken.reasons import Reason, Verstat
from sipguard.sip import parse
from sipguard.store.base import DEGRADED, Lookups
from tests.proxy_fixtures import example_config
from tests.shaken_pki import StiPki, shaken_identity

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0


def invite(caller: str = "+12127363100", callee: str = "+13036231000", extra: str = "",
           via2: str = "") -> bytes:
    text = (f"INVITE sip:{callee}@10.0.0.1;user=phone SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1\r\n" + via2 +
            f"From: <sip:{caller}@192.0.2.10;user=phone>;tag=1\r\n"
            f"To: <sip:{callee}@10.0.0.1;user=phone>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
            f"Max-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n")
    return text.encode()


def make_config(tmp_path: Path, **extra: Any) -> Any:
    return example_config(tmp_path, **extra)


def decide(tmp_path: Path, data: bytes, source: tuple[str, int] = ("192.0.2.10", 5060),
           degraded: bool | Lookups = False, **config: Any) -> Any:
    """``degraded``: True for a store that answers nothing, or the degraded answer to give."""
    async def run() -> Any:
        pipeline = await Pipeline.create(make_config(tmp_path, **config), ManualClock(NOW))
        if degraded:
            answer = degraded if isinstance(degraded, Lookups) else DEGRADED

            async def down(keys: Any, now: float) -> Lookups:
                return answer
            pipeline.store.lookup = down  # type: ignore[method-assign]
        try:
            return await pipeline.decide(parse(data), source, "udp")
        finally:
            await pipeline.aclose()
    return asyncio.run(run())


def test_unsigned_us_caller_from_foreign_trunk_is_signed(tmp_path: Path) -> None:
    out = decide(tmp_path, invite())
    assert out.decision.action == "forward" and out.decision.rule == "sign-unsigned"
    assert out.signed and out.identity_added.endswith(
        ";info=<https://certs.example.net/sipguard/signing.pem>;alg=ES256;ppt=shaken")
    assert out.trunk.id == "carrier-a" and out.facts.caller == "12127363100"


def test_foreign_caller_is_not_signed(tmp_path: Path) -> None:
    out = decide(tmp_path, invite(caller="+442071838750"))
    assert out.decision.action == "forward" and not out.signed


def test_dno_caller_rejected_603_cause_21(tmp_path: Path) -> None:
    out = decide(tmp_path, invite(caller="+18002223333"))
    assert out.decision.status == 603 and out.decision.rule == "do-not-originate"
    assert any(name == "Reason" and "cause=21" in value for name, value in out.decision.headers)


def test_emergency_is_never_rejected(tmp_path: Path) -> None:
    out = decide(tmp_path, invite(caller="+18002223333", callee="911"))
    assert out.decision.action == "forward"
    assert out.decision.would is not None and out.decision.would.action == "reject"


def test_unknown_source_is_403_but_not_for_911(tmp_path: Path) -> None:
    out = decide(tmp_path, invite(), source=("203.0.113.9", 5060))
    assert out.decision.status == 403 and out.trunk is None
    out = decide(tmp_path, invite(callee="911"), source=("203.0.113.9", 5060))
    assert out.decision.action == "forward"


def test_trusted_proxy_source_header_and_via(tmp_path: Path) -> None:
    proxied = invite(extra="X-Sipguard-Source: 192.0.2.77:5060\r\n")
    out = decide(tmp_path, proxied, source=("127.0.0.5", 5060), trusted_proxies=["127.0.0.0/8"])
    assert out.trunk.id == "carrier-a" and out.source == ("192.0.2.77", 5060)
    # without the header: the Via below the proxy's own names the upstream
    via = invite(via2="Via: SIP/2.0/UDP 192.0.2.88:5062;branch=z9hG4bKup;received=192.0.2.89\r\n")
    out = decide(tmp_path, via, source=("127.0.0.5", 5060), trusted_proxies=["127.0.0.0/8"])
    assert out.source == ("192.0.2.89", 5062)
    # an untrusted sender cannot claim another source
    out = decide(tmp_path, proxied, source=("203.0.113.9", 5060), trusted_proxies=["127.0.0.0/8"])
    assert out.decision.status == 403


@pytest.mark.parametrize("mode,status", [("fail-closed", 503), ("fail-open", None)])
def test_store_failure_modes(tmp_path: Path, mode: str, status: int | None) -> None:
    out = decide(tmp_path, invite(), degraded=True, store_failure=mode)
    assert out.facts.store_degraded
    assert out.decision.status == status
    if status == 503:
        assert ("Retry-After", "5") in out.decision.headers


def test_reconfigure_takes_the_new_settings_for_the_next_invite(tmp_path: Path) -> None:
    """SIGHUP: the pipeline's own settings (PipelineSettings.of) replace the old ones whole:
    the trunks, unknown_source, and the fail-closed 503's Retry-After (proxy.retry_after)."""
    async def run() -> None:
        old = make_config(tmp_path, store_failure="fail-closed")
        pipeline = await Pipeline.create(old, ManualClock(NOW))

        async def down(keys: Any, now: float) -> Lookups:
            return DEGRADED
        pipeline.store.lookup = down  # type: ignore[method-assign]
        try:
            out = await pipeline.decide(parse(invite()), ("192.0.2.10", 5060), "udp")
            assert ("Retry-After", "5") in out.decision.headers
            new = make_config(tmp_path / "new", store_failure="fail-closed", unknown_source="allow",
                              proxy={"retry_after": 30})
            pipeline.reconfigure(PipelineSettings.of(new))
            out = await pipeline.decide(parse(invite()), ("192.0.2.10", 5060), "udp")
            assert out.decision.status == 503 and ("Retry-After", "30") in out.decision.headers
            out = await pipeline.decide(parse(invite()), ("203.0.113.9", 5060), "udp")
            assert out.trunk is None and out.decision.rule != "unknown-source"
        finally:
            await pipeline.aclose()
    (tmp_path / "new").mkdir()
    asyncio.run(run())


def test_store_down_leaves_rmd_facts_unknown_unless_remembered(tmp_path: Path) -> None:
    out = decide(tmp_path, invite(), degraded=True)
    assert out.facts.trunk_rmd is None and out.facts.signer_rmd is None and out.facts.store_degraded
    remembered = Lookups(trunk_rmd="removed", trunk_implementation="none", degraded=True)
    out = decide(tmp_path, invite(), degraded=remembered)
    assert out.facts.trunk_rmd == "removed" and out.facts.trunk_implementation == "none"
    assert out.facts.store_degraded and not out.facts.caller_dno


def test_record_carries_the_provider_and_decision(tmp_path: Path) -> None:
    out = decide(tmp_path, invite(caller="+18002223333"))
    record = CallRecord.of(out, 603, None, "test")
    assert (record.provider_frn, record.provider_rmd, record.trunk_role) == ("0012345678", "RMD0001234", "foreign")
    assert record.caller == "18002223333" and record.action == "reject" and record.rule == "do-not-originate"
    assert record.rmd_snapshot is not None


def test_records_of_calls_alike_share_their_verstat_and_reasons_text(tmp_path: Path) -> None:
    """Under overload records wait for the writer by the tens of thousands: what is the same
    from call to call (the verstat, the reasons) is one object in all of them, the same text."""
    first, second = (CallRecord.of(decide(tmp_path, invite()), None, "sip:127.0.0.1:5070", "test")
                     for _ in range(2))
    assert first.verstat == "No-TN-Validation" and type(first.verstat) is str
    assert first.reasons == ("no-identity",) and all(type(r) is str for r in first.reasons)
    assert second.verstat is first.verstat and second.reasons is first.reasons


def test_each_decision_fans_out_once_to_records_metrics_and_the_log(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """observe/decisions.py: one outcome, one record queued (the next hop only when forwarded
    or redirected), one metrics observation, a rate-limit hit per limiter, one log line."""
    from dataclasses import replace

    from sipguard.observe import logs
    from sipguard.observe.decisions import DecisionCounts, DecisionSink

    class Seen:
        def __init__(self) -> None:
            self.calls: list[tuple[str, object]] = []

        def submit(self, record: CallRecord) -> None:
            self.calls.append(("record", record))

    out = decide(tmp_path, invite(caller="+18002223333"))
    out = replace(out, lookups=replace(out.lookups, limited=("per-trunk",)),
                  facts=replace(out.facts, spoof_same=True))
    seen, counts = Seen(), DecisionCounts((0.001, 0.01, float("inf")))
    sink = DecisionSink(seen, counts, "host/1")
    with caplog.at_level("INFO"):
        logs.set_decisions("info")
        sink.on_outcome(out, 603, "sip:10.0.0.9", 0.004)
    record = CallRecord.of(out, 603, None, "host/1")
    assert seen.calls == [("record", record)]
    assert counts.invites == {(record.action, 603, record.verstat, record.attest, record.trunk): 1}
    assert counts.buckets == [0, 1, 0] and counts.latency_sum == 0.004
    assert counts.limited == {"per-trunk": 1} and counts.detectors[("spoof.same", "")] == 1
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("sipguard.decisions", "reject c1")]
    seen.calls.clear()
    sink.on_outcome(out, 302, "sip:10.0.0.9", 0.0)
    assert seen.calls[0] == ("record", CallRecord.of(out, 302, "sip:10.0.0.9", "host/1"))


# -- the identity checked and marked: P-Asserted-Identity when present, else From ----------------

X5U = "https://certs.example.net/good.pem"
TO = "<sip:+13036231000@10.0.0.1;user=phone>"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StiPki:
    return StiPki(tmp_path_factory.mktemp("pki"), now=NOW)


def signed_for(pki: StiPki, orig: str, dest: str = "13036231000") -> str:
    return shaken_identity(pki.key("good"), X5U, orig=orig, dest=[dest], iat=int(NOW))


def sip_invite(from_: str, pai: tuple[str, ...] = (), identity: str | None = None, to: str = TO,
               ruri: str | None = None) -> bytes:
    lines = [f"INVITE {ruri or to.strip('<>')} SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1",
             f"From: {from_};tag=1", f"To: {to}", "Call-ID: c1", "CSeq: 1 INVITE", "Max-Forwards: 70"]
    lines += [f"P-Asserted-Identity: {value}" for value in pai]
    lines += [f"Identity: {identity}"] if identity else []
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def verified(tmp_path: Path, pki: StiPki, data: bytes) -> tuple[Any, Any, Any]:
    """Decide with a verifier that trusts ``pki``; returns (outcome, the forwarded INVITE as
    apply_forward leaves it, the redirect mode's 302 for the same INVITE)."""
    shaken = yaml.safe_load((ROOT / "config/sipguard.example.yaml").read_text())["shaken"]
    shaken.update(trust_anchors=pki.anchors, crl={"enabled": False})

    async def run() -> Any:
        pipeline = await Pipeline.create(make_config(tmp_path, shaken=shaken), ManualClock(NOW),
                                         x5u_map={X5U: pki.chain_pem("good")})
        try:
            return await pipeline.decide(parse(data), ("192.0.2.10", 5060), "udp")
        finally:
            await pipeline.aclose()
    outcome = asyncio.run(run())
    forwarded = parse(data)
    apply_forward(forwarded, outcome)
    moved = parse(redirect_response(parse(data), outcome, "sip:10.0.0.1:5060", "t1"))
    return outcome, forwarded, moved


FROM_212 = "<sip:+12125551234@192.0.2.10;user=phone>"
PAI_312 = "<sip:+13125550000@192.0.2.10;user=phone>"


def test_passport_for_from_does_not_verify_another_pai(tmp_path: Path, pki: StiPki) -> None:
    """The issue's call: orig is the From, the PAI (what the callee is shown) another number."""
    out, fwd, moved = verified(tmp_path, pki, sip_invite(FROM_212, (PAI_312,), signed_for(pki, "12125551234")))
    assert out.verification.verstat is Verstat.FAILED
    assert out.verification.reasons == (Reason.ORIG_MISMATCH,)
    for msg in (fwd, moved):
        assert msg.headers("P-Asserted-Identity") == [
            "<sip:+13125550000;verstat=TN-Validation-Failed@192.0.2.10;user=phone>"]
        assert msg.header("From") == FROM_212 + ";tag=1"


def test_passport_for_pai_passes_on_pai_and_leaves_from_alone(tmp_path: Path, pki: StiPki) -> None:
    out, fwd, moved = verified(tmp_path, pki, sip_invite(FROM_212, (PAI_312,), signed_for(pki, "13125550000")))
    assert out.verification.passed and out.facts.caller == "13125550000"
    for msg in (fwd, moved):
        assert msg.headers("P-Asserted-Identity") == [
            "<sip:+13125550000;verstat=TN-Validation-Passed@192.0.2.10;user=phone>"]
        assert msg.header("From") == FROM_212 + ";tag=1"


def test_pai_sip_and_tel_of_one_number_both_passed(tmp_path: Path, pki: StiPki) -> None:
    both = f"{PAI_312}, <tel:+1-312-555-0000>"  # RFC 3325: one sip and one tel value, one line here
    out, fwd, _ = verified(tmp_path, pki, sip_invite(FROM_212, (both,), signed_for(pki, "13125550000")))
    assert out.verification.passed
    assert fwd.headers("P-Asserted-Identity") == [
        "<sip:+13125550000;verstat=TN-Validation-Passed@192.0.2.10;user=phone>",
        "<tel:+1-312-555-0000;verstat=TN-Validation-Passed>"]
    assert fwd.header("From") == FROM_212 + ";tag=1"


@pytest.mark.parametrize(("orig", "verstats", "caller"), [
    # ATIS-1000074 checks each PAI value: the PASSporT names the tel one, only that one is Passed
    ("12125551234", ["TN-Validation-Failed", "TN-Validation-Passed"], "12125551234"),
    ("13125550000", ["TN-Validation-Passed", "TN-Validation-Failed"], "13125550000"),
    # the From's number is in neither PAI value: it cannot pass the call
    ("12125559999", ["TN-Validation-Failed", "TN-Validation-Failed"], "13125550000"),
])
def test_pai_sip_and_tel_of_two_numbers(tmp_path: Path, pki: StiPki, orig: str, verstats: list[str],
                                        caller: str) -> None:
    data = sip_invite("<sip:+12125559999@192.0.2.10;user=phone>", (PAI_312, "<tel:+12125551234>"),
                      signed_for(pki, orig))
    out, fwd, moved = verified(tmp_path, pki, data)
    assert out.verification.passed is (verstats.count("TN-Validation-Passed") == 1)
    assert out.facts.caller == caller   # the number policy and lookups see is the one vouched for
    for msg in (fwd, moved):
        assert msg.headers("P-Asserted-Identity") == [
            f"<sip:+13125550000;verstat={verstats[0]}@192.0.2.10;user=phone>",
            f"<tel:+12125551234;verstat={verstats[1]}>"]
        assert "verstat" not in (msg.header("From") or "")


@pytest.mark.parametrize("pai", [("<tel:+12125551234>",), ("<sip:alice@example.com>", "<tel:+12125551234>")])
def test_anonymous_from_with_pai_verifies_the_pai(tmp_path: Path, pki: StiPki, pai: tuple[str, ...]) -> None:
    anonymous = '"Anonymous" <sip:anonymous@anonymous.invalid>'
    out, fwd, moved = verified(tmp_path, pki, sip_invite(anonymous, pai, signed_for(pki, "12125551234")))
    assert out.verification.passed and out.facts.caller == "12125551234"
    for msg in (fwd, moved):
        assert msg.headers("P-Asserted-Identity")[-1] == "<tel:+12125551234;verstat=TN-Validation-Passed>"
        assert msg.header("From") == anonymous + ";tag=1"


def test_pai_without_a_number_is_still_the_identity(tmp_path: Path, pki: StiPki) -> None:
    """A From beside a PAI is not displayed: its number cannot pass the call."""
    out, fwd, _ = verified(tmp_path, pki, sip_invite(FROM_212, ("<sip:alice@example.com>",),
                                                     signed_for(pki, "12125551234")))
    assert out.verification.reasons == (Reason.ORIG_MISMATCH,)
    assert fwd.header("From") == FROM_212 + ";tag=1"
    assert "TN-Validation-Passed" not in (fwd.header("P-Asserted-Identity") or "")


def _signed_orig(outcome: Any) -> str | None:
    if outcome.identity_added is None:
        return None
    payload = outcome.identity_added.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["orig"]["tn"])


@pytest.mark.parametrize(("pai", "orig"), [
    ((), "12125551234"),                                                  # no PAI: From is shown
    ((PAI_312,), "13125550000"),                                          # PAI shown, From not
    (("<sip:alice@example.com>", "<tel:+13125550000>"), "13125550000"),   # the PAI value with a number
    (("<sip:alice@example.com>",), None),   # the callee is shown no number: nothing to sign
])
def test_gateway_signs_the_number_the_callee_is_shown(tmp_path: Path, pai: tuple[str, ...],
                                                      orig: str | None) -> None:
    out = decide(tmp_path, sip_invite(FROM_212, pai))
    assert out.decision.rule == "sign-unsigned"
    assert _signed_orig(out) == orig


# (From, PAI values, To, Request-URI, PASSporT orig, PASSporT dest): E.164 numbers of several
# countries with and without "+", in sip and tel URIs, as the PASSporT means them
FOREIGN = {
    "from-austria-9-digits-no-plus": ("<sip:439991001@192.0.2.10>", (), TO, None, "439991001", "13036231000"),
    "from-austria-plus": ("<sip:+439991001@192.0.2.10;user=phone>", (), TO, None, "439991001", "13036231000"),
    "pai-tel-austria-separators": ("<sip:anonymous@anonymous.invalid>", ("<tel:+43-999-1001>",), TO, None,
                                   "439991001", "13036231000"),
    "pai-sip-india-no-plus": (FROM_212, ("<sip:919876543210@in.example>",), TO, None, "919876543210",
                              "13036231000"),
    "from-uk-national": ("<sip:02071838750@uk.example>", (), TO, None, "02071838750", "13036231000"),
    "from-uk-011": ("<sip:011442071838750@uk.example>", (), TO, None, "442071838750", "13036231000"),
    "from-mexico-tel": ("<tel:+52-55-1234-5678>", (), TO, None, "525512345678", "13036231000"),
    "from-germany-10-digits": ("<sip:4930123456@de.example>", (), TO, None, "4930123456", "13036231000"),
    "to-austria-no-plus": (FROM_212, (), "<sip:439991002@10.0.0.1>", None, "12125551234", "439991002"),
    "to-japan-tel-ruri-sip": (FROM_212, (), "<tel:+81-3-1234-5678>", "sip:+81312345678@10.0.0.1;user=phone",
                              "12125551234", "81312345678"),
    "ruri-france-no-plus": (FROM_212, (), "<sip:service@10.0.0.1>", "sip:33142685300@10.0.0.1",
                            "12125551234", "33142685300"),
    "to-china-plus": (FROM_212, (), "<sip:+8613812345678@10.0.0.1;user=phone>", None, "12125551234",
                      "8613812345678"),
}


@pytest.mark.parametrize("case", sorted(FOREIGN))
def test_foreign_numbers_compare_as_the_passport_means_them(tmp_path: Path, pki: StiPki, case: str) -> None:
    from_, pai, to, ruri, orig, dest = FOREIGN[case]
    out, fwd, _ = verified(tmp_path, pki, sip_invite(from_, pai, signed_for(pki, orig, dest), to, ruri))
    assert out.verification.passed, out.verification.reasons
    shown = fwd.headers("P-Asserted-Identity")[-1] if pai else fwd.header("From")
    assert "verstat=TN-Validation-Passed" in shown


@pytest.mark.parametrize(("from_", "orig"), [
    ("<sip:+4930123456@de.example;user=phone>", "14930123456"),   # +49 30 123456 is not 1-493-012-3456
    ("<sip:02071838750@uk.example>", "442071838750"),             # a national form's country is unknown
    ("<sip:+439991001@at.example;user=phone>", "1439991001"),
])
def test_foreign_numbers_that_differ_do_not_match(tmp_path: Path, pki: StiPki, from_: str, orig: str) -> None:
    out, fwd, _ = verified(tmp_path, pki, sip_invite(from_, (), signed_for(pki, orig)))
    assert out.verification.reasons == (Reason.ORIG_MISMATCH,)
    assert "verstat=TN-Validation-Failed" in (fwd.header("From") or "")


def test_record_of_a_signed_call_names_the_attestation_and_the_rule(tmp_path: Path) -> None:
    """FCC 24-120: the signer decides attestation itself and keeps the record of it."""
    out = decide(tmp_path, invite())
    assert out.signed
    rec = CallRecord.of(out, None, "sip:127.0.0.1:5070", "test/0")
    assert (rec.signed_attest, rec.signed_rule) == ("C", "sign-unsigned")
    from sipguard.records.record import from_row, to_row
    assert from_row(to_row(rec)) == rec
    unsigned = CallRecord.of(decide(tmp_path, invite(caller="+442071838750")), None, None, None)
    assert (unsigned.signed_attest, unsigned.signed_rule) == (None, None)
