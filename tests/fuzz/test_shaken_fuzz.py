"""Bounded fuzzing of Identity header and PASSporT decoding (sipguard/shaken/identity.py,
passport.py) and of the verifier on top of them.

The invariant (identity.py rule 1, passport.py rule 3, verify.py rule 1): whatever the
header value, ``parse_identity`` gives an ``IdentityHeader`` or None; ``decode`` gives a
``Passport`` or None; the claim readers give their claims or None; ``check_header`` a list
of reasons; ``Verifier.verify`` a ``Verification`` and never its internal-error fallback.
Any other exception is a bug. Seeds: tokens signed here (tests/shaken_pki.py) and the
libstirshaken test PASSporT.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sipguard.shaken import passport as pp
from sipguard.shaken.identity import MAX_IDENTITY_LEN, IdentityHeader, parse_identity, split_values
from sipguard.shaken.rcd import integrity
from sipguard.shaken.reasons import Reason
from sipguard.shaken.verify import Verification, Verifier
from tests.fuzz.mutation import mutate
from tests.shaken_pki import MapFetcher, StiPki, b64url, rcd_identity, shaken_identity, sign_passport

NOW = 1_790_000_000.0
X5U = "https://certs.example.net/good.pem"
ORIG, DEST = "12025550100", "13035550100"
LIBSTIRSHAKEN = Path(__file__).resolve().parents[1] / "data" / "libstirshaken" / "passport.txt"
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MUTANTS = 3_000
VERIFY_MUTANTS = 2_000


def check_identity(value: str) -> IdentityHeader | None:
    header = parse_identity(value)
    if header is not None:
        assert isinstance(header, IdentityHeader) and header.token and isinstance(header.alg, str)
        assert header.info is None or isinstance(header.info, str)
        assert header.ppt is None or header.ppt == header.ppt.lower()
        header.is_full_form  # noqa: B018
    for part in split_values(value):
        assert isinstance(part, str) and part == part.strip() and part
    return header


def check_token(token: str) -> pp.Passport | None:
    passport = pp.decode(token)
    if passport is None:
        return None
    assert isinstance(passport.header, dict) and isinstance(passport.claims, dict) and passport.signature
    assert token.encode("ascii").startswith(passport.signing_input)
    for reason in pp.check_header(passport, "shaken", X5U):
        assert isinstance(reason, Reason)
    claims = pp.shaken_claims(passport)
    assert claims is None or isinstance(claims, pp.ShakenClaims) and claims.attest in pp.ATTEST_LEVELS
    div = pp.div_claims(passport)
    assert div is None or isinstance(div, pp.DivClaims)
    if claims is not None:
        pp.check_iat(claims.iat, NOW, 60, 60)
        pp.tn_matches(claims.orig_tn, claims.dest_tns)
    return passport


# -- generated values -------------------------------------------------------------------------
PARAM_NAME = st.sampled_from(["info", "alg", "ppt", "INFO", "Alg", "x", "", "in fo", "ppt ", '"ppt"'])
PARAM_VALUE = st.one_of(
    st.sampled_from(["<https://c.example/a.pem>", "<https://c.example/a;b.pem>", "<>", "<", ">", '"shaken"',
                     '"unterminated', "ES256", "shaken", "", "<a<b>>", "<https://x,y>"]),
    st.text(alphabet=string.printable, max_size=20))


@st.composite
def identity_values(draw: st.DrawFn) -> str:
    token = draw(st.one_of(st.text(alphabet=string.ascii_letters + string.digits + "-_.=", max_size=60),
                           st.text(max_size=30)))
    params = draw(st.lists(st.tuples(PARAM_NAME, st.sampled_from(["=", " = ", "", "=="]), PARAM_VALUE),
                           max_size=6))
    seps = draw(st.sampled_from([";", " ; ", ";;", ","]))
    return token + "".join(f"{seps}{name}{eq}{value}" for name, eq, value in params)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=20)
CLAIM = st.sampled_from(["attest", "orig", "dest", "iat", "origid", "div", "tn", "typ", "alg", "ppt", "x5u"])


@st.composite
def json_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Objects with the claim and header names the readers look for, values of any type."""
    out = draw(st.dictionaries(CLAIM, JSON, max_size=6))
    if draw(st.booleans()):
        out["orig"] = {"tn": draw(JSON)}
        out["dest"] = {"tn": draw(st.one_of(JSON, st.lists(JSON, max_size=3)))}
    return out


def segment(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["json", "object", "bytes", "text"]))
    if kind == "object":
        return b64url(json.dumps(draw(json_objects())).encode())
    if kind == "json":
        return b64url(json.dumps(draw(JSON)).encode())
    if kind == "bytes":
        return b64url(draw(st.binary(max_size=80)))
    return draw(st.text(max_size=20))


