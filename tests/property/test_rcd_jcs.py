"""rcdi (RFC 9795) over RFC 8785 canonical JSON: the digest does not depend on how the signer
wrote the JSON, changes with any change of the content, and the canonical form is RFC 8785's."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.shaken.rcd import check_rcdi, es_number, integrity, jcs, json_pointer, parse_integrity

SETTINGS = settings(max_examples=300, deadline=None)

scalars = st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                      st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)


def reserialise(value: Any, seed: int) -> Any:
    """The same JSON as another signer might write it: keys shuffled, whitespace, \\u escapes."""
    rng = random.Random(seed)

    def shuffle(v: Any) -> Any:
        if isinstance(v, dict):
            items = list(v.items())
            rng.shuffle(items)
            return {k: shuffle(x) for k, x in items}
        if isinstance(v, list):
            return [shuffle(x) for x in v]
        return v
    text = json.dumps(shuffle(value), indent=rng.choice([None, 1, 4]), ensure_ascii=rng.random() < 0.5)
    return json.loads(text)


@SETTINGS
@given(values, st.integers())
def test_canonical_form_ignores_how_the_json_was_written(value: Any, seed: int) -> None:
    assert jcs(reserialise(value, seed)) == jcs(value)
    assert integrity(reserialise(value, seed)) == integrity(value)


@SETTINGS
@given(values)
def test_canonical_form_is_json_of_the_same_value(value: Any) -> None:
    """Read back (numbers as the doubles JCS means them) it is the same value."""
    text = jcs(value).decode("utf-8")
    assert json.loads(text, parse_int=float) == as_doubles(value)
    assert jcs(json.loads(text)) == jcs(value)  # idempotent


def as_doubles(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [as_doubles(v) for v in value]
    return {k: as_doubles(v) for k, v in value.items()}


@SETTINGS
@given(st.dictionaries(st.sampled_from(["nam", "jcd", "crn", "a/b", "t~x"]), values, min_size=1), st.data())
def test_rcdi_matches_its_content_and_nothing_else(rcd: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(rcd)))
    pointer = "/" + key.replace("~", "~0").replace("/", "~1")
    target = rcd[key]
    if isinstance(target, str) and target.startswith(("http://", "https://")):
        return
    digest = integrity(target, data.draw(st.sampled_from(["sha256", "sha384", "sha512"])))
    assert check_rcdi(rcd, {pointer: digest}).matched == 1
    changed = data.draw(values)
    if jcs(changed) != jcs(target):
        assert check_rcdi({**rcd, key: changed}, {pointer: digest}).mismatched == 1


@SETTINGS
@given(st.text(max_size=40))
def test_integrity_parser_is_total(text: str) -> None:
    parsed = parse_integrity(text)
    assert parsed is None or parsed[0] in ("sha256", "sha384", "sha512")


# RFC 8785 Appendix B: IEEE 754 doubles as ECMAScript writes them
@pytest.mark.parametrize(("number", "text"), [
    (0.0, "0"), (-0.0, "0"), (5e-324, "5e-324"), (-5e-324, "-5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"), (9007199254740992.0, "9007199254740992"),
    (-9007199254740992.0, "-9007199254740992"), (295147905179352830000.0, "295147905179352830000"),
    (9.999999999999997e22, "9.999999999999997e+22"), (1e23, "1e+23"), (1e21, "1e+21"),
    (999999999999999700000.0, "999999999999999700000"), (0.000001, "0.000001"), (1e-7, "1e-7"),
    (4.50, "4.5"), (2e-3, "0.002"), (0.000008, "0.000008"), (1e-27, "1e-27"), (100, "100"), (-1, "-1"),
])
def test_es_number(number: float, text: str) -> None:
    assert es_number(number) == text


def test_rfc8785_key_order_is_utf16() -> None:
    """RFC 8785 section 3.2.3's example: a non-BMP key sorts by its UTF-16 surrogates, before
    U+FB33 (code point order would put it last)."""
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    canonical = jcs(dict.fromkeys(keys, 0)).decode("utf-8")
    order = list(json.loads(canonical))
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert jcs({"b": [1, "\u2028\n"], "a": True}) == '{"a":true,"b":[1,"\u2028\\n"]}'.encode()


def test_json_pointer() -> None:
    doc = {"a/b": {"c~d": [10, 20]}, "": 1}
    assert json_pointer(doc, "/a~1b/c~0d/1") == 20
    assert json_pointer(doc, "/") == 1 and json_pointer(doc, "") == doc
    for bad in ("/a~1b/c~0d/01", "/a~1b/c~0d/2", "/x", "a", "/a~1b/c~0d/-", 5):
        assert json_pointer(doc, bad) is not json_pointer(doc, "")
        assert check_rcdi(doc, {str(bad): integrity(1)}).mismatched == 1


def test_unfinite_and_huge_values_are_mismatches_not_errors() -> None:
    assert check_rcdi({"x": float("nan")}, {"/x": integrity(0)}).mismatched == 1
    assert check_rcdi({"x": 10**400}, {"/x": integrity(0)}).mismatched == 1
    assert check_rcdi({}, {f"/{n}": "sha256-" for n in range(40)}).mismatched == 40


@SETTINGS
@given(st.dictionaries(st.sampled_from(["rcd", "rcdi", "orig", "dest", "iat", "x"]), values, max_size=6), st.data())
def test_rcd_claims_and_rcdi_are_total_on_any_claims(claims: dict[str, Any], data: st.DataObject) -> None:
    """Whatever a stranger signs (or fails to), reading it never raises."""
    from sipguard.shaken.passport import Passport
    from sipguard.shaken.rcd import rcd_claims

    if data.draw(st.booleans()):
        claims["rcd"] = data.draw(st.dictionaries(st.sampled_from(["nam", "jcd", "icn"]), values))
        claims["rcdi"] = data.draw(st.dictionaries(st.text(max_size=8).map(lambda t: "/" + t), st.text(max_size=20)))
    got = rcd_claims(Passport({}, claims, b"", b""))
    if got is not None:
        result = check_rcdi(got.rcd, got.rcdi)
        assert result.matched + result.mismatched + result.unchecked == len(got.rcdi or {})
