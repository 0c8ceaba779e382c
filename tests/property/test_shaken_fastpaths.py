"""The verifier's fast paths give exactly what the general code gives.

The parameters after an Identity token are read once per distinct text and kept; r||s -> DER
is built by hand instead of by encode_dss_signature; base64url decoding skips base64's wrappers;
bare-digit TNs skip normalisation; a token is encoded and translated once for its three
segments; the LRU's put and the certificate's validity window are written for the compiled
path; ES256 is handed a SHA-256 digest taken by hashlib (Prehashed). Each is compared with the general path, or the code it replaced, on generated input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import OrderedDict
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.shaken import identity
from sipguard.shaken import passport as pp
from sipguard.shaken.cache import CacheCounters, LruCache
from sipguard.shaken.certs import Credential, TnAuth
from sipguard.shaken.credentials import CertEntry, _judge
from sipguard.shaken.identity import _parse_general, parse_identity
from sipguard.shaken.reasons import Reason
from sipguard.shaken.verify import signature_key

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
token_st = st.text(alphabet=B64URL + ".=", min_size=1, max_size=60)
ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7f)
# half the time within what the regex takes, half anything ASCII (quotes, spaces, ; < > ...)
url_st = st.one_of(st.text(alphabet="abcxyz:/.?=&%-~#,!", min_size=0, max_size=40),
                   st.text(alphabet=ASCII, max_size=40))
word_st = st.one_of(st.text(alphabet="ESes256shakenDIV", min_size=0, max_size=8), st.text(alphabet=ASCII, max_size=10))
space_st = st.sampled_from(["", " ", "\t"])


@given(token_st, url_st, word_st, word_st, space_st, space_st)
def test_common_shape_parses_as_the_general_path(token: str, url: str, alg: str, ppt: str,
                                                 lead: str, trail: str) -> None:
    value = f"{lead}{token};info=<{url}>;alg={alg};ppt={ppt}{trail}"
    assert parse_identity(value) == _parse_general(value.strip())


@given(st.text(max_size=120))
def test_any_value_parses_as_the_general_path(value: str) -> None:
    if len(value) <= 8192 and value.strip():
        assert parse_identity(value) == _parse_general(value.strip())


def test_the_usual_header_reuses_its_parameters() -> None:
    value = "aGVhZA.cGF5bG9hZA.c2ln;info=<https://cr.example/x.pem>;alg=ES256;ppt=shaken"
    first, again = parse_identity(value), parse_identity("b3RoZXI.dG9rZW4.c2ln" + value[value.find(";"):])
    assert first == _parse_general(value)
    assert first is not None and again is not None and first.params is again.params  # kept, not read again
    assert again.token == "b3RoZXI.dG9rZW4.c2ln"


@given(st.binary(min_size=64, max_size=64))
def test_der_signature_matches_cryptography(sig: bytes) -> None:
    expected = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    assert pp._der_signature(sig) == expected


def _reference_b64url(segment: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None


@given(st.one_of(st.text(max_size=40), st.text(alphabet=B64URL + "=+/ ", max_size=40),
                 st.binary(max_size=30).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="))))
def test_b64url_decode_matches_base64(segment: str) -> None:
    assert pp.b64url_decode(segment) == _reference_b64url(segment)


def _reference_json_object(segment: str) -> dict[str, Any] | None:
    raw = _reference_b64url(segment)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


json_st = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                    max_size=3), max_leaves=8)


@given(st.one_of(json_st.map(lambda v: json.dumps(v).encode()),
                 json_st.map(lambda v: json.dumps(v).encode("utf-16")), st.binary(max_size=20)))
def test_json_object_matches_json_loads(raw: bytes) -> None:
    segment = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert pp._json_object(segment) == _reference_json_object(segment)


objects_st = st.dictionaries(st.text(max_size=4), json_st, max_size=3).map(lambda v: json.dumps(v))
tail_st = st.sampled_from(["", " ", "\r\n\t ", "x", " 1", "}", "{}", "\x00", " \x0b", "\u00a0", ",", " ]"])


@given(st.one_of(st.tuples(objects_st, tail_st).map(lambda p: (p[0] + p[1]).encode()),
                 st.tuples(objects_st, tail_st).map(lambda p: (p[0][:-1] + p[1]).encode()),  # cut short
                 st.tuples(objects_st, st.integers(1, 30)).map(lambda p: (p[0][:p[1]] + "}").encode()),
                 st.sampled_from([b'{"a":}', b'{"a":1,}', b'{"a" 1}', b'{"a":[1,]}', b'{"a":{"b":}}']),
                 st.binary(max_size=20).map(lambda b: b"{" + b),
                 st.text(max_size=12).map(lambda t: ("{" + t).encode("utf-8", "surrogatepass"))))
def test_json_object_starting_with_a_brace_matches_json_loads(raw: bytes) -> None:
    """The objects the decoder's own scanner reads (a claims segment starts with ``{``): trailing
    whitespace, extra data, truncation, bad UTF-8 and lone surrogates as json.loads has them."""
    segment = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert pp._json_object(segment) == _reference_json_object(segment)


def _reference_tn(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    digits = value.translate(str.maketrans("", "", "+-.() "))
    return digits if pp._TN_RE.fullmatch(digits) else None


@given(st.one_of(st.text(max_size=40), st.text(alphabet="0123456789", max_size=40),
                 st.text(alphabet="0123456789\u0661\u0662+-() ", max_size=40), st.integers()))
def test_normalize_tn_matches_the_general_rule(value: Any) -> None:
    assert pp.normalize_tn(value) == _reference_tn(value)


# -- decode: the whole token encoded and translated once (session 12) -------------------------
def _decode_before(token: str) -> pp.Passport | None:
    """passport.decode as main at 46530aa defined it, without its header cache: split, each
    segment base64url-decoded on its own, the JSON ones read by json.loads."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    head, payload, sig = parts
    header = _reference_json_object(head)
    claims = _reference_json_object(payload)
    signature = _reference_b64url(sig)
    if header is None or claims is None or not signature:
        return None
    return pp.Passport(header, claims, token[: len(head) + 1 + len(payload)].encode("ascii"), signature)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


