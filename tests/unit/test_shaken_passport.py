"""PASSporT decoding, claim validation, TN normalisation, iat window and raw ES256 verify."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sipguard.shaken import passport as pp
from sipguard.shaken.reasons import Reason
from tests.shaken_pki import b64url, sign_passport

KEY = ec.generate_private_key(ec.SECP256R1())
HDR = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": "https://c.example/x.pem"}
CLAIMS = {"attest": "A", "dest": {"tn": ["13035550100"]}, "iat": 1700000000, "orig": {"tn": "12025550100"},
          "origid": "id-1"}


def test_decode_keeps_received_bytes() -> None:
    # key order and spacing differ from any canonical form: the signature must still verify
    head = b64url(b'{"x5u":"https://c.example/x.pem", "typ":"passport","ppt":"shaken","alg":"ES256"}')
    body = b64url(b'{"origid":"id-1","orig":{"tn":"12025550100"},"iat":1700000000,'
                  b'"dest":{"tn":["13035550100"]},"attest":"A","extra":1}')
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(KEY.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
    token = f"{head}.{body}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    p = pp.decode(token)
    assert p is not None and p.signing_input == f"{head}.{body}".encode()
    assert pp.verify_es256(KEY.public_key(), p.signing_input, p.signature)
    assert pp.check_header(p, "shaken", "https://c.example/x.pem") == []
    claims = pp.shaken_claims(p)
    assert claims is not None and claims.attest == "A" and claims.dest_tns == ("13035550100",)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "a..c", "!!.e30.AA", "e30.W10.AA", "e30.e30.", "bnVsbA.e30.AA"])
def test_decode_garbage_is_none(token: str) -> None:
    assert pp.decode(token) is None


@pytest.mark.parametrize(("header", "reasons"), [
    (HDR, []),
    ({**HDR, "alg": "none"}, [Reason.BAD_ALG]),
    ({**HDR, "alg": "ES384"}, [Reason.BAD_ALG]),
    ({**HDR, "typ": "JWT"}, [Reason.MALFORMED_IDENTITY]),
    ({**HDR, "ppt": "div"}, [Reason.BAD_PPT]),
    ({k: v for k, v in HDR.items() if k != "x5u"}, [Reason.X5U_MISMATCH]),
    ({**HDR, "x5u": "https://other/x.pem"}, [Reason.X5U_MISMATCH]),
])
def test_check_header(header: dict[str, object], reasons: list[Reason]) -> None:
    p = pp.decode(sign_passport(KEY, header, CLAIMS))
    assert p is not None and pp.check_header(p, "shaken", "https://c.example/x.pem") == reasons


@pytest.mark.parametrize("change", [
    {"attest": "a"}, {"attest": None}, {"iat": 1.5}, {"iat": True}, {"orig": "12025550100"},
    {"orig": {"tn": "abc"}}, {"dest": {"tn": []}}, {"dest": {"uri": ["sip:a@b"]}}, {"origid": ""},
    {"dest": "{\"tn\":\"1\"}"},
])
def test_bad_claims(change: dict[str, object]) -> None:
    p = pp.decode(sign_passport(KEY, HDR, {**CLAIMS, **change}))
    assert p is not None and pp.shaken_claims(p) is None


@pytest.mark.parametrize(("raw", "norm"), [
    ("+12025550100", "12025550100"), ("1 (202) 555-0100", "12025550100"), ("202.555.0100", "2025550100"),
    ("*67", "*67"), ("abc", None), ("", None), (12025550100, None),
])
def test_normalize_tn(raw: object, norm: str | None) -> None:
    assert pp.normalize_tn(raw) == norm


@pytest.mark.parametrize(("tn", "cands", "ok"), [
    ("12025550100", ["12025550100"], True), ("2025550100", ["12025550100"], True),
    # candidates are TN.forms: a plus-less 2025550100 in SIP gives both readings
    ("12025550100", ["12025550100", "2025550100"], True), ("442071234567", ["2071234567"], False),
    ("12025550100", [], False), ("12025550100", ["12025550101", "12025550100"], True),
    # a bare 10-digit form is the digits as written (a foreign E.164): no "1" is invented for it
    ("12025550100", ["2025550100"], False),
    # a 10-digit German E.164 is not an NANP number missing its 1
    ("4930123456", ["14930123456"], False), ("4930123456", ["4930123456"], True),
    ("2020550100", ["12020550100"], False),                       # exchange 055: not NANP
    ("439991001", ["439991001"], True), ("439991001", ["1439991001"], False),
])
def test_tn_matches(tn: str, cands: list[str], ok: bool) -> None:
    assert pp.tn_matches(tn, cands) is ok


@pytest.mark.parametrize(("iat", "expected"), [
    (1000, None), (940, None), (939, Reason.STALE_IAT), (1005, None), (1006, Reason.FUTURE_IAT),
])
def test_iat_window(iat: int, expected: Reason | None) -> None:
    assert pp.check_iat(iat, 1000.0, 60, 5) is expected


def test_wrong_length_signature_fails() -> None:
    assert not pp.verify_es256(KEY.public_key(), b"x", b"\x00" * 63)
    assert not pp.verify_es256(KEY.public_key(), b"x", b"\x00" * 64)
