"""The verified-token cache: a re-presented token skips only decoding and the ES256 check.

Everything that depends on the time or on the certificate's state is still judged per call:
a tampered token, a stale iat at a later clock, an expired or newly revoked certificate fail
exactly as they would without the cache. Each case runs with the cache on and off.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from sipguard.shaken.cache import CacheCounters
from sipguard.shaken.reasons import Reason, Verstat
from sipguard.shaken.verify import Verifier
from sipguard.shaken.x5u import Fetched
from tests.shaken_pki import MapFetcher, StiPki, shaken_identity

NOW = 1_790_000_000.0
X5U = "https://certs.example.net/good.pem"
REVOKED_X5U = "https://certs.example.net/revoked.pem"
CRL = "http://crl.example.net/int.crl"
ORIG, DEST = "12025550100", "13035550100"
DAY = 86400.0


class LongLived(MapFetcher):
    """Certificates declared fresh for 30 days, so the credential stays the cached object."""

    async def fetch(self, url: str, *, crl: bool = False) -> Any:
        got = await super().fetch(url, crl=crl)
        return Fetched(got.body, max_age=30 * DAY)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StiPki:
    return StiPki(tmp_path_factory.mktemp("pki"), now=NOW, crl_url=CRL)


def _verifier(pki: StiPki, cached: bool, fetcher: MapFetcher | None = None, **cfg: Any) -> Verifier:
    fetcher = fetcher or LongLived({X5U: pki.chain_pem("good"), REVOKED_X5U: pki.chain_pem("revoked"),
                                    CRL: pki.crl_der})
    return Verifier(pki.config(**cfg), fetcher, token_cache_size=64 if cached else 0)


def _ident(pki: StiPki, iat: float = NOW, name: str = "good", x5u: str = X5U) -> str:
    return shaken_identity(pki.key(name), x5u, orig=ORIG, dest=[DEST], iat=int(iat))


def _check(v: Verifier, ident: str, now: float = NOW) -> Any:
    async def call() -> Any:
        result = await v.verify([ident], (ORIG,), (DEST,), now)
        for _ in range(100):  # downloads the call started in the background end in this loop,
            if not v.creds.flights and not v.creds.crl.flights:  # as they would in a running worker
                break
            await asyncio.sleep(0)
        return result

    return asyncio.run(call())


def test_re_presented_token_is_answered_from_the_cache(pki: StiPki) -> None:
    v = _verifier(pki, cached=True)
    ident = _ident(pki)
    first, second = _check(v, ident), _check(v, ident)
    assert first == second and second.passed and second.spc == "1234"
    assert v.counters.token_cache_hits == 1 and v.tokens is not None and len(v.tokens) == 1
    assert v.tokens.counters == CacheCounters(hits=1, misses=1, evictions=0)


def test_cache_off_reports_zeros(pki: StiPki) -> None:
    v = _verifier(pki, cached=False)
    ident = _ident(pki)
    assert _check(v, ident).passed and _check(v, ident).passed
    assert v.counters.token_cache_hits == 0 and v.tokens is None


def test_cache_is_bounded(pki: StiPki) -> None:
    v = Verifier(pki.config(), LongLived({X5U: pki.chain_pem("good"), CRL: pki.crl_der}), token_cache_size=3)
    for i in range(5):
        assert _check(v, _ident(pki, iat=NOW - i)).passed
    assert v.tokens is not None and len(v.tokens) == 3 and v.tokens.counters.evictions == 2


def _tamper_signature(ident: str) -> str:
    token, _, params = ident.partition(";")
    head, payload, sig = token.split(".")
    sig = ("A" if sig[0] != "A" else "B") + sig[1:]
    return f"{head}.{payload}.{sig};{params}"


def _tamper_payload(ident: str) -> str:
    """Same claims but one more space in the JSON: still decodes, signature no longer matches."""
    import base64
    import json

    token, _, params = ident.partition(";")
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw = json.dumps(claims, separators=(", ", ":")).encode()
    return f"{head}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{sig};{params}"


@pytest.mark.parametrize("cached", [True, False])
@pytest.mark.parametrize("tamper", [_tamper_signature, _tamper_payload])
def test_tampered_token_fails_after_the_original_passed(pki: StiPki, cached: bool, tamper: Any) -> None:
    v = _verifier(pki, cached)
    ident = _ident(pki)
    assert _check(v, ident).passed
    res = _check(v, tamper(ident))
    assert res.verstat is Verstat.FAILED and res.reasons == (Reason.BAD_SIGNATURE,)
    assert _check(v, ident).passed


@pytest.mark.parametrize("cached", [True, False])
def test_stale_iat_at_a_later_clock(pki: StiPki, cached: bool) -> None:
    v = _verifier(pki, cached)
    ident = _ident(pki)
    assert _check(v, ident).passed
    assert _check(v, ident, now=NOW + 61).reasons == (Reason.STALE_IAT,)
    assert _check(v, ident, now=NOW - 6).reasons == (Reason.FUTURE_IAT,)


def _not_after(pki: StiPki) -> float:
    chain = x509.load_pem_x509_certificates(pki.chain_pem("good"))
    return min(c.not_valid_after_utc.timestamp() for c in chain)


@pytest.mark.parametrize("cached", [True, False])
def test_certificate_expired_at_a_later_clock(tmp_path: Path, cached: bool) -> None:
    # no CRL here: the test CRL's nextUpdate would be long past at the certificate's end of life
    pki = StiPki(tmp_path, now=NOW)
    end = _not_after(pki)
    v = _verifier(pki, cached, LongLived({X5U: pki.chain_pem("good")}))
    ident = _ident(pki, iat=end - 1)
    assert _check(v, ident, now=end - 1).passed
    # still the same cached credential (expired ones are kept briefly), now past notAfter
    res = _check(v, ident, now=end + 5)
    assert res.verstat is Verstat.FAILED and res.reasons == (Reason.CERT_EXPIRED,)
    if cached:
        assert v.counters.token_cache_hits == 1 and v.counters.x5u_fetches == 1


@pytest.mark.parametrize("cached", [True, False])
def test_certificate_revoked_after_the_token_was_cached(pki: StiPki, cached: bool) -> None:
    fetcher = LongLived({REVOKED_X5U: pki.chain_pem("revoked"), CRL: pki._crl([])})
    v = _verifier(pki, cached, fetcher, iat_max_age=int(3 * DAY))
    ident = _ident(pki, name="revoked", x5u=REVOKED_X5U)
    assert _check(v, ident).passed  # the CRL does not list it yet
    fetcher.bodies[CRL] = pki.crl_der  # now it does; the CRL answer is re-read after a day
    assert _check(v, ident, now=NOW + 3600).passed
    later = NOW + DAY + 60
    # the daily re-read: this call is judged on the CRL still valid (before its nextUpdate)
    # while the new one downloads; the next call sees the revocation
    assert _check(v, ident, now=later).passed
    res = _check(v, ident, now=later + 1)
    assert res.verstat is Verstat.FAILED and res.reasons == (Reason.CERT_REVOKED,)
    if cached:
        assert v.counters.token_cache_hits == 3 and v.counters.x5u_fetches == 1


def test_new_credential_for_the_same_url_is_checked_again(pki: StiPki) -> None:
    """The x5u now serves another key: the cached verdict belonged to the old one."""
    fetcher = MapFetcher({X5U: pki.chain_pem("good"), CRL: pki.crl_der})
    # no stale grace: the call past the TTL waits for the download (the grace is tested in
    # test_shaken_verify; here each check runs its own event loop)
    v = Verifier(pki.config(iat_max_age=int(3 * DAY), stale_grace=0.0), fetcher, token_cache_size=64)
    ident = _ident(pki)
    assert _check(v, ident).passed
    fetcher.bodies[X5U] = pki.chain_pem("implicit")  # same SPC, different key
    res = _check(v, ident, now=NOW + DAY + 1)  # past the 24 h certificate TTL: fetched again
    assert fetcher.calls[X5U] == 2
    assert res.reasons == (Reason.BAD_SIGNATURE,)
    assert v.counters.token_cache_hits == 0