HEADER = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": "https://cr.example/x.pem"}
CLAIMS = {"attest": "A", "dest": {"tn": ["13035550100"]}, "iat": 1790000000, "orig": {"tn": "12025550100"},
          "origid": "123e4567-e89b-12d3-a456-426614174000"}
# JSON segments as they come: well-formed, and the hostile shapes (duplicate keys, deep nesting
# past the recursion limit, other types, other encodings, NUL, lone surrogates, trailing data)
json_segment_st = st.one_of(
    st.just(json.dumps(CLAIMS).encode()),
    st.just(json.dumps(HEADER, separators=(",", ":")).encode()),
    objects_st.map(str.encode),
    json_st.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b'{"iat":1,"iat":"x"}', b'{"attest":"A","attest":"C"}', b"[" * 3000 + b"]" * 3000,
                     b'{"a":' * 3000 + b"1" + b"}" * 3000, b"{}", b"[]", b'"x"', b"1", b"null",
                     b'{"a":"\\ud800"}', b'{"\\u00e9":1}', '{"é":"ü"}'.encode(), b"{\x00}", b"{}\x00",
                     b'{"a":1} ', b'{"a":1}x', b'{"a":1}{}', b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00"]),
    json_st.map(lambda v: json.dumps(v).encode("utf-16")),
    st.binary(max_size=40))
segment_st = st.one_of(json_segment_st.map(_b64), st.binary(min_size=0, max_size=80).map(_b64),
                       st.text(alphabet=B64URL + "=+/", max_size=60))


def _mutate(token: str, where: int, what: str) -> str:
    where %= len(token) + 1
    return token[:where] + what + token[where:]


# what can land inside a token: padding, '=' in the middle, the standard alphabet, separators,
# spaces, non-ASCII, the empty string (no change)
insert_st = st.sampled_from(["", "=", "==", "===", "+", "/", ".", "..", " ", "\t", "é", "\u0661", "\x00", "A", "-_"])


@given(segment_st, segment_st, segment_st, st.lists(st.tuples(st.integers(0, 10_000), insert_st), max_size=3))
def test_decode_matches_the_per_segment_definition(head: str, payload: str, sig: str,
                                                   edits: list[tuple[int, str]]) -> None:
    token = f"{head}.{payload}.{sig}"
    for where, what in edits:
        token = _mutate(token, where, what)
    assert pp.decode(token) == _decode_before(token)
    assert pp.decode(token) == _decode_before(token)  # again: now through the header cache


