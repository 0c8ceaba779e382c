"""Rich Call Data PASSporTs (RFC 9795): claims, and the `rcdi` integrity of inline content.

An `rcd` PASSporT (ppt=rcd) carries `orig`, `dest`, `iat` and an `rcd` object (`nam`, and
optionally `jcd` an inline jCard, `jcl` a jCard URL, `icn` an icon URL, `crn` a call reason).
Its optional `rcdi` object maps JSON pointers (RFC 6901, evaluated in the `rcd` object) to a
digest of the content they reference, written as `<alg>-<base64 digest>` (sha256, sha384 or
sha512). Content inline in the PASSporT is hashed in its JSON Canonicalization Scheme form
(RFC 8785); content a pointer names by URL (an `icn` logo, a `jcl` jCard, a URI inside a
jCard) is only named here: sipguard does not fetch it (a stranger's URL), so such an entry is
counted as unchecked, never as verified, unless the operator sets `shaken.rcd.fetch` (then
verify.py downloads it with the x5u rules, SSRF guard and size bound, and checks it with
`content_matches`).

Rule 1: pure functions, nothing raises on hostile input: a claim that is not what RFC 9795
says is None (bad-claims), a pointer or digest that cannot be evaluated is a mismatch.
Rule 2: bounded: at most MAX_RCDI entries, pointers of at most MAX_POINTER_DEPTH steps, and
the canonical form of at most MAX_CANONICAL bytes (the token itself is at most 8 KiB).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from sipguard.shaken.passport import Passport, dest_tns, iat_of, tn_of

MAX_RCDI = 16
MAX_POINTER_DEPTH = 16
MAX_CANONICAL = 65536
DIGESTS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class RcdClaims:
    orig_tn: str
    dest_tns: tuple[str, ...]
    iat: int
    rcd: dict[str, Any]
    rcdi: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class RcdiCheck:
    """What `check_rcdi` found: entries whose inline content matched, did not match (or could
    not be evaluated), and entries naming content by URL (not fetched)."""

    matched: int = 0
    mismatched: int = 0
    unchecked: int = 0
    urls: tuple[tuple[str, str, bytes], ...] = ()   # the unchecked ones: (url, alg, digest)

    @property
    def ok(self) -> bool:
        return self.mismatched == 0


def rcd_claims(passport: Passport) -> RcdClaims | None:
    """The RFC 9795 claims, or None when a required one is missing or of the wrong type."""
    claims = passport.claims
    rcd = claims.get("rcd")
    rcdi = claims.get("rcdi")
    orig = tn_of(claims, "orig")
    dest = dest_tns(claims)
    iat = iat_of(claims)
    if (not isinstance(rcd, dict) or not isinstance(rcd.get("nam"), str) or orig is None or dest is None
            or iat is None or (rcdi is not None and not isinstance(rcdi, dict))):
        return None
    return RcdClaims(orig, dest, iat, rcd, rcdi)


def check_rcdi(rcd: dict[str, Any], rcdi: dict[str, Any] | None) -> RcdiCheck:
    """Check every `rcdi` entry against the `rcd` object (see the module docstring)."""
    if not rcdi:
        return RcdiCheck()
    if len(rcdi) > MAX_RCDI:
        return RcdiCheck(mismatched=len(rcdi))
    matched = mismatched = unchecked = 0
    urls: list[tuple[str, str, bytes]] = []
    for pointer, integrity in rcdi.items():
        target = json_pointer(rcd, pointer)
        parsed = parse_integrity(integrity)
        if target is _MISSING or parsed is None:
            mismatched += 1
        elif isinstance(target, str) and target.startswith(("https://", "http://")):
            unchecked += 1  # referenced by URL: not fetched here (verify.py may, shaken.rcd.fetch)
            urls.append((target, *parsed))
        else:
            alg, expected = parsed
            try:
                canonical = jcs(target)
            except ValueError:
                mismatched += 1
                continue
            if len(canonical) <= MAX_CANONICAL and DIGESTS[alg](canonical).digest() == expected:
                matched += 1
            else:
                mismatched += 1
    return RcdiCheck(matched, mismatched, unchecked, tuple(urls))


def content_matches(body: bytes, alg: str, digest: bytes) -> bool:
    """Whether downloaded content is what an `rcdi` entry names: its digest over the bytes as
    served (a logo), or, for JSON (a `jcl` jCard), over their RFC 8785 canonical form."""
    hasher = DIGESTS[alg]
    if hasher(body).digest() == digest:
        return True
    if body.lstrip()[:1] not in (b"{", b"["):
        return False
    try:
        return hasher(jcs(json.loads(body))).digest() == digest
    except (ValueError, RecursionError):
        return False


def integrity(value: Any, alg: str = "sha256") -> str:
    """The `rcdi` value of inline content (what a signer writes): `sha256-<base64>`."""
    return f"{alg}-" + base64.b64encode(DIGESTS[alg](jcs(value)).digest()).decode("ascii")


def parse_integrity(value: Any) -> tuple[str, bytes] | None:
    """`sha256-<base64>` -> ("sha256", digest bytes); None when it is not one."""
    if not isinstance(value, str) or len(value) > 200:
        return None
    alg, sep, encoded = value.partition("-")
    hasher = DIGESTS.get(alg)
    if not sep or hasher is None:
        return None
    try:
        digest = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return None
    return (alg, digest) if len(digest) == hasher().digest_size else None


def json_pointer(doc: Any, pointer: Any) -> Any:
    """RFC 6901: the value ``pointer`` names in ``doc``; ``_MISSING`` when there is none."""
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        return _MISSING
    if not pointer:
        return doc
    steps = pointer[1:].split("/")
    if len(steps) > MAX_POINTER_DEPTH:
        return _MISSING
    node = doc
    for raw in steps:
        step = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(step, _MISSING)
        elif isinstance(node, list):
            if not step.isdigit() or not step.isascii() or (len(step) > 1 and step[0] == "0"):
                return _MISSING
            index = int(step)
            node = node[index] if index < len(node) else _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


# -- RFC 8785 JSON Canonicalization Scheme ----------------------------------------------------

_STRING = json.JSONEncoder(ensure_ascii=False).encode


def jcs(value: Any) -> bytes:
    """The RFC 8785 canonical form of a JSON value, UTF-8: object members sorted by their
    names' UTF-16 code units, no whitespace, numbers as ECMAScript writes them, strings
    escaped as JSON.stringify does. ValueError for what JSON cannot hold (NaN, Infinity) or a
    value nested deeper than the PASSporT decoder allows."""
    out: list[str] = []
    _canon(value, out, 0)
    return "".join(out).encode("utf-8", "surrogatepass")


def _canon(value: Any, out: list[str], depth: int) -> None:
    if depth > 64:
        raise ValueError("nested too deeply")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int | float):
        out.append(es_number(value))
    elif isinstance(value, list):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _canon(item, out, depth + 1)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        for index, key in enumerate(sorted(value, key=_utf16)):
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _canon(value[key], out, depth + 1)
        out.append("}")
    else:
        raise ValueError(f"not a JSON value: {type(value).__name__}")


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _string(text: str) -> str:
    encoded = _STRING(text)
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        # a lone surrogate (json.loads keeps them): JSON.stringify writes it as \\udxxx
        encoded = "".join(f"\\u{ord(ch):04x}" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in encoded)
    return encoded


def es_number(value: int | float) -> str:
    """A JSON number as ECMAScript's Number.prototype.toString writes the double it denotes
    (RFC 8785 section 3.2.2.3)."""
    try:
        number = float(value)
    except OverflowError:
        raise ValueError("number out of the IEEE 754 double range") from None
    if math.isnan(number) or math.isinf(number):
        raise ValueError("NaN and Infinity are not JSON")
    if number == 0:
        return "0"
    if number < 0:
        return "-" + es_number(-number)
    mantissa, _, exp = repr(number).partition("e")
    whole, _, frac = mantissa.partition(".")
    point = len(whole) + (int(exp) if exp else 0)
    digits = whole + frac
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    head = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{sign}{abs(e)}"
