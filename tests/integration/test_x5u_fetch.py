"""The x5u fetcher and the verifier against a real loopback HTTP(S) repository, and secsipidx.

A CertServer (tests/shaken_pki.py) is started per module on a free loopback port; `allow_networks`
exempts 127.0.0.0/8 from the SSRF guard exactly as an operator would for a lab repository.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from sipguard.shaken.config import X5uConfig
from sipguard.shaken.reasons import Reason, Verstat
from sipguard.shaken.verify import Verifier
from sipguard.shaken.x5u import FetchError, HttpFetcher
from tests.shaken_pki import LOOPBACK, CertServer, StiPki, shaken_identity

pytestmark = pytest.mark.integration

ORIG, DEST = "12025550100", "13035550100"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CertServer, CertServer, StiPki]]:
    folder = tmp_path_factory.mktemp("x5u")
    with CertServer(https=True, directory=folder) as https, CertServer() as http:
        pki = StiPki(folder / "pki", crl_url=http.url("/int.crl"))
        pki.publish(https)
        pki.publish(http)
        https.route("/redirect.pem", b"", status=302, headers={"Location": https.url("/good.pem")})
        https.route("/big.pem", b"A" * 70000)
        https.route("/slow.pem", pki.chain_pem("good"), delay=1.0)
        https.route("/cached.pem", pki.chain_pem("good"), headers={"Cache-Control": "max-age=172800"})
        chunked = pki.chain_pem("good")
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunked[i:i + 100]), chunked[i:i + 100])
                        for i in range(0, len(chunked), 100)) + b"0\r\n\r\n"
        https.route("/chunked.pem", body, headers={"Transfer-Encoding": "chunked"})
        yield https, http, pki


def _fetch(cfg: X5uConfig, url: str, crl: bool = False) -> Any:
    async def go() -> Any:
        return await HttpFetcher(cfg).fetch(url, crl=crl)
    return asyncio.run(go())


def _cfg(https: CertServer, **kw: Any) -> X5uConfig:
    return X5uConfig(allow_networks=LOOPBACK, tls_ca_bundle=https.ca_bundle, **kw)


def test_https_fetch_with_own_ca_bundle(servers: tuple[CertServer, CertServer, StiPki]) -> None:
    https, _, pki = servers
    assert _fetch(_cfg(https), https.url("/good.pem")).body == pki.chain_pem("good")
    got = _fetch(_cfg(https), https.url("/cached.pem"))
    assert got.max_age == 172800.0
    assert _fetch(_cfg(https), https.url("/chunked.pem")).body == pki.chain_pem("good")


def test_https_untrusted_server_cert_fails(servers: tuple[CertServer, CertServer, StiPki]) -> None:
    https, _, _ = servers
    with pytest.raises(FetchError) as info:
        _fetch(X5uConfig(allow_networks=LOOPBACK), https.url("/good.pem"))  # system CAs only
    assert info.value.reason is Reason.X5U_FETCH_FAILED


def test_loopback_refused_without_allow_networks(servers: tuple[CertServer, CertServer, StiPki]) -> None:
    https, http, _ = servers
    before = https.hits("/good.pem")
    for url, cfg in ((https.url("/good.pem"), X5uConfig(tls_ca_bundle=https.ca_bundle)),
                     (https.url("/good.pem", host="localhost"), X5uConfig(tls_ca_bundle=https.ca_bundle)),
                     (http.url("/good.pem"), X5uConfig(allow_http=True))):
        with pytest.raises(FetchError) as info:
            _fetch(cfg, url)
        assert info.value.reason is Reason.X5U_REFUSED
    assert https.hits("/good.pem") == before  # refused before any connection


def test_http_refused_by_default(servers: tuple[CertServer, CertServer, StiPki]) -> None:
    _, http, _ = servers
    with pytest.raises(FetchError) as info:
        _fetch(X5uConfig(allow_networks=LOOPBACK), http.url("/good.pem"))
    assert info.value.reason is Reason.X5U_REFUSED


@pytest.mark.parametrize(("path", "words"), [
    ("/redirect.pem", "redirect"), ("/big.pem", "exceeds"), ("/missing.pem", "404"), ("/slow.pem", "timeout"),
])
def test_fetch_failures(servers: tuple[CertServer, CertServer, StiPki], path: str, words: str) -> None:
    https, _, _ = servers
    with pytest.raises(FetchError) as info:
        _fetch(_cfg(https, timeout=0.3), https.url(path))
    assert info.value.reason is Reason.X5U_FETCH_FAILED and words in info.value.detail


def _verifier(https: CertServer, pki: StiPki, **kw: Any) -> Verifier:
    cfg = pki.config(https, **kw)
    return Verifier(cfg, HttpFetcher(cfg.x5u))


def test_verify_end_to_end_with_crl(servers: tuple[CertServer, CertServer, StiPki]) -> None:
    https, http, pki = servers
    now = time.time()
    v = _verifier(https, pki)

    async def go() -> list[Any]:
        out = []
        for name in ("good", "revoked", "expired", "untrusted", "no_tnauth"):
            url = https.url(f"/{name}.pem")
            ident = shaken_identity(pki.key(name), url, orig=ORIG, dest=[DEST], iat=int(now))
            out.append(await v.verify([ident], [ORIG], [DEST], now))
        redirect = https.url("/redirect.pem")
        out.append(await v.verify([shaken_identity(pki.key("good"), redirect, orig=ORIG, dest=[DEST],
                                                   iat=int(now))], [ORIG], [DEST], now))
        return out

    good, revoked, expired, untrusted, no_tn, redirected = asyncio.run(go())
    assert good.verstat is Verstat.PASSED and good.spc == "1234"
    assert revoked.reasons == (Reason.CERT_REVOKED,)
    assert expired.reasons == (Reason.CERT_EXPIRED,)
    assert untrusted.reasons == (Reason.CERT_UNTRUSTED,)
    assert no_tn.reasons == (Reason.CERT_NO_TNAUTHLIST,)
    assert redirected.reasons == (Reason.X5U_FETCH_FAILED,)
    assert http.hits("/int.crl") == 1  # one CRL download, cached until nextUpdate


def test_single_flight_over_http(servers: tuple[CertServer, CertServer, StiPki], tmp_path: Path) -> None:
    https, _, pki = servers
    https.route("/burst.pem", pki.chain_pem("good"), delay=0.2)
    now = time.time()
    v = _verifier(https, pki)
    ident = shaken_identity(pki.key("good"), https.url("/burst.pem"), orig=ORIG, dest=[DEST], iat=int(now))

    async def burst() -> list[Any]:
        return await asyncio.gather(*(v.verify([ident], [ORIG], [DEST], now) for _ in range(1000)))

    results = asyncio.run(burst())
    assert all(r.passed for r in results)
    assert https.hits("/burst.pem") == 1


def test_missing_urls_cannot_poison_the_host_for_good_calls(servers: tuple[CertServer, CertServer, StiPki]) -> None:
    """Six INVITEs whose x5u is a missing path (404/410) on the real repository, no signing key
    needed: the host's breaker stays closed and a correctly signed call whose certificate is not
    cached still verifies. The same host answering 503 is down: then the breaker opens."""
    https, _, pki = servers
    https.route("/gone.pem", b"gone", status=410)
    https.route("/poison-good.pem", pki.chain_pem("good"))
    now = time.time()
    v = _verifier(https, pki)
    stranger = pki.key("untrusted")  # any key: the signature is never reached

    async def go() -> list[Any]:
        out = []
        for n in range(6):
            path = "/gone.pem" if n == 5 else f"/missing-{n}.pem"
            ident = shaken_identity(stranger, https.url(path), orig=ORIG, dest=[DEST], iat=int(now))
            out.append(await v.verify([ident], [ORIG], [DEST], now, trunk="attacker"))
        good = shaken_identity(pki.key("good"), https.url("/poison-good.pem"), orig=ORIG, dest=[DEST], iat=int(now))
        out.append(await v.verify([good], [ORIG], [DEST], now + 1, trunk="carrier"))
        return out

    *poison, good = asyncio.run(go())
    assert all(r.reasons == (Reason.X5U_FETCH_FAILED,) for r in poison)
    assert https.hits("/missing-0.pem") == 1 and https.hits("/gone.pem") == 1
    assert good.verstat is Verstat.PASSED
    assert v.creds.breaker.state("127.0.0.1", now + 1) == "closed"
    assert v.counters.x5u_not_found == 6

    https.route("/down.pem", b"", status=503)
    v2 = _verifier(https, pki)

    async def down() -> Any:
        for n in range(5):  # each a new attempt once negative_ttl passed: the host stays broken
            at = now + 31 * n
            ident = shaken_identity(pki.key("good"), https.url("/down.pem"), orig=ORIG, dest=[DEST], iat=int(at))
            await v2.verify([ident], [ORIG], [DEST], at)
        return v2.breaker_states(now + 31 * 4)

    assert set(asyncio.run(down()).values()) == {"open"}
    assert https.hits("/down.pem") == 5


def test_downloads_reach_the_metrics(servers: tuple[CertServer, CertServer, StiPki]) -> None:
    """sipguard_x5u_fetch_seconds and sipguard_x5u_fetches_total{outcome="ok"} count the real
    downloads that gave a certificate: not the cached second call, not a 404 (which the
    verifier's own stats count as not_found)."""
    from prometheus_client.parser import text_string_to_metric_families

    from sipguard.observe.metrics import Metrics

    https, _, pki = servers
    https.route("/metered.pem", pki.chain_pem("good"))
    now = time.time()
    cfg = pki.config(https)
    metrics = Metrics()
    v = Verifier(cfg, HttpFetcher(cfg.x5u), metrics=metrics)

    async def go() -> list[Any]:
        return [await v.verify([shaken_identity(pki.key("good"), https.url(path), orig=ORIG, dest=[DEST],
                                                iat=int(now))], [ORIG], [DEST], now)
                for path in ("/metered.pem", "/metered.pem", "/metered-missing.pem")]

    first, cached, missing = asyncio.run(go())
    assert first.passed and cached.passed and missing.reasons == (Reason.X5U_FETCH_FAILED,)
    assert https.hits("/metered.pem") == 1 and v.counters.x5u_not_found == 1
    got = {(s.name, tuple(s.labels.items())): s.value
           for family in text_string_to_metric_families(metrics.render()[0].decode()) for s in family.samples}
    assert got[("sipguard_x5u_fetch_seconds_count", ())] == 1
    assert got[("sipguard_x5u_fetch_seconds_sum", ())] > 0
    assert got[("sipguard_x5u_fetches_total", (("outcome", "ok"),))] == 1


# -- secsipidx interop ----------------------------------------------------------------------------

needs_secsipidx = pytest.mark.skipif(shutil.which("secsipidx") is None, reason="secsipidx not installed")


@needs_secsipidx
def test_secsipidx_signed_identity_verifies(servers: tuple[CertServer, CertServer, StiPki],
                                           tmp_path: Path) -> None:
    https, _, pki = servers
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(pki.key("good").private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    url = https.url("/good.pem")
    out = subprocess.run(["secsipidx", "-sign-full", "-o", ORIG, "-d", DEST, "-a", "A",
                          "-x5u", url, "-k", str(key_path)], capture_output=True, text=True, timeout=30, check=True)
    identity = out.stdout.strip()
    now = time.time()
    v = _verifier(https, pki)
    res = asyncio.run(v.verify([identity], [ORIG], [DEST], now))
    assert res.verstat is Verstat.PASSED and res.attest == "A" and res.origid
    token, _, params = identity.partition(";")
    head, payload, sig = token.split(".")
    mid = len(sig) // 2
    tampered = f"{head}.{payload}.{sig[:mid]}{'B' if sig[mid] != 'B' else 'C'}{sig[mid + 1:]};{params}"
    assert asyncio.run(v.verify([tampered], [ORIG], [DEST], now)).reasons == (Reason.BAD_SIGNATURE,)
    assert asyncio.run(v.verify([identity], ["12025550199"], [DEST], now)).reasons == (Reason.ORIG_MISMATCH,)
    stale = replace(pki.config(https), iat_max_age=60)
    late = asyncio.run(Verifier(stale, HttpFetcher(stale.x5u)).verify([identity], [ORIG], [DEST], now + 120))
    assert late.reasons[0] is Reason.STALE_IAT
