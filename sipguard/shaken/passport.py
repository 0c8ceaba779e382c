"""PASSporT (RFC 8225) decoding, SHAKEN (RFC 8588) and div (RFC 8946) claim checks, ES256 verify.

Rule 1: the signature is checked over the bytes received (`header.payload` exactly as they
arrived), never over a re-serialised PASSporT: OpenSIPS rebuilds the JSON and rejects any
signer that orders keys differently or adds a claim.
Rule 2: only ES256 with a P-256 key. The algorithm comes from our own policy, never from the
token, so `none`/HS256/RS256 cannot be smuggled in (the classic JWT algorithm confusion).
Rule 3: pure functions; `decode` returns None rather than raising on garbage.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from sipguard.numbers import nanp_region
from sipguard.shaken.reasons import Reason

# ES256's ECDSA over a SHA-256 digest we take ourselves (``verify_es256``); fixed here, never
# read from a token
_ECDSA_SHA256_DIGEST: Final = ec.ECDSA(Prehashed(hashes.SHA256()))
_SHA256: Final = hashlib.sha256
# Final: compiled, a read of these is a C static instead of a module dict look-up
_TN_SEPARATORS: Final = str.maketrans("", "", "+-.() ")
_TN_RE: Final = re.compile(r"[0-9*#]{1,32}")
ATTEST_LEVELS: Final = ("A", "B", "C")
# JOSE header segment (in the standard base64 alphabet, as ``decode`` cuts it) -> decoded dict.
# The same few headers repeat per signer; treat the cached dicts as read-only.
_HEADERS: Final[dict[bytes, dict[str, Any]]] = {}
_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")
_JSON: Final = json.JSONDecoder()
# JSONDecoder.decode minus its two Python frames: the decoder's own C scanner (a value at 0,
# then nothing but JSON whitespace), as decode runs it
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = getattr(_JSON, "scan_once")  # noqa: B009 - not in the stubs
_JSON_SPACE: Final = re.compile(r"[ \t\n\r]*")
# by a segment's length mod 4: the padding b64url_decode gives it (``"=" * (-len % 4)``)
_PADS: Final = (b"", b"===", b"==", b"=")


@dataclass(frozen=True, slots=True)
class Passport:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes  # ASCII of "header.payload" as received
    signature: bytes  # raw JWS signature (r || s for ES256)

    def __init__(self, header: dict[str, Any], claims: dict[str, Any], signing_input: bytes,
                 signature: bytes) -> None:
        # written out (dataclass keeps it): compiled, where the generated one runs interpreted
        object.__setattr__(self, "header", header)
        object.__setattr__(self, "claims", claims)
        object.__setattr__(self, "signing_input", signing_input)
        object.__setattr__(self, "signature", signature)


@dataclass(frozen=True, slots=True)
class ShakenClaims:
    attest: str
    orig_tn: str
    dest_tns: tuple[str, ...]
    iat: int
    origid: str

    def __init__(self, attest: str, orig_tn: str, dest_tns: tuple[str, ...], iat: int, origid: str) -> None:
        # written out, as Passport's
        object.__setattr__(self, "attest", attest)
        object.__setattr__(self, "orig_tn", orig_tn)
        object.__setattr__(self, "dest_tns", dest_tns)
        object.__setattr__(self, "iat", iat)
        object.__setattr__(self, "origid", origid)


@dataclass(frozen=True, slots=True)
class DivClaims:
    orig_tn: str
    dest_tns: tuple[str, ...]
    div_tn: str
    iat: int


def b64url_decode(segment: str) -> bytes | None:
    """What base64.urlsafe_b64decode does (same lenient decoding), minus two Python-level calls:
    the decoding of one segment, the definition ``decode`` is tested against."""
    if not segment.isascii():
        return None  # a non-ASCII segment does not decode
    return _a2b(segment.encode("ascii").translate(_URLSAFE) + _PADS[len(segment) % 4])


def _a2b(padded: bytes) -> bytes | None:
    """A segment already translated to the standard alphabet and padded, decoded."""
    try:
        return binascii.a2b_base64(padded)
    except ValueError:  # binascii.Error is a ValueError
        return None


def decode(token: str) -> Passport | None:
    """Split and decode a full-form PASSporT; None when it is not one.

    Each of the three segments is decoded as ``b64url_decode`` would decode it, the JSON ones
    as ``_json_object``; the token is encoded and translated to the standard alphabet once
    and the segments cut from that, the signing input being the same ASCII bytes.
    (tests/property/test_shaken_fastpaths.py compares it with the per-segment definition.)"""
    # exactly three non-empty parts, as token.split(".") would give them
    first = token.find(".")
    second = token.find(".", first + 1)
    size = len(token)
    if first <= 0 or second <= first + 1 or second >= size - 1 or token.find(".", second + 1) >= 0:
        return None
    if not token.isascii():
        return None  # a non-ASCII segment does not decode
    ascii_token = token.encode("ascii")
    std = ascii_token.translate(_URLSAFE)
    head = std[:first]
    header = _HEADERS.get(head)
    if header is None:
        raw_header = _a2b(head + _PADS[first % 4])
        header = _json_of(raw_header) if raw_header is not None else None
        if header is not None and first < 512:
            if len(_HEADERS) >= 1024:
                _HEADERS.clear()  # a signer has a handful of distinct headers; flooding resets
            _HEADERS[head] = header
    raw_claims = _a2b(std[first + 1:second] + _PADS[(second - first - 1) % 4])
    claims = _json_of(raw_claims) if raw_claims is not None else None
    signature = _a2b(std[second + 1:] + _PADS[(size - second - 1) % 4])
    if header is None or claims is None or not signature:
        return None
    return Passport(header, claims, ascii_token[:second], signature)


def _json_object(segment: str) -> dict[str, Any] | None:
    """The JSON object a base64url segment holds; None when it holds anything else (the
    per-segment definition ``decode`` is tested against)."""
    raw = b64url_decode(segment)
    return _json_of(raw) if raw is not None else None


def _json_of(raw: bytes) -> dict[str, Any] | None:
    """The JSON object ``raw`` is (what json.loads reads from it); None when it is not one."""
    try:
        # json.loads(bytes) picks the codec from the first bytes; an object starting `{x`
        # (x not NUL) is UTF-8 to it, so decode that case directly (same result, less work)
        if len(raw) > 1 and raw[0] == 0x7B and raw[1] != 0:
            text = raw.decode("utf-8", "surrogatepass")
            value, end = _SCAN(text, 0)
            if end != len(text):
                space = _JSON_SPACE.match(text, end)
                if space is None or space.end() != len(text):
                    return None   # extra data: what decode refuses
        else:
            value = json.loads(raw)
    except (ValueError, RecursionError, StopIteration):   # StopIteration: no value (decode's "Expecting value")
        return None
    return value if isinstance(value, dict) else None


def check_header(passport: Passport, ppt: str, info: str | None) -> list[Reason]:
    """JOSE header checks (RFC 8225 section 3, RFC 8588 section 5), most fundamental first."""
    header = passport.header
    reasons: list[Reason] = []
    if header.get("typ", "passport") != "passport":
        reasons.append(Reason.MALFORMED_IDENTITY)
    if header.get("alg") != "ES256":
        reasons.append(Reason.BAD_ALG)
    if header.get("ppt") != ppt:
        reasons.append(Reason.BAD_PPT)
    x5u = header.get("x5u")
    if not isinstance(x5u, str) or not x5u or (info is not None and x5u != info):
        reasons.append(Reason.X5U_MISMATCH)
    return reasons


def normalize_tn(value: Any) -> str | None:
    """A PASSporT TN as bare digits: `+1 (202) 555-0100` -> `12025550100`; None if not a TN."""
    if not isinstance(value, str):
        return None
    if value.isdigit() and value.isascii() and len(value) <= 32:
        return value  # already bare digits (the usual case): what the general path returns
    digits = value.translate(_TN_SEPARATORS)
    return digits if _TN_RE.fullmatch(digits) else None


def tn_of(claims: dict[str, Any], name: str) -> str | None:
    obj = claims.get(name)
    return normalize_tn(obj.get("tn")) if isinstance(obj, dict) else None


def dest_tns(claims: dict[str, Any]) -> tuple[str, ...] | None:
    dest = claims.get("dest")
    if not isinstance(dest, dict):
        return None
    tns = dest.get("tn")
    if isinstance(tns, str):
        tns = [tns]  # seen in the wild; RFC 8225 says array, the meaning is unambiguous
    if not isinstance(tns, list) or not tns:
        return None
    out = []
    for tn in tns:
        norm = normalize_tn(tn)
        if norm is None:
            return None
        out.append(norm)
    return tuple(out)


def iat_of(claims: dict[str, Any]) -> int | None:
    iat = claims.get("iat")
    return iat if isinstance(iat, int) and not isinstance(iat, bool) else None


def shaken_claims(passport: Passport) -> ShakenClaims | None:
    """The RFC 8588 claims, or None when any is missing or of the wrong type (bad-claims)."""
    claims = passport.claims
    attest = claims.get("attest")
    origid = claims.get("origid")
    if attest not in ATTEST_LEVELS or not isinstance(origid, str) or not origid:
        return None
    iat = claims.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool):
        return None
    orig = tn_of(claims, "orig")
    if orig is None:
        return None
    dest = dest_tns(claims)
    if dest is None:
        return None
    return ShakenClaims(attest, orig, dest, iat, origid)


def div_claims(passport: Passport) -> DivClaims | None:
    """The RFC 8946 claims (orig, dest, div.tn, iat), or None when malformed."""
    claims = passport.claims
    div = claims.get("div")
    div_tn = normalize_tn(div.get("tn")) if isinstance(div, dict) else None
    orig = tn_of(claims, "orig")
    dest = dest_tns(claims)
    iat = iat_of(claims)
    if div_tn is None or orig is None or dest is None or iat is None:
        return None
    return DivClaims(orig_tn=orig, dest_tns=dest, div_tn=div_tn, iat=iat)


def check_iat(iat: int, now: float, max_age: int, max_future: int) -> Reason | None:
    """Freshness window [now - max_age, now + max_future], both ends inclusive."""
    if iat < now - max_age:
        return Reason.STALE_IAT
    if iat > now + max_future:
        return Reason.FUTURE_IAT
    return None


def check_window(not_before: float, not_after: float, iat: float, now: float) -> Reason | None:
    """A credential's validity for a PASSporT: both ``iat`` and ``now`` inside [not_before,
    not_after], both ends inclusive (``certs.Credential.check_time``; here, compiled, so that
    the verifier's per-call check is no interpreted call)."""
    if not (not_before <= iat <= not_after and not_before <= now <= not_after):
        return Reason.CERT_EXPIRED
    return None


def tn_matches(tn: str, forms: tuple[str, ...] | list[str]) -> bool:
    """Whether a PASSporT TN (canonical digits, ``normalize_tn``) names a number of the call,
    given that number's canonical forms (``sipguard.numbers.TN.forms``: E.164 digits, and the
    digits as written when the header had no '+').

    ATIS-1000074 TNs are E.164 digits, so a TN is compared as it is; the one tolerance is a
    10-digit TN that is an NANP number (area code in service, exchange not starting with 0/1)
    written without its 1, read as ``1`` + TN. A 10-digit E.164 number of another country
    (``4930123456``) is not one: it never matches ``+14930123456``."""
    if tn in forms:
        return True
    return len(tn) == 10 and "1" + tn in forms and tn[3] not in "01" and nanp_region(tn[:3]) is not None


def verify_es256(key: ec.EllipticCurvePublicKey, signing_input: bytes, signature: bytes) -> bool:
    """JWS ES256: the signature is r || s, 32 bytes each (RFC 7518 section 3.4), over SHA-256 of
    ``signing_input`` exactly as given. The digest is taken here (hashlib) and handed over as
    ``Prehashed(SHA256())``: the same check as ``key.verify(der, signing_input,
    ECDSA(SHA256()))``, without cryptography looking the hash up and building a hasher per call
    (its verify checks the digest's length against SHA-256's)."""
    if len(signature) != 64:
        return False
    der = _der_signature(signature)
    try:
        key.verify(der, _SHA256(signing_input).digest(), _ECDSA_SHA256_DIGEST)
    except InvalidSignature:
        return False
    return True


def _der_int(value: bytes) -> bytes:
    value = value.lstrip(b"\0") or b"\0"
    if value[0] & 0x80:
        value = b"\0" + value  # DER INTEGER is signed: keep it positive
    return b"\x02" + bytes((len(value),)) + value


def _der_signature(signature: bytes) -> bytes:
    """r || s -> DER Ecdsa-Sig-Value, byte for byte what encode_dss_signature(r, s) returns
    (at most 70 content bytes: the short length form always fits)."""
    r0 = signature[0]
    s0 = signature[32]
    if r0 and s0:
        # neither half starts with a zero byte (all but ~1 in 128 signatures): each INTEGER is
        # its 32 bytes, after a 0 byte when the top bit is set; the heads are precomputed
        return _DER_HEAD[r0 >> 7][s0 >> 7] + signature[:32] + _DER_MID[s0 >> 7] + signature[32:]
    body = _der_int(signature[:32]) + _der_int(signature[32:])
    return b"\x30" + bytes((len(body),)) + body


# _der_signature's fixed layouts: [r's top bit][s's top bit] -> SEQUENCE and r's INTEGER heads;
# [s's top bit] -> s's INTEGER head
_DER_MID: Final = (b"\x02\x20", b"\x02\x21\x00")
_DER_HEAD: Final = tuple(tuple(bytes((0x30, 68 + high_r + high_s, 0x02, 32 + high_r)) + b"\0" * high_r
                        for high_s in (0, 1)) for high_r in (0, 1))