@st.composite
def tokens(draw: st.DrawFn) -> str:
    parts = [segment(draw) for _ in range(draw(st.sampled_from([3, 3, 3, 2, 4])))]
    return ".".join(parts)


DEEP = b64url(b"[" * 100_000 + b"]" * 100_000)
HUGE_IAT = b64url(b'{"iat":' + b"9" * 5000 + b"}")   # int() of > 4300 digits raises ValueError


@FUZZ
@given(st.one_of(st.text(max_size=200), identity_values()))
@example("")
@example(" " * (MAX_IDENTITY_LEN + 10))
@example("a" * MAX_IDENTITY_LEN + ";info=<x>")
@example('tok;info=<https://a;b>;ppt="shaken')
@example("tok;" + "<" * 5000)
def test_identity_values_parse_to_a_header_or_none(value: str) -> None:
    check_identity(value)


@FUZZ
@given(st.one_of(tokens(), st.text(max_size=200)))
@example(f"{DEEP}.{DEEP}.c2ln")
@example(f"{DEEP}.{HUGE_IAT}.c2ln")
@example("é.é.é")
@example("..")
def test_tokens_decode_to_a_passport_or_none(token: str) -> None:
    check_token(token)


@FUZZ
@given(json_objects(), json_objects())
def test_any_claims_read_as_claims_or_none(header: dict[str, Any], claims: dict[str, Any]) -> None:
    token = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}.{b64url(b'x' * 64)}"
    assert check_token(token) is not None


# -- mutated real tokens ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StiPki:
    return StiPki(tmp_path_factory.mktemp("pki"), now=NOW)


def real_identities(pki: StiPki) -> list[str]:
    good = shaken_identity(pki.key("good"), X5U, orig=ORIG, dest=[DEST], iat=int(NOW))
    div = sign_passport(pki.key("good"), {"alg": "ES256", "ppt": "div", "typ": "passport", "x5u": X5U},
                        {"orig": {"tn": ORIG}, "dest": {"tn": [DEST]}, "div": {"tn": "13035550199"},
                         "iat": int(NOW)})
    text = LIBSTIRSHAKEN.read_text().splitlines()
    lib = text[text.index("SIP Identity Header with PASSporT is:") + 1]
    jcard = ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Example"]]]
    rcd = rcd_identity(pki.key("good"), X5U, orig=ORIG, dest=[DEST], iat=int(NOW), rcd={"nam": "Example", "jcd": jcard},
                       rcdi={"/jcd": integrity(jcard), "/icn": "sha256-" + "A" * 43 + "="})
    return [good, f"{div};info=<{X5U}>;ppt=div", lib, f'{good.split(";")[0]} ; PPT="SHAKEN" ; info=<{X5U}>', rcd]


def test_mutated_identity_headers_give_typed_results(pki: StiPki) -> None:
    rng = random.Random(8224)
    base = [value.encode() for value in real_identities(pki)]
    decoded = 0
    for _ in range(MUTANTS):
        value = mutate(rng, rng.choice(base)).decode("utf-8", "replace")
        header = check_identity(value)
        if header is not None and check_token(header.token) is not None:
            decoded += 1
    assert decoded > MUTANTS // 10  # the mutants reach the PASSporT decoder and the claim readers


def test_verifier_never_falls_back_to_its_internal_error(pki: StiPki) -> None:
    """Mutated Identity headers through the whole verifier (certificates served from a map):
    a Verification every time, and ``internal_errors`` (a bug caught by verify) stays 0."""
    verifier = Verifier(pki.config(), MapFetcher({X5U: pki.chain_pem("good")}))
    rng = random.Random(8588)
    base = [value.encode() for value in real_identities(pki)]

    async def run() -> set[str]:
        verdicts = set()
        for _ in range(VERIFY_MUTANTS):
            values = [mutate(rng, rng.choice(base)).decode("utf-8", "replace")
                      for _ in range(rng.choice((1, 1, 2, 3)))]
            result = await verifier.verify(values, [ORIG], [DEST], NOW,
                                           history=rng.choice((None, (), (DEST, "13035550199"))))
            assert isinstance(result, Verification)
            verdicts.add(result.verstat.name)
        good = await verifier.verify([base[0].decode()], [ORIG], [DEST], NOW)
        verdicts.add("good:" + good.verstat.name)
        return verdicts

    verdicts = asyncio.run(run())
    assert verifier.counters.internal_errors == 0
    assert {"FAILED", "good:PASSED"} <= verdicts, verdicts
