"""Verifier outcomes: every reason code, ordering, several headers, div, caching, single flight, breaker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sipguard.numbers import parse_tn
from sipguard.shaken.config import CrlConfig
from sipguard.shaken.reasons import Reason, Verstat
from sipguard.shaken.verify import Verifier
from sipguard.shaken.x5u import FetchError
from tests.shaken_pki import (
    DEST,
    NOW,
    ORIG,
    MapFetcher,
    StiPki,
    identity_header,
    module_pki,
    shaken_identity,
    shaken_token,
    sign_passport,
)

BASE = "https://certs.example.net"
CRL = "http://crl.example.net/int.crl"

pki = module_pki(CRL)


def _fetcher(pki: StiPki) -> MapFetcher:
    bodies: dict[str, Any] = {f"{BASE}/{n}.pem": pki.chain_pem(n)
                              for n in ("good", "implicit", "no_tnauth", "expired", "revoked", "rsa", "untrusted")}
    bodies[CRL] = pki.crl_der
    bodies[f"{BASE}/garbage.pem"] = b"<html>not a cert</html>"
    bodies[f"{BASE}/refused.pem"] = FetchError(Reason.X5U_REFUSED, "loopback")
    return MapFetcher(bodies)


def _verifier(pki: StiPki, fetcher: MapFetcher | None = None, **cfg: Any) -> Verifier:
    return Verifier(pki.config(**cfg), fetcher or _fetcher(pki))


def _ident(pki: StiPki, name: str = "good", **kw: Any) -> str:
    x5u = kw.pop("x5u", f"{BASE}/{name}.pem")
    return shaken_identity(pki.key(name), x5u, orig=kw.pop("orig", ORIG), dest=kw.pop("dest", [DEST]),
                           iat=kw.pop("iat", int(NOW)), **kw)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _verify(v: Verifier, idents: list[str], orig: tuple[str, ...] = (ORIG,),
                  dest: tuple[str, ...] = (DEST,), now: float = NOW) -> Any:
    return await v.verify(idents, orig, dest, now)


def test_good_passes_with_claims_and_spc(pki: StiPki) -> None:
    res = run(_verify(_verifier(pki), [_ident(pki, attest="B", origid="abc")]))
    assert res.verstat is Verstat.PASSED and res.reasons == ()
    assert (res.attest, res.origid, res.spc, res.orig_tn, res.dest_tns, res.iat) == \
        ("B", "abc", "1234", ORIG, (DEST,), int(NOW))
    assert res.x5u == f"{BASE}/good.pem"


def test_implicit_tnauthlist_passes(pki: StiPki) -> None:
    assert run(_verify(_verifier(pki), [_ident(pki, "implicit")])).spc == "1234"


def test_no_identity() -> None:
    from sipguard.shaken.config import ShakenConfig

    res = run(Verifier(ShakenConfig(), MapFetcher()).verify([], [ORIG], [DEST], NOW))
    assert res.verstat is Verstat.NONE and res.reasons == (Reason.NO_IDENTITY,)


def test_unknown_ppt_only_is_no_validation(pki: StiPki) -> None:
    token = shaken_token(pki.key("good"), f"{BASE}/good.pem", orig=ORIG, dest=[DEST], iat=int(NOW), ppt="rcd")
    res = run(_verify(_verifier(pki), [identity_header(token, f"{BASE}/good.pem", ppt="rcd")]))
    assert res.verstat is Verstat.NONE and res.reasons == (Reason.NO_IDENTITY,)


def _tampered_payload(token: str) -> str:
    """Flip one signature character in the middle (as bench-anchor/gen_tokens.sh does)."""
    head, payload, sig = token.split(".")
    mid = len(sig) // 2
    alt = "B" if sig[mid] != "B" else "C"
    return f"{head}.{payload}.{sig[:mid]}{alt}{sig[mid + 1:]}"


def _reasons(pki: StiPki, idents: list[str], **kw: Any) -> tuple[Reason, ...]:
    res = run(_verify(_verifier(pki), idents, **kw))
    assert res.verstat is Verstat.FAILED
    return res.reasons


def _raw(pki: StiPki, header: dict[str, Any], claims: dict[str, Any], name: str = "good",
         info: str | None = None, alg: str = "ES256", ppt: str = "shaken") -> str:
    return identity_header(sign_passport(pki.key(name), header, claims), info or f"{BASE}/{name}.pem",
                           alg=alg, ppt=ppt)


HDR = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": f"{BASE}/good.pem"}
CLAIMS = {"attest": "A", "dest": {"tn": [DEST]}, "iat": int(NOW), "orig": {"tn": ORIG}, "origid": "x"}


@pytest.mark.parametrize(("case", "expected"), [
    ("compact", Reason.MALFORMED_IDENTITY),
    ("garbage", Reason.MALFORMED_IDENTITY),
    ("bad-json", Reason.MALFORMED_IDENTITY),
    ("alg-none", Reason.BAD_ALG),
    ("alg-hs256", Reason.BAD_ALG),
    ("header-alg-rs256", Reason.BAD_ALG),
    ("ppt-div-in-jose", Reason.BAD_PPT),
    ("x5u-mismatch", Reason.X5U_MISMATCH),
    ("stale", Reason.STALE_IAT),
    ("future", Reason.FUTURE_IAT),
    ("fetch-failed", Reason.X5U_FETCH_FAILED),
    ("not-a-cert", Reason.X5U_FETCH_FAILED),
    ("refused", Reason.X5U_REFUSED),
    ("untrusted", Reason.CERT_UNTRUSTED),
    ("rsa-leaf", Reason.CERT_UNTRUSTED),
    ("expired", Reason.CERT_EXPIRED),
    ("revoked", Reason.CERT_REVOKED),
    ("no-tnauth", Reason.CERT_NO_TNAUTHLIST),
    ("bad-signature", Reason.BAD_SIGNATURE),
    ("wrong-key", Reason.BAD_SIGNATURE),
    ("orig-mismatch", Reason.ORIG_MISMATCH),
    ("dest-mismatch", Reason.DEST_MISMATCH),
    ("attest-D", Reason.BAD_CLAIMS),
    ("iat-string", Reason.BAD_CLAIMS),
    ("orig-missing", Reason.BAD_CLAIMS),
    ("no-origid", Reason.BAD_CLAIMS),
])
def test_every_reason_code(pki: StiPki, case: str, expected: Reason) -> None:
    good = _ident(pki)
    token, _, params = good.partition(";")
    idents = {
        "compact": [f"{token.split('.')[0]}..{token.split('.')[2]};{params}"],
        "garbage": ["%%%;info=<x>"],
        "bad-json": [f"e30.bm90anNvbg.{token.split('.')[2]};{params}"],
        "alg-none": [_raw(pki, {**HDR, "alg": "none"}, CLAIMS)],
        "alg-hs256": [_raw(pki, {**HDR, "alg": "HS256"}, CLAIMS)],
        "header-alg-rs256": [_raw(pki, HDR, CLAIMS, alg="RS256")],
        "ppt-div-in-jose": [_raw(pki, {**HDR, "ppt": "div"}, CLAIMS)],
        "x5u-mismatch": [_raw(pki, HDR, CLAIMS, info=f"{BASE}/other.pem")],
        "stale": [_ident(pki, iat=int(NOW) - 61)],
        "future": [_ident(pki, iat=int(NOW) + 6)],
        "fetch-failed": [_ident(pki, x5u=f"{BASE}/missing.pem")],
        "not-a-cert": [_ident(pki, x5u=f"{BASE}/garbage.pem")],
        "refused": [_ident(pki, x5u=f"{BASE}/refused.pem")],
        "untrusted": [_ident(pki, "untrusted")],
        "rsa-leaf": [shaken_identity(pki.key("good"), f"{BASE}/rsa.pem", orig=ORIG, dest=[DEST], iat=int(NOW))],
        "expired": [_ident(pki, "expired")],
        "revoked": [_ident(pki, "revoked")],
        "no-tnauth": [_ident(pki, "no_tnauth")],
        "bad-signature": [_tampered_payload(token) + ";" + params],
        "wrong-key": [shaken_identity(pki.key("implicit"), f"{BASE}/good.pem", orig=ORIG, dest=[DEST],
                                      iat=int(NOW))],
        "orig-mismatch": [_ident(pki, orig="12025550199")],
        "dest-mismatch": [_ident(pki, dest=["13035550199"])],
        "attest-D": [_raw(pki, HDR, {**CLAIMS, "attest": "D"})],
        "iat-string": [_raw(pki, HDR, {**CLAIMS, "iat": str(int(NOW))})],
        "orig-missing": [_raw(pki, HDR, {k: v for k, v in CLAIMS.items() if k != "orig"})],
        "no-origid": [_raw(pki, HDR, {k: v for k, v in CLAIMS.items() if k != "origid"})],
    }[case]
    reasons = _reasons(pki, idents)
    assert reasons[0] is expected, reasons


def test_bad_signature_ranks_before_number_mismatch(pki: StiPki) -> None:
    token, _, params = _ident(pki, orig="12025550199").partition(";")
    assert _reasons(pki, [_tampered_payload(token) + ";" + params])[:1] == (Reason.BAD_SIGNATURE,)


def test_doomed_token_causes_no_fetch(pki: StiPki) -> None:
    fetcher = _fetcher(pki)
    res = run(_verify(_verifier(pki, fetcher), [_ident(pki, iat=int(NOW) - 3600, orig="1999")]))
    assert res.reasons == (Reason.STALE_IAT, Reason.ORIG_MISMATCH)
    assert fetcher.calls == {}


@pytest.mark.parametrize(("offset", "ok"), [(-60, True), (-61, False), (5, True), (6, False), (0, True)])
def test_iat_window_edges(pki: StiPki, offset: int, ok: bool) -> None:
    res = run(_verify(_verifier(pki), [_ident(pki, iat=int(NOW) + offset)]))
    assert res.passed is ok


def test_anonymous_caller_is_orig_mismatch(pki: StiPki) -> None:
    assert _reasons(pki, [_ident(pki)], orig=()) == (Reason.ORIG_MISMATCH,)


def test_numbers_normalised(pki: StiPki) -> None:
    ident = _ident(pki, orig="+1 (202) 555-0100", dest=["+1-303-555-0100", "2065550100"])
    assert run(_verify(_verifier(pki), [ident], dest=("12065550100",))).passed
    # national 10-digit NANP form in the PASSporT matches the E.164 digits from SIP
    assert run(_verify(_verifier(pki), [_ident(pki, orig="2025550100")])).passed


def test_second_header_passes_when_first_fails(pki: StiPki) -> None:
    res = run(_verify(_verifier(pki), ["garbage!", _ident(pki, "expired"), _ident(pki)]))
    assert res.passed and res.x5u == f"{BASE}/good.pem"


def test_all_fail_reports_first_shaken(pki: StiPki) -> None:
    res = run(_verify(_verifier(pki), [_ident(pki, "expired"), _ident(pki, "revoked")]))
    assert res.reasons[0] is Reason.CERT_EXPIRED


def test_comma_joined_values_are_split(pki: StiPki) -> None:
    assert run(_verify(_verifier(pki), [_ident(pki, "expired") + ", " + _ident(pki)])).passed


def test_ppt_absent_in_header_uses_jose_ppt_when_lenient(pki: StiPki) -> None:
    ident = _ident(pki).replace(";ppt=shaken", "")
    assert run(_verify(_verifier(pki, identity_lenient=frozenset({"ppt"})), [ident])).passed


def test_div_chain_reported_and_checked(pki: StiPki) -> None:
    new_dest = "14155550100"
    div = sign_passport(pki.key("good"), {**HDR, "ppt": "div"},
                        {"dest": {"tn": [new_dest]}, "div": {"tn": DEST}, "iat": int(NOW), "orig": {"tn": ORIG}})
    bad_div = sign_passport(pki.key("good"), {**HDR, "ppt": "div"},
                            {"dest": {"tn": [new_dest]}, "div": {"tn": "19995550100"}, "iat": int(NOW),
                             "orig": {"tn": ORIG}})
    x5u = f"{BASE}/good.pem"
    idents = [_ident(pki), identity_header(div, x5u, ppt="div"), identity_header(bad_div, x5u, ppt="div")]
    res = run(_verify(_verifier(pki), idents, dest=(new_dest,)))
    # the shaken PASSporT still names the original callee: dest-mismatch against the new one
    assert res.reasons == (Reason.DEST_MISMATCH,)
    assert [d.valid for d in res.div] == [True, False]
    assert res.div[0].div_tn == DEST and res.div[0].dest_tns == (new_dest,)


def test_crl_fail_closed_when_unreachable(pki: StiPki) -> None:
    fetcher = _fetcher(pki)
    del fetcher.bodies[CRL]
    closed = _verifier(pki, fetcher, crl=CrlConfig(failure="fail-closed"))
    assert run(_verify(closed, [_ident(pki)])).reasons == (Reason.CERT_REVOKED,)
    opened = _verifier(pki, fetcher)
    assert run(_verify(opened, [_ident(pki)])).passed


def test_crl_server_down_at_the_daily_re_read_keeps_the_valid_crl(pki: StiPki) -> None:
    """Fail-closed, yet a CRL server that is down when its CRL is read again (daily) rejects
    nothing while the CRL it served is valid (nextUpdate, a week here); after that it does."""
    fetcher = _fetcher(pki)
    v = _verifier(pki, fetcher, crl=CrlConfig(failure="fail-closed"), negative_ttl=10.0,
                  iat_max_age=10 * 86400)

    async def call(at: float) -> Any:
        result = await _verify(v, [_ident(pki, iat=int(at))], now=at)
        for _ in range(100):
            if not v.creds.crl.flights and not v.creds.flights:
                break
            await asyncio.sleep(0)
        return result

    async def go() -> None:
        assert (await call(NOW)).passed
        del fetcher.bodies[CRL]
        day = NOW + 86400 + 5
        assert (await call(day)).passed and fetcher.calls[CRL] == 2      # re-read, failed, kept
        assert (await call(day + 5)).passed and fetcher.calls[CRL] == 2  # within negative_ttl
        assert (await call(day + 11)).passed and fetcher.calls[CRL] == 3  # retried, kept
        past = NOW + 7 * 86400 + 1                                        # past its nextUpdate
        assert (await call(past)).reasons == (Reason.CERT_REVOKED,)

    run(go())


def test_crl_disabled_ignores_revocation(pki: StiPki) -> None:
    assert run(_verify(_verifier(pki, crl=CrlConfig(enabled=False)), [_ident(pki, "revoked")])).passed


def test_crl_signed_by_someone_else_is_unavailable(pki: StiPki, tmp_path: Path) -> None:
    other = StiPki(tmp_path, now=NOW)
    fetcher = _fetcher(pki)
    fetcher.bodies[CRL] = other.crl_der
    res = run(_verify(_verifier(pki, fetcher, crl=CrlConfig(failure="fail-closed")), [_ident(pki)]))
    assert res.reasons == (Reason.CERT_REVOKED,)


def test_warm_cache_fetches_once(pki: StiPki) -> None:
    fetcher = _fetcher(pki)
    v = _verifier(pki, fetcher)

    async def many() -> list[bool]:
        return [(await _verify(v, [_ident(pki)], now=NOW + i)).passed for i in range(5)]

    assert run(many()) == [True] * 5
    assert fetcher.calls[f"{BASE}/good.pem"] == 1 and fetcher.calls[CRL] == 1
    assert v.creds.certs.counters.hits == 4 and v.counters.passed == 5


def test_single_flight_1000_concurrent(pki: StiPki) -> None:
    fetcher = _fetcher(pki)
    v = _verifier(pki, fetcher)
    ident = _ident(pki)

    async def burst() -> list[Any]:
        fetcher.gate = asyncio.Event()
        tasks = [asyncio.ensure_future(_verify(v, [ident])) for _ in range(1000)]
        await asyncio.sleep(0)
        fetcher.gate.set()
        return await asyncio.gather(*tasks)

    results = run(burst())
    assert all(r.passed for r in results)
    assert fetcher.calls[f"{BASE}/good.pem"] == 1


def test_cache_expires_at_ttl(pki: StiPki) -> None:
    fetcher = _fetcher(pki)
    v = _verifier(pki, fetcher, stale_grace=0.0)

    async def go() -> None:
        assert (await _verify(v, [_ident(pki)])).passed
        later = NOW + 86400 + 1
        assert (await _verify(v, [_ident(pki, iat=int(later))], now=later)).passed

    run(go())
    assert fetcher.calls[f"{BASE}/good.pem"] == 2
    assert v.counters.stale_served == 0


async def _settle(v: Verifier) -> None:
    """Until the background refreshes have finished."""
    for _ in range(100):
        if not v.creds.flights:
            return
        await asyncio.sleep(0)
    raise AssertionError("a refresh never finished")


def test_expired_entry_served_while_one_refresh_runs(pki: StiPki) -> None:
    fetcher = _fetcher(pki)
    v = _verifier(pki, fetcher, crl=CrlConfig(enabled=False))  # the gate below holds every download
    url = f"{BASE}/good.pem"
    later = NOW + 86400 + 1

    async def go() -> None:
        assert (await _verify(v, [_ident(pki)])).passed
        fetcher.gate = asyncio.Event()  # the refresh hangs: no call may wait for it
        results = [await _verify(v, [_ident(pki, iat=int(later))], now=later + i) for i in range(10)]
        for _ in range(5):
            await asyncio.sleep(0)       # the one refresh has started and waits at the gate
        assert fetcher.calls[url] == 2 and len(v.creds.flights) == 1
        results += [await _verify(v, [_ident(pki, iat=int(later))], now=later + i) for i in range(10, 20)]
        assert all(r.passed for r in results)
        assert fetcher.calls[url] == 2 and v.counters.stale_served == 20
        fetcher.gate.set()
        await _settle(v)
        # refreshed: a fresh entry again, no stale serving
        assert (await _verify(v, [_ident(pki, iat=int(later) + 30)], now=later + 30)).passed

    run(go())
    assert fetcher.calls[url] == 2 and v.counters.stale_served == 20


def test_unreachable_host_keeps_the_certificate_for_the_grace_only(pki: StiPki) -> None:
    fetcher = _fetcher(pki)
    v = _verifier(pki, fetcher, stale_grace=600.0, negative_ttl=10.0)
    url = f"{BASE}/good.pem"
    expiry = NOW + 86400

    async def call(at: float) -> Any:
        result = await _verify(v, [_ident(pki, iat=int(at))], now=at)
        await _settle(v)
        return result

    async def go() -> None:
        assert (await call(NOW)).passed
        fetcher.bodies[url] = FetchError(Reason.X5U_FETCH_FAILED, "connection refused")
        assert (await call(expiry + 1)).passed      # served stale, the refresh fails
        assert fetcher.calls[url] == 2
        assert (await call(expiry + 5)).passed      # within negative_ttl: no new attempt
        assert fetcher.calls[url] == 2
        assert (await call(expiry + 12)).passed     # retried after negative_ttl, fails again
        assert fetcher.calls[url] == 3
        late = await call(expiry + 601)             # the grace is over: the failure shows
        assert late.reasons == (Reason.X5U_FETCH_FAILED,)

    run(go())


def test_refresh_that_brings_a_bad_certificate_replaces_the_good_one(pki: StiPki) -> None:
    fetcher = _fetcher(pki)
    v = _verifier(pki, fetcher)
    url = f"{BASE}/good.pem"
    later = NOW + 86400 + 1

    async def go() -> None:
        assert (await _verify(v, [_ident(pki)])).passed
        fetcher.bodies[url] = pki.chain_pem("untrusted")
        assert (await _verify(v, [_ident(pki, iat=int(later))], now=later)).passed  # stale, refreshing
        await _settle(v)
        after = await _verify(v, [_ident(pki, iat=int(later) + 1)], now=later + 1)
        assert not after.passed and Reason.X5U_FETCH_FAILED not in after.reasons

    run(go())


def test_stale_certificate_never_outlives_its_validity(pki: StiPki) -> None:
    fetcher = _fetcher(pki)
    v = _verifier(pki, fetcher, stale_grace=400 * 86400.0)  # longer than the certificate lives
    url = f"{BASE}/good.pem"

    async def go() -> None:
        assert (await _verify(v, [_ident(pki)])).passed
        fetcher.bodies[url] = FetchError(Reason.X5U_FETCH_FAILED, "timed out")
        entry = v.creds.certs.get(url)
        assert entry is not None and entry.cred is not None
        gone = entry.cred.not_after + 10
        result = await _verify(v, [_ident(pki, iat=int(gone))], now=gone)
        assert result.reasons == (Reason.CERT_EXPIRED,)  # the stale entry, judged at this time

    run(go())


def test_sighup_reads_the_trust_anchors_again(pki: StiPki, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from dataclasses import replace

    from cryptography.hazmat.primitives.serialization import Encoding

    anchors = tmp_path / "sti-roots.pem"
    anchors.write_bytes(Path(pki.anchors).read_bytes())
    fetcher = _fetcher(pki)
    v = Verifier(replace(pki.config(), trust_anchors=str(anchors)), fetcher)
    url = f"{BASE}/good.pem"

    async def go() -> None:
        assert (await _verify(v, [_ident(pki)])).passed
        v.reconfigure(v.cfg)                              # the same anchors: nothing judged again
        assert (await _verify(v, [_ident(pki)])).passed
        assert fetcher.calls[url] == 1
        anchors.write_bytes(pki.other_root.public_bytes(Encoding.PEM))  # the STI-CA's root withdrawn
        v.reconfigure(v.cfg)
        assert (await _verify(v, [_ident(pki)])).reasons == (Reason.CERT_UNTRUSTED,)
        assert fetcher.calls[url] == 2
        anchors.write_bytes(Path(pki.anchors).read_bytes())              # and listed again
        v.reconfigure(v.cfg)
        assert (await _verify(v, [_ident(pki)])).passed
        v.reconfigure(replace(v.cfg, trust_anchors=str(tmp_path / "gone.pem")))  # unreadable: kept
        assert "trust anchors not reloaded" in caplog.text
        assert (await _verify(v, [_ident(pki)])).passed
        v.reconfigure(replace(v.cfg, iat_max_age=5))      # the iat window is taken too
        old = await _verify(v, [_ident(pki, iat=int(NOW) - 30)])
        assert old.reasons == (Reason.STALE_IAT,)

    run(go())


def test_a_refresh_under_way_at_sighup_keeps_no_certificate_judged_before(pki: StiPki, tmp_path: Path) -> None:
    """New anchors while a certificate is refreshed and its host is down: the certificate
    judged against the old anchors is not kept (stale-if-error applies to the new ones only)."""
    from dataclasses import replace

    from cryptography.hazmat.primitives.serialization import Encoding

    anchors = tmp_path / "sti-roots.pem"
    anchors.write_bytes(Path(pki.anchors).read_bytes())
    fetcher = _fetcher(pki)
    v = Verifier(replace(pki.config(crl=CrlConfig(enabled=False)), trust_anchors=str(anchors)), fetcher)
    url = f"{BASE}/good.pem"
    later = NOW + 86400 + 1

    async def go() -> None:
        assert (await _verify(v, [_ident(pki)])).passed
        fetcher.bodies[url] = FetchError(Reason.X5U_FETCH_FAILED, "connection refused")
        fetcher.gate = asyncio.Event()
        assert (await _verify(v, [_ident(pki, iat=int(later))], now=later)).passed  # stale, refreshing
        for _ in range(5):
            await asyncio.sleep(0)                   # the refresh waits at the gate
        anchors.write_bytes(Path(pki.anchors).read_bytes() + pki.other_root.public_bytes(Encoding.PEM))
        v.reconfigure(v.cfg)                         # the anchors changed (one more root)
        fetcher.gate.set()
        await _settle(v)
        after = await _verify(v, [_ident(pki, iat=int(later) + 1)], now=later + 1)
        assert after.reasons == (Reason.X5U_FETCH_FAILED,)

    run(go())


# (number as the SIP header carries it, PASSporT tn, verifies): numbers compared as the
# PASSporT means them (ATIS-1000074, RFC 8224 section 8.3), foreign ones included
FOREIGN_FORMS = [
    ("sip:439991001@carrier.example", "439991001", True),      # byte-identical, 9 digits, no "+"
    ("sip:+439991001@carrier.example;user=phone", "439991001", True),
    ("tel:+43-999-1001", "439991001", True),
    ("tel:439991001;phone-context=+43", "439991001", True),
    ("02071838750", "02071838750", True),                      # national form: compared exactly
    ("02071838750", "442071838750", False),                    # ... its country is not known
    ("011442071838750", "442071838750", True),
    ("sip:442071838750@uk.example", "442071838750", True),
    ("+4930123456", "4930123456", True),
    ("4930123456", "4930123456", True),
    ("+4930123456", "14930123456", False),                     # not the NANP number 493-012-3456
    ("tel:+33-1-42-68-53-00", "33142685300", True),
    ("sip:919876543210@in.example", "919876543210", True),
    ("<sip:+525512345678@mx.example;user=phone>", "525512345678", True),
    ("+8613812345678", "8613812345678", True),
    ("+442071838750", "2071838750", False),
    ("2025550100", "12025550100", True),
    ("2025550100", "2025550100", True),
    ("+12025550100", "2025550100", True),                      # the NANP 10-digit tolerance
    ("sip:anonymous@anonymous.invalid", "12025550100", False),
]


@pytest.mark.parametrize(("header", "tn", "ok"), FOREIGN_FORMS)
def test_orig_and_dest_compared_as_the_passport_means_them(pki: StiPki, header: str, tn: str, ok: bool) -> None:
    forms = parse_tn(header).forms
    res = run(_verify(_verifier(pki), [_ident(pki, orig=tn)], orig=forms))
    assert res.passed is ok and res.reasons == (() if ok else (Reason.ORIG_MISMATCH,))
    res = run(_verify(_verifier(pki), [_ident(pki, dest=[tn])], dest=forms))
    assert res.passed is ok and res.reasons == (() if ok else (Reason.DEST_MISMATCH,))


# -- Identity header parameters (ATIS-1000074 strict by default; shaken.identity.lenient) ----------

def _without(ident: str, param: str) -> str:
    token, *params = ident.split(";")
    return ";".join([token, *(p for p in params if not p.startswith(param + "="))])


@pytest.mark.parametrize(("missing", "reason"), [("ppt", Reason.MISSING_PPT), ("alg", Reason.MISSING_ALG)])
def test_identity_without_ppt_or_alg_fails_by_default(pki: StiPki, missing: str, reason: Reason) -> None:
    fetcher = _fetcher(pki)
    res = run(_verify(_verifier(pki, fetcher), [_without(_ident(pki), missing)]))
    assert res.verstat is Verstat.FAILED and res.reasons == (reason,)
    assert fetcher.calls == {}  # doomed by the header alone: no download


def test_identity_without_ppt_is_shaken_failure_beside_a_div(pki: StiPki) -> None:
    """Strict: a header without ppt is not silently skipped, even when its PASSporT says div."""
    div = _raw(pki, {**HDR, "ppt": "div"}, CLAIMS)
    res = run(_verify(_verifier(pki), [_without(div, "ppt")]))
    assert res.reasons[:1] == (Reason.MISSING_PPT,)


@pytest.mark.parametrize("lenient", [("ppt",), ("alg",), ("alg", "ppt")])
def test_lenient_parameters_may_be_absent(pki: StiPki, lenient: tuple[str, ...]) -> None:
    verifier = _verifier(pki, identity_lenient=frozenset(lenient))
    ident = _ident(pki)
    for name in lenient:
        ident = _without(ident, name)
    assert run(_verify(verifier, [ident])).verstat is Verstat.PASSED
    # leniency on one parameter does not excuse the other
    other = {"alg", "ppt"} - set(lenient)
    for name in other:
        res = run(_verify(verifier, [_without(ident, name)]))
        assert res.reasons == ((Reason.MISSING_PPT,) if name == "ppt" else (Reason.MISSING_ALG,))


def test_lenient_ppt_still_checks_the_passports_own_ppt(pki: StiPki) -> None:
    verifier = _verifier(pki, identity_lenient=frozenset({"ppt"}))
    div = _without(_raw(pki, {**HDR, "ppt": "div"}, CLAIMS), "ppt")
    # read as a div PASSporT: no shaken one, nothing verified
    assert run(_verify(verifier, [div])).verstat is Verstat.NONE


def test_lenient_switch_follows_sighup(pki: StiPki) -> None:
    from dataclasses import replace

    verifier = _verifier(pki)
    ident = _without(_ident(pki), "ppt")
    assert run(_verify(verifier, [ident])).reasons == (Reason.MISSING_PPT,)
    verifier.reconfigure(replace(verifier.cfg, identity_lenient=frozenset({"ppt"})))
    assert run(_verify(verifier, [ident])).passed
