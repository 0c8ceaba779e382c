"""Several Identity headers, div chains (RFC 8946), rcd and rcdi (RFC 9795), the replay key."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sipguard.shaken.rcd import integrity
from sipguard.shaken.reasons import RFC8224_RESPONSE, Reason, Verstat
from sipguard.shaken.verify import Verifier, signature_key
from tests.shaken_pki import MapFetcher, StiPki, div_identity, rcd_identity, shaken_identity, shaken_token

NOW = 1_790_000_000.0
X5U = "https://certs.example.net/good.pem"
A, B, C, D = "12025550100", "13035550100", "14155550100", "16175550100"
JCARD = ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Example Bank"],
                   ["logo", {}, "uri", "https://logo.example.com/bank.png"]]]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StiPki:
    return StiPki(tmp_path_factory.mktemp("pki"), now=NOW)


def verifier(pki: StiPki, **cfg: Any) -> Verifier:
    return Verifier(pki.config(**cfg), MapFetcher({X5U: pki.chain_pem("good")}))


def verify(v: Verifier, idents: list[str], orig: tuple[str, ...] = (A,), dest: tuple[str, ...] = (B,),
           history: tuple[str, ...] | None = None) -> Any:
    return asyncio.run(v.verify(idents, orig, dest, NOW, history=history))


def shaken(pki: StiPki, orig: str = A, dest: str = B) -> str:
    return shaken_identity(pki.key("good"), X5U, orig=orig, dest=[dest], iat=int(NOW))


def div(pki: StiPki, div_tn: str, dest: str, orig: str = A) -> str:
    return div_identity(pki.key("good"), X5U, orig=orig, dest=[dest], div=div_tn, iat=int(NOW))


def rcd(pki: StiPki, rcd_claim: dict[str, Any], rcdi: dict[str, str] | None = None, orig: str = A) -> str:
    return rcd_identity(pki.key("good"), X5U, orig=orig, dest=[B], iat=int(NOW), rcd=rcd_claim, rcdi=rcdi)


# -- div -----------------------------------------------------------------------------------------

def test_valid_div_chain_of_two_retargets(pki: StiPki) -> None:
    """A calls B, B forwards to C, C forwards to D: the call now goes to D (Request-URI) with
    To B, and the History-Info names B and C."""
    # listed out of order: the chain is followed by number, not by header position
    idents = [shaken(pki), div(pki, C, D), div(pki, B, C)]
    res = verify(verifier(pki), idents, dest=(B, D), history=(B, C, D))
    assert res.verstat is Verstat.PASSED
    assert [d.valid for d in res.div] == [True, True] and res.div_verstat is Verstat.PASSED
    assert res.report() == ("shaken:passed", "div:passed", "div:passed")


def test_div_dest_mismatch_breaks_the_chain(pki: StiPki) -> None:
    """The second div claims to divert a number (C2) the first one never sent the call to."""
    other = "19175550100"
    res = verify(verifier(pki), [shaken(pki), div(pki, B, C), div(pki, other, D)], dest=(B, D),
                 history=(B, C, other))
    assert res.verstat is Verstat.PASSED  # the shaken PASSporT decides the call's verstat
    assert [d.reasons for d in res.div] == [(Reason.DIV_CHAIN_BROKEN,), (Reason.DIV_CHAIN_BROKEN,)]
    # the first link is fine on its own but the call is not at C: the chain ends in the wrong place
    assert res.div_verstat is Verstat.FAILED
    assert res.report()[2] == "div:failed:div-chain-broken"


def test_div_with_another_orig_is_broken(pki: StiPki) -> None:
    res = verify(verifier(pki), [shaken(pki), div(pki, B, C, orig="19995550100")], dest=(B, C), history=(B,))
    assert res.div[0].reasons == (Reason.DIV_CHAIN_BROKEN,)


def test_div_without_history_info_or_diversion(pki: StiPki) -> None:
    res = verify(verifier(pki), [shaken(pki), div(pki, B, C)], dest=(B, C), history=())
    assert res.div[0].reasons == (Reason.DIV_NO_HISTORY,) and res.div_verstat is Verstat.FAILED
    # the same call with a Diversion header naming B
    assert verify(verifier(pki), [shaken(pki), div(pki, B, C)], dest=(B, C), history=(B,)).div[0].valid


def test_div_without_a_shaken_passport_links_to_nothing(pki: StiPki) -> None:
    res = verify(verifier(pki), [div(pki, B, C)], dest=(B, C), history=(B,))
    assert res.verstat is Verstat.NONE and res.div[0].reasons == (Reason.DIV_CHAIN_BROKEN,)
    assert res.report() == ("div:failed:div-chain-broken",)


def test_div_with_a_bad_signature_fails_on_its_own(pki: StiPki) -> None:
    good = div(pki, B, C)
    token, rest = good.split(";", 1)
    head, payload, _ = token.split(".")
    forged = div(pki, B, "19995550100").split(";", 1)[0].split(".")[2]
    res = verify(verifier(pki), [shaken(pki), f"{head}.{payload}.{forged};{rest}"], dest=(B, C), history=(B,))
    assert res.div[0].reasons == (Reason.BAD_SIGNATURE,)


# -- rcd -----------------------------------------------------------------------------------------

def test_rcd_with_a_good_rcdi_verifies(pki: StiPki) -> None:
    claim = {"nam": "Example Bank", "jcd": JCARD}
    res = verify(verifier(pki), [shaken(pki), rcd(pki, claim, {"/jcd": integrity(JCARD)})])
    assert res.passed and res.rcd is True
    assert res.report() == ("shaken:passed", "rcd:passed")


def test_rcd_with_a_tampered_rcdi_fails(pki: StiPki) -> None:
    """The digest was made over another jCard (the logo URL changed after it was computed)."""
    other = [JCARD[0], [*JCARD[1][:2], ["logo", {}, "uri", "https://evil.example/x.png"]]]
    claim = {"nam": "Example Bank", "jcd": JCARD}
    res = verify(verifier(pki), [shaken(pki), rcd(pki, claim, {"/jcd": integrity(other)})])
    assert res.passed and res.rcd is False  # the call's verstat is the shaken PASSporT's
    assert res.passports[1].reasons == (Reason.RCDI_MISMATCH,)


def test_rcdi_naming_a_url_is_not_fetched_and_not_a_failure(pki: StiPki) -> None:
    fetcher = MapFetcher({X5U: pki.chain_pem("good")})
    v = Verifier(pki.config(), fetcher)
    claim = {"nam": "Example Bank", "icn": "https://logo.example.com/bank.png"}
    res = asyncio.run(v.verify([shaken(pki), rcd(pki, claim, {"/icn": "sha256-" + "A" * 43 + "="})],
                               (A,), (B,), NOW))
    assert res.rcd is True
    assert "https://logo.example.com/bank.png" not in fetcher.calls


def test_rcdi_pointing_at_nothing_is_a_mismatch(pki: StiPki) -> None:
    res = verify(verifier(pki), [shaken(pki), rcd(pki, {"nam": "X"}, {"/jcd": integrity(JCARD)})])
    assert res.rcd is False


def test_rcd_for_another_caller_fails(pki: StiPki) -> None:
    res = verify(verifier(pki), [shaken(pki), rcd(pki, {"nam": "X"}, orig="19995550100")])
    assert res.rcd is False and res.passports[1].reasons == (Reason.ORIG_MISMATCH,)


def test_rcd_without_nam_is_bad_claims(pki: StiPki) -> None:
    res = verify(verifier(pki), [shaken(pki), rcd(pki, {"jcd": JCARD})])
    assert res.rcd is False and res.passports[1].reasons == (Reason.BAD_CLAIMS,)


# -- selection and bound ---------------------------------------------------------------------

def test_more_identity_headers_than_the_bound_are_refused_unread(pki: StiPki) -> None:
    fetcher = MapFetcher({X5U: pki.chain_pem("good")})
    v = Verifier(pki.config(max_identity=3), fetcher)
    res = asyncio.run(v.verify([shaken(pki)] * 4, (A,), (B,), NOW))
    assert res.verstat is Verstat.FAILED and res.reasons == (Reason.TOO_MANY_IDENTITY,)
    assert RFC8224_RESPONSE[Reason.TOO_MANY_IDENTITY] == (438, "Invalid Identity Header")
    assert fetcher.calls == {}  # nothing downloaded for a flood
    # the bound counts values, also when they come comma-joined on one line
    assert asyncio.run(v.verify([", ".join([shaken(pki)] * 4)], (A,), (B,), NOW)).reasons == \
        (Reason.TOO_MANY_IDENTITY,)
    assert asyncio.run(v.verify([shaken(pki)] * 3, (A,), (B,), NOW)).passed


def test_each_header_reported_unknown_ppt_ignored_later_shaken_skipped(pki: StiPki) -> None:
    rph = shaken_token(pki.key("good"), X5U, orig=A, dest=[B], iat=int(NOW), ppt="rph")
    idents = [f"{rph};info=<{X5U}>;alg=ES256;ppt=rph", shaken(pki, orig="19995550100"), shaken(pki), shaken(pki)]
    res = verify(verifier(pki), idents)
    assert res.passed
    assert res.report() == ("rph:ignored", "shaken:failed:orig-mismatch", "shaken:passed", "shaken:skipped")


def test_single_header_report_and_no_identity() -> None:
    from sipguard.shaken.result import NOT_VERIFIED, Verification

    assert NOT_VERIFIED.report() == ()
    assert Verification(Verstat.FAILED, reasons=(Reason.STALE_IAT,)).report() == ("shaken:failed:stale-iat",)


# -- the replay key ----------------------------------------------------------------------------

def test_replay_key_only_for_a_verified_signature(pki: StiPki) -> None:
    v = verifier(pki)
    ident = shaken(pki)
    res = verify(v, [ident])
    token = ident.split(";", 1)[0]
    from sipguard.shaken.passport import decode

    passport = decode(token)
    assert passport is not None and res.replay_key == signature_key(passport.signature)
    assert verify(v, [ident]).replay_key == res.replay_key  # from the token cache: same key
    # a number mismatch still has a verified signature: the PASSporT was used, keep the key
    assert verify(v, [ident], orig=("19995550100",)).replay_key == res.replay_key
    # a forged signature never enters the seen-set (it could poison a real call's key)
    head, payload, _ = token.split(".")
    other = shaken(pki).split(";", 1)[0].split(".")[2]
    forged = verify(v, [f"{head}.{payload}.{other};info=<{X5U}>;alg=ES256;ppt=shaken"])
    assert forged.reasons == (Reason.BAD_SIGNATURE,) and forged.replay_key is None
    assert verify(verifier(pki, replay=False), [ident]).replay_key is None


def test_replay_key_survives_ecdsa_malleability(pki: StiPki) -> None:
    """(r, s) -> (r, n - s) is a second valid signature over the same bytes: a replayer's cheapest
    way to look new. The key is made from r, so both forms give the same key."""
    import base64

    from tests.shaken_pki import b64url

    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 group order
    ident = shaken(pki)
    token, params = ident.split(";", 1)
    head, payload, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    flipped = raw[:32] + (n - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    malleated = f"{head}.{payload}.{b64url(flipped)};{params}"
    v = verifier(pki)
    first, second = verify(v, [ident]), verify(v, [malleated])
    assert first.passed and second.passed  # both verify: ECDSA accepts either s
    assert first.replay_key == second.replay_key is not None


# -- shaken.rcd.fetch ----------------------------------------------------------------------------

LOGO_URL = "https://logo.example.com/bank.png"
LOGO = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def _sri(body: bytes) -> str:
    import base64
    import hashlib

    return "sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def test_rcd_fetch_checks_url_content_when_turned_on(pki: StiPki) -> None:
    from sipguard.shaken.x5u import FetchError

    jcl = ["vcard", [["fn", {}, "text", "Example Bank"]]]
    bodies: dict[str, Any] = {X5U: pki.chain_pem("good"), LOGO_URL: LOGO,
                              "https://logo.example.com/card.json": b'[ "vcard",[["fn", {},"text","Example Bank"]]]',
                              "https://10.0.0.1/x.png": FetchError(Reason.X5U_REFUSED, "private address")}
    fetcher = MapFetcher(bodies)
    v = Verifier(pki.config(rcd_fetch=True), fetcher)
    claim = {"nam": "Example Bank", "icn": LOGO_URL}
    good = verify(v, [shaken(pki), rcd(pki, claim, {"/icn": _sri(LOGO)})])
    assert good.rcd is True and fetcher.calls[LOGO_URL] == 1
    assert verify(v, [shaken(pki), rcd(pki, claim, {"/icn": _sri(LOGO)})]).rcd is True
    assert fetcher.calls[LOGO_URL] == 1  # the verdict is kept
    wrong = verify(v, [shaken(pki), rcd(pki, claim, {"/icn": _sri(b"another logo")})])
    assert wrong.rcd is False and wrong.passports[1].reasons == (Reason.RCDI_MISMATCH,)
    # a jCard by URL: digest over its canonical JSON, however the server spaced it
    card = verify(v, [shaken(pki), rcd(pki, {"nam": "Example Bank", "jcl": "https://logo.example.com/card.json"},
                                       {"/jcl": integrity(jcl)})])
    assert card.rcd is True
    refused = verify(v, [shaken(pki), rcd(pki, {"nam": "X", "icn": "https://10.0.0.1/x.png"},
                                          {"/icn": _sri(LOGO)})])
    assert refused.rcd is False and refused.passports[1].reasons == (Reason.X5U_REFUSED,)


def test_rcd_fetch_never_for_a_passport_that_did_not_verify(pki: StiPki) -> None:
    fetcher = MapFetcher({X5U: pki.chain_pem("good"), LOGO_URL: LOGO})
    v = Verifier(pki.config(rcd_fetch=True), fetcher)
    ident = rcd(pki, {"nam": "Example Bank", "icn": LOGO_URL}, {"/icn": _sri(LOGO)})
    token, params = ident.split(";", 1)
    head, payload, _ = token.split(".")
    other = rcd(pki, {"nam": "Other"}).split(";", 1)[0].split(".")[2]
    res = verify(v, [shaken(pki), f"{head}.{payload}.{other};{params}"])
    assert res.rcd is False and res.passports[1].reasons == (Reason.BAD_SIGNATURE,)
    assert LOGO_URL not in fetcher.calls
    # nor with the switch off (the default), for a good one
    off = MapFetcher({X5U: pki.chain_pem("good"), LOGO_URL: LOGO})
    assert asyncio.run(Verifier(pki.config(), off).verify([shaken(pki), ident], (A,), (B,), NOW)).rcd is True
    assert LOGO_URL not in off.calls