@given(st.binary(min_size=64, max_size=64), st.sampled_from(["", "=", "==", "===", "A", "AA", "A=", "=A"]),
       st.sampled_from([json.dumps(HEADER), '{"alg":"ES256","alg":"none"}', '{"x5u":1}', "[]"]))
def test_decode_of_signed_shaken_tokens(sig: bytes, tail: str, header: str) -> None:
    """Real shapes: the same header, claims, a 64-byte signature with padding or junk after it."""
    token = f"{_b64(header.encode())}.{_b64(json.dumps(CLAIMS).encode())}.{_b64(sig)}{tail}"
    assert pp.decode(token) == _decode_before(token)


@given(st.text(max_size=60), st.text(alphabet=B64URL + ".=", max_size=600))
def test_decode_of_any_text(text: str, ascii_text: str) -> None:
    for token in (text, ascii_text, "." + ascii_text, ascii_text * 5):
        assert pp.decode(token) == _decode_before(token)


def test_decode_of_a_huge_token() -> None:
    payload = _b64(b'{"a":"' + b"x" * 200_000 + b'"}')
    deep = _b64(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    sig = _b64(bytes(range(64)))
    for token in (f"{_b64(json.dumps(HEADER).encode())}.{payload}.{sig}",
                  f"{_b64(json.dumps(HEADER).encode())}.{deep}.{sig}", f"{deep}.{payload}.{sig}"):
        assert pp.decode(token) == _decode_before(token)


def test_header_cache_keys_by_what_decodes() -> None:
    """'-' and '+' (and '_' and '/') give the same bytes to the decoder: one cached header for
    both is right; a token with either decodes as the per-segment definition says."""
    head = _b64(json.dumps({"alg": "ES256", "x5u": "https://a.example/~~~?"}).encode())
    assert "-" in head or "_" in head
    rest = f".{_b64(json.dumps(CLAIMS).encode())}.{_b64(bytes(range(1, 65)))}"
    for token in (head + rest, head.replace("-", "+").replace("_", "/") + rest, head + rest):
        assert pp.decode(token) == _decode_before(token)
        assert pp.decode(token) is not None


@given(st.binary(min_size=64, max_size=64), st.sampled_from([0, 1, 2, 3]), st.integers(0, 0xFF))
def test_der_signature_with_leading_zero_bytes(sig: bytes, zeros: int, top: int) -> None:
    """r or s starting with 0 bytes (rare in random input): the general encoding."""
    raw = bytearray(sig)
    if zeros & 1:
        raw[0:2] = bytes((0, top))
    if zeros & 2:
        raw[32:34] = bytes((0, top))
    expected = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    assert pp._der_signature(bytes(raw)) == expected


@given(st.binary(min_size=0, max_size=80))
def test_signature_key_is_blake2b_of_r(sig: bytes) -> None:
    assert signature_key(sig) == hashlib.blake2b(sig[:32], digest_size=16).hexdigest()
    assert signature_key(sig) == hashlib.blake2b(sig[:32], digest_size=16).hexdigest()  # the template unchanged


# -- the caches and the certificate's per-call checks ----------------------------------------
class _LruBefore:
    """LruCache.put/get/peek/pop as main at 46530aa wrote them."""

    def __init__(self, maxsize: int) -> None:
        self.data: OrderedDict[int, int] = OrderedDict()
        self.maxsize = max(1, maxsize)
        self.counters = CacheCounters()

    def get(self, key: int) -> int | None:
        value = self.data.get(key)
        if value is None:
            self.counters.misses += 1
            return None
        self.counters.hits += 1
        self.data.move_to_end(key)
        return value

    def put(self, key: int, value: int) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.maxsize:
            self.data.popitem(last=False)
            self.counters.evictions += 1


@given(st.integers(0, 4), st.lists(st.tuples(st.sampled_from(["get", "put", "peek", "pop"]), st.integers(0, 6),
                                             st.integers(0, 9)), max_size=60))
def test_lru_cache_as_before(maxsize: int, ops: list[tuple[str, int, int]]) -> None:
    cache: LruCache[int, int] = LruCache(maxsize)
    before = _LruBefore(maxsize)
    for op, key, value in ops:
        if op == "get":
            assert cache.get(key) == before.get(key)
        elif op == "put":
            cache.put(key, value)
            before.put(key, value)
        elif op == "peek":
            assert cache.peek(key) == before.data.get(key)
        else:
            cache.pop(key)
            before.data.pop(key, None)
        assert list(cache._data.items()) == list(before.data.items())
        assert cache.counters == before.counters


times_st = st.one_of(st.integers(-3, 3).map(float), st.floats(-1e10, 1e10, allow_nan=False))


@given(times_st, times_st, times_st, times_st, st.sampled_from([None, Reason.CERT_REVOKED]))
def test_judge_reads_the_validity_window_as_check_time(not_before: float, not_after: float, iat: float, now: float,
                                                       crl: Reason | None) -> None:
    """_judge's time and revocation reasons: Credential.check_time's, then the CRL's."""
    cred = Credential(None, "1234", TnAuth(("1234",), (), ()), (), not_before, not_after)  # type: ignore[arg-type]
    entry = CertEntry(cred, None, 0.0, crl_reason=crl)
    passport = pp.Passport({}, {}, b"x", b"y")
    expected = [r for r in (cred.check_time(iat, now), crl) if r is not None]
    assert _judge(entry, cred, passport, iat, None, now, cred) == expected


# -- kept readings under hostile input: the Identity parameters and the JOSE header (session 14) --
@given(st.lists(st.tuples(token_st, st.one_of(url_st, st.text(max_size=700)), space_st), min_size=1, max_size=30))
def test_kept_parameters_give_what_the_general_path_gives(values: list[tuple[str, str, str]]) -> None:
    """Each value parsed twice (the second time from what the first kept), and the same
    parameters after other tokens: always the general path's answer."""
    for token, tail, space in values:
        for value in (f"{token}{space};{tail}", f"{token};{tail}", f"{space}{token};info=<{tail}>;ppt=shaken"):
            assert parse_identity(value) == _parse_general(value.strip())
            assert parse_identity(value) == _parse_general(value.strip())
            assert parse_identity("QQ.QQ.QQ" + value[len(token):]) == _parse_general(("QQ.QQ.QQ" + value[len(token):]).strip())


def test_a_flood_of_distinct_parameters_stays_bounded() -> None:
    for i in range(5 * identity._PARAMS_KEPT):
        assert parse_identity(f"QQ.QQ.QQ;info=<https://cr{i}.example/x.pem>;alg=ES256;ppt=shaken") is not None
        assert len(identity._PARAMS) <= identity._PARAMS_KEPT
    value = "QQ.QQ.QQ;info=<https://cr.example/x.pem>;alg=ES256;ppt=shaken"
    assert parse_identity(value) == _parse_general(value)  # the usual one is read again after the flood


def test_oversized_malformed_and_foreign_parameters_are_not_kept() -> None:
    identity._PARAMS.clear()
    huge = "QQ.QQ.QQ;info=<https://cr.example/" + "x" * 2000 + ">;ppt=shaken"
    assert parse_identity(huge) == _parse_general(huge)
    for bad in ("QQ.QQ.QQ;info=https://x", "QQ.QQ.QQ;info=<https://x", 'QQ.QQ.QQ;ppt="shaken', "QQ.QQ.QQ;bad name=1",
                "QQ.QQ.QQ;info=<\u00e9>;ppt=\u0161aken", "QQ.QQ.QQ;;;", "QQ.QQ.QQ;", "QQ.QQ.QQ"):
        assert parse_identity(bad) == _parse_general(bad)
    assert all(len(key) <= identity._PARAMS_KEY_LEN for key in identity._PARAMS)
    assert not any(key.startswith("info=<https://cr.example/x") for key in identity._PARAMS)
    for foreign in ("Q\u00e9.QQ.QQ;ppt=shaken", "QQ QQ.QQ;ppt=shaken", "Q+Q.QQ.QQ;ppt=shaken", "\x00;ppt=shaken",
                    ";ppt=shaken", " ;ppt=shaken", "QQ.QQ.QQ\u0661;ppt=shaken"):
        assert parse_identity(foreign) is None
        assert _parse_general(foreign.strip()) is None
    assert parse_identity("x" * 8193) is None and parse_identity("") is None


def test_a_flood_of_distinct_jose_headers_stays_bounded() -> None:
    """One header per token, each distinct: the kept headers stay at most 1024; an oversized
    header, bad base64 and JSON nesting past the recursion limit decode as the definition says
    and are not kept."""
    rest = f".{_b64(json.dumps(CLAIMS).encode())}.{_b64(bytes(range(1, 65)))}"
    for i in range(3000):
        head = _b64(json.dumps(dict(HEADER, x5u=f"https://cr{i}.example/x.pem")).encode())
        assert pp.decode(head + rest) is not None
        assert len(pp._HEADERS) <= 1024
    pp._HEADERS.clear()
    big = _b64(json.dumps(dict(HEADER, x5u="https://cr.example/" + "x" * 600)).encode())
    deep = _b64(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    for head in (big, deep, "!!!!", "QUJD", _b64(b"[1]"), "\u00e9" + big):
        assert pp.decode(head + rest) == _decode_before(head + rest)
    assert list(pp._HEADERS) == []


# -- session 15: ES256 over a digest taken by hashlib; the credential's window compiled --------
_P256 = ec.generate_private_key(ec.SECP256R1())
_P256_OTHER = ec.generate_private_key(ec.SECP256R1())
_P384 = ec.generate_private_key(ec.SECP384R1())
_N256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256's group order


def _verify_es256_before(key: Any, signing_input: bytes, signature: bytes) -> bool:
    """verify_es256 as main 17c5e09 had it: the message handed to cryptography to hash."""
    if len(signature) != 64:
        return False
    der = pp._der_signature(signature)
    try:
        key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _raw(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=600), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))),
       st.sampled_from(["as signed", "other message", "s -> n - s", "r and s swapped", "byte flipped", "r zero",
                        "s zero", "all zero", "all ff", "random", "short", "long", "empty", "other key"]),
       st.integers(0, 63), st.binary(min_size=64, max_size=64))
