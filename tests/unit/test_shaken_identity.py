"""Identity header parsing (RFC 8224 section 4.1): the tolerant, never-raising table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipguard.shaken.identity import parse_identity, split_values

TOK = "aGVhZA.cGF5bG9hZA.c2ln"
URL = "https://cert.example.org/passport.pem"


@pytest.mark.parametrize(("value", "info", "alg", "ppt"), [
    (f"{TOK};info=<{URL}>;alg=ES256;ppt=shaken", URL, "ES256", "shaken"),
    (f"{TOK} ; info = <{URL}> ; alg = ES256 ; ppt = shaken", URL, "ES256", "shaken"),
    (f"{TOK};ppt=\"shaken\";info=<{URL}>", URL, "ES256", "shaken"),   # quoted ppt, missing alg
    (f"{TOK};PPT=SHAKEN;INFO=<{URL}>;ALG=ES256", URL, "ES256", "shaken"),
    (f"{TOK};info=<{URL}>;alg=ES256;ppt=div;foo=bar", URL, "ES256", "div"),
    (f"{TOK};info=<{URL}>;;", URL, "ES256", None),
    (f"{TOK};info=<https://x.example/a;b=c>;ppt=shaken", "https://x.example/a;b=c", "ES256", "shaken"),
    (f"{TOK};alg=RS256;info=<{URL}>", URL, "RS256", None),
    (TOK, None, "ES256", None),
])
def test_parse_table(value: str, info: str | None, alg: str, ppt: str | None) -> None:
    hdr = parse_identity(value)
    assert hdr is not None
    assert (hdr.token, hdr.info, hdr.alg, hdr.ppt) == (TOK, info, alg, ppt)
    assert hdr.is_full_form


@pytest.mark.parametrize("value", [
    "", ";info=<x>", "tok en;info=<x>", f"{TOK};info={URL}", f"{TOK};info=<{URL}",
    f"{TOK};ppt=\"shaken", f"{TOK};bad name=1", "a" * 9000, "\u00e9t\u00e9;info=<x>",
])
def test_malformed_is_none(value: str) -> None:
    assert parse_identity(value) is None


def test_compact_form_is_not_full_form() -> None:
    hdr = parse_identity("aGVhZA..c2ln;info=<x>")
    assert hdr is not None and not hdr.is_full_form
    nodots = parse_identity("aGVhZA;info=<x>")
    assert nodots is not None and not nodots.is_full_form


def test_split_values_keeps_commas_inside_brackets() -> None:
    raw = f"{TOK};info=<https://a/x,y>;ppt=shaken , {TOK};info=<{URL}>;ppt=div"
    assert split_values(raw) == [f"{TOK};info=<https://a/x,y>;ppt=shaken", f"{TOK};info=<{URL}>;ppt=div"]


@given(st.text(max_size=300))
def test_never_raises(value: str) -> None:
    parse_identity(value)
    split_values(value)
