"""The verifier with its kept readings (the Identity parameters, the JOSE headers) gives what it
gives without them: each call verified with both emptied first, then again with them warm, by
``verify`` and ``verify_now``, with the verified-token cache on and off. The calls vary what the
kept readings hold: the JOSE header (alg, ppt, typ, x5u), the Identity parameters (info, alg,
ppt, their case, quoting, spacing and order), the iat and the numbers.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.shaken import identity
from sipguard.shaken import passport as pp
from sipguard.shaken.result import Verification
from sipguard.shaken.verify import Verifier
from tests.shaken_pki import DEST, NOW, ORIG, MapFetcher, StiPki, module_pki, sign_passport

X5U = "https://certs.example.net/good.pem"
OTHER = "https://certs.example.net/other.pem"

pki = module_pki()


header_st = st.fixed_dictionaries(
    {"alg": st.sampled_from(["ES256"] * 6 + ["none", "RS256"]), "ppt": st.sampled_from(["shaken"] * 6 + ["div", "SHAKEN"]),
     "x5u": st.sampled_from([X5U] * 6 + [OTHER, "", 1])},
    optional={"typ": st.sampled_from(["passport", "JWT"])})
params_st = st.sampled_from([";info=<{x5u}>;alg=ES256;ppt=shaken"] * 8 + [ ";info=<{x5u}>;alg=ES256;ppt=\"shaken\"", " ; info = <{x5u}> ; ppt=SHAKEN",
    ";ppt=shaken;info=<{x5u}>", ";info=<{x5u}>;alg=RS256;ppt=shaken", ";info=<{x5u}>;ppt=shaken",
    ";info=<{x5u}>;alg=ES256", ";info=<{x5u}>;alg=ES256;ppt=div", ";alg=ES256;ppt=shaken", "",
    ";info={x5u};alg=ES256;ppt=shaken", ";info=<{x5u}>;alg=ES256;ppt=shaken;foo=\"a;b\""])


def _results(pki: StiPki, value: str, orig: str, now: float) -> list[Verification | None]:
    """verify and verify_now of ``value``, cold (kept readings emptied) then warm, each with
    the token cache on and off."""
    out: list[Verification | None] = []
    for cold in (True, False):
        for size in (64, 0):
            if cold:
                identity._PARAMS.clear()
                pp._HEADERS.clear()
            v = Verifier(pki.config(), MapFetcher({X5U: pki.chain_pem("good")}), token_cache_size=size)
            out.append(asyncio.run(v.verify([value], (orig,), (DEST,), now)))
            # the certificate cached now: verify_now answers (the same token again: a token-cache hit)
            out.append(v.verify_now((value,), (orig,), (DEST,), now))
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header_st, params_st, st.sampled_from([X5U] * 4 + [OTHER]), st.integers(-90, 120),
       st.sampled_from([ORIG] * 4 + ["12025550199"]))
def test_kept_readings_change_no_verdict(pki: StiPki, header: dict[str, object], params: str, info: str,
                                         age: int, orig: str) -> None:
    claims = {"attest": "A", "dest": {"tn": [DEST]}, "iat": int(NOW) - age, "orig": {"tn": ORIG},
              "origid": "123e4567-e89b-12d3-a456-426614174000"}
    value = sign_passport(pki.key("good"), header, claims) + params.format(x5u=info)
    got = _results(pki, value, orig, NOW)
    # cold and warm alike, per (cache size, verify or verify_now)
    assert got[:4] == got[4:]