def test_verify_es256_answers_as_before(message: bytes, how: str, index: int, noise: bytes) -> None:
    """The same answer as cryptography hashing the message itself, for valid signatures, their
    malleable twin (r, n - s), tampered, degenerate and mis-sized ones, and another key's."""
    sig = _raw(_P256.sign(message, ec.ECDSA(hashes.SHA256())))
    r, s = sig[:32], sig[32:]
    data = message
    if how == "other message":
        data = message + b"x"
    elif how == "s -> n - s":
        sig = r + (_N256 - int.from_bytes(s, "big")).to_bytes(32, "big")
    elif how == "r and s swapped":
        sig = s + r
    elif how == "byte flipped":
        sig = sig[:index] + bytes((sig[index] ^ (1 + noise[0] % 255),)) + sig[index + 1:]
    elif how == "r zero":
        sig = bytes(32) + s
    elif how == "s zero":
        sig = r + bytes(32)
    elif how == "all zero":
        sig = bytes(64)
    elif how == "all ff":
        sig = b"\xff" * 64
    elif how == "random":
        sig = noise
    elif how == "short":
        sig = sig[:index]
    elif how == "long":
        sig = sig + noise[:1 + index % 8]
    elif how == "empty":
        sig = b""
    elif how == "other key":
        sig = _raw(_P256_OTHER.sign(message, ec.ECDSA(hashes.SHA256())))
    for key in (_P256.public_key(), _P256_OTHER.public_key(), _P384.public_key()):
        assert pp.verify_es256(key, data, sig) is _verify_es256_before(key, data, sig)
    if how in ("as signed", "s -> n - s"):
        assert pp.verify_es256(_P256.public_key(), data, sig)


def _check_time_before(not_before: float, not_after: float, iat: float, now: float) -> Reason | None:
    """Credential.check_time as main 17c5e09 had it (now passport.check_window)."""
    lo, hi = not_before, not_after
    if not (lo <= iat <= hi and lo <= now <= hi):
        return Reason.CERT_EXPIRED
    return None


window_st = st.one_of(times_st, st.floats(), st.sampled_from([0.0, -0.0, float("inf"), float("-inf"), float("nan")]))


@given(window_st, window_st, window_st, window_st)
def test_check_window_is_the_old_check_time(not_before: float, not_after: float, iat: float, now: float) -> None:
    cred = Credential(None, "1234", TnAuth(("1234",), (), ()), (), not_before, not_after)  # type: ignore[arg-type]
    expected = _check_time_before(not_before, not_after, iat, now)
    assert pp.check_window(not_before, not_after, iat, now) is expected
    assert cred.check_time(iat, now) is expected
    for bound in (not_before, not_after):  # both ends inclusive
        assert pp.check_window(not_before, not_after, bound, bound) is _check_time_before(not_before, not_after, bound,
                                                                                          bound)
