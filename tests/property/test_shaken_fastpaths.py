"""The verifier's fast paths give exactly what the general code gives.

Identity values in the common shape take one regex instead of the parameter scan; r||s -> DER
is built by hand instead of by encode_dss_signature; base64url decoding skips base64's wrappers;
bare-digit TNs skip normalisation. Each is compared with the general path on generated input.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from sipguard.shaken import passport as pp
from sipguard.shaken.identity import _COMMON_RE, _parse_general, parse_identity

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


def test_the_usual_header_takes_the_regex() -> None:
    value = "aGVhZA.cGF5bG9hZA.c2ln;info=<https://cr.example/x.pem>;alg=ES256;ppt=shaken"
    assert _COMMON_RE.fullmatch(value) is not None
    assert parse_identity(value) == _parse_general(value)


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
