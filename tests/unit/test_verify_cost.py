"""The verifying path's cheaper code (session 8) against what it replaced: the number parser's
markers for "no number" and "emergency" (plain strings now, where a str subclass cannot be
compiled), ``Verification.report``'s shortcut for a passed call, and the verifier's verdicts
on tokens that differ from a good one in one place (every check still runs)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipguard.numbers import parse_tn
from sipguard.shaken.reasons import Reason, Verstat
from sipguard.shaken.result import PassportResult, Verification
from sipguard.shaken.verify import Verifier
from tests.shaken_pki import MapFetcher, StiPki, b64url, identity_header, shaken_token

# value -> (anonymous, emergency, invalid_reason) as main at ae4104d parsed them: text that
# spells a marker ("sos", "anonymous", with or without spaces) is not the marker
MARKER_LOOKALIKES = [
    ("sip:sos@example.com", False, False, "non-digits"),
    ("tel:sos", False, False, "non-digits"),
    ("tel:urn:service:sos", False, False, "non-digits"),
    ("urn:service:sos;x", False, False, "non-digits"),
    ("< sip: sos @h>", False, False, "non-digits"),
    (" sos ", False, False, "non-digits"),
    ("tel:%20sos%20", False, False, "non-digits"),
    ("urn: anonymous", False, False, "non-digits"),
    ("tel: anonymous ", True, False, "anonymous"),
    ("<urn:service:sos>", False, True, None),
    ("<>", True, False, "anonymous"),
    ("sip:h", True, False, "anonymous"),
]


@pytest.mark.parametrize(("value", "anonymous", "emergency", "reason"), MARKER_LOOKALIKES)
def test_marker_lookalikes_parse_as_before(value: str, anonymous: bool, emergency: bool, reason: str | None) -> None:
    tn = parse_tn(value)
    assert (tn.anonymous, tn.emergency, tn.invalid_reason) == (anonymous, emergency, reason)


def _report_before(v: Verification) -> tuple[str, ...]:
    """Verification.report as main at ae4104d wrote it."""
    if v.passports:
        return tuple(p.text() for p in v.passports)
    if v.verstat is Verstat.NONE and (not v.reasons or v.reasons == (Reason.NO_IDENTITY,)):
        return ()
    outcome = "passed" if v.verstat is Verstat.PASSED else "failed"
    return (PassportResult("shaken", outcome, v.reasons).text(),)


results = st.builds(PassportResult, st.sampled_from(["shaken", "div", "rcd", "?"]),
                    st.sampled_from(["passed", "failed", "skipped", "ignored"]),
                    st.lists(st.sampled_from(list(Reason)), max_size=3).map(tuple))


@given(st.sampled_from(list(Verstat)), st.lists(st.sampled_from(list(Reason)), max_size=3).map(tuple),
       st.lists(results, max_size=3).map(tuple))
def test_report_as_before(verstat: Verstat, reasons: tuple[Reason, ...],
                          passports: tuple[PassportResult, ...]) -> None:
    v = Verification(verstat, reasons=reasons, passports=passports)
    assert v.report() == _report_before(v)


# -- the verifier: one good token, and the same token changed in one place --------------------
URL = "https://certs.example.net/good.pem"
ORIG, DEST = "12025550100", "13035550100"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StiPki:
    return StiPki(Path(tmp_path_factory.mktemp("pki")))


def _verify(pki: StiPki, ident: str, now: float) -> Verification:
    verifier = Verifier(pki.config(), MapFetcher({URL: pki.chain_pem("good")}))
    return asyncio.run(verifier.verify((ident,), (ORIG,), (DEST,), now))


def test_good_token_passes(pki: StiPki) -> None:
    now = int(time.time())
    v = _verify(pki, identity_header(shaken_token(pki.key("good"), URL, orig=ORIG, dest=[DEST], iat=now), URL), now)
    assert v.passed and v.report() == ("shaken:passed",) and v.replay_key


@pytest.mark.parametrize("change", ["signature", "payload", "s-half", "other-key"])
def test_one_change_fails_the_signature(pki: StiPki, change: str) -> None:
    now = int(time.time())
    token = shaken_token(pki.key("good"), URL, orig=ORIG, dest=[DEST], iat=now)
    head, payload, sig = token.split(".")
    if change == "signature":
        sig = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    elif change == "payload":  # the same claims, re-encoded with a space: other signed bytes
        claims = json.loads(_b64decode(payload))
        payload = b64url(json.dumps(claims, separators=(", ", ":")).encode())
    elif change == "s-half":
        sig = b64url(_b64decode(sig)[:32] + bytes(32))
    else:
        sig = shaken_token(pki.key("implicit"), URL, orig=ORIG, dest=[DEST], iat=now).split(".")[2]
    v = _verify(pki, identity_header(f"{head}.{payload}.{sig}", URL), now)
    assert not v.passed and Reason.BAD_SIGNATURE in v.reasons and v.replay_key is None


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
