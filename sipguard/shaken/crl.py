"""Certificate revocation: CRLs from each certificate's distribution point (ATIS-1000080 6.4.1).

CRLs are downloaded with the same guarded fetcher as x5u (http:// allowed: CRLs are usually
served over plain HTTP and are signed anyway), cached until their nextUpdate, and accepted only
when signed by the issuer of the certificate or, for indirect CRLs (cRLIssuer, e.g. the STI-PA
CRL), by a trust-store certificate of the CRL's issuer name. Unlike OpenSSL's CRL_CHECK_ALL
(Asterisk PR #815), a certificate without a distribution point is not a failure.

A CRL is read again at least daily (MAX_CRL_TTL). Until its nextUpdate it is still the
issuer's word: while it is read again, calls are judged on it rather than wait for the download,
and when the download fails it stays in use (retried every `negative_ttl`) up to nextUpdate.

An unavailable, unverifiable or expired CRL follows `crl.failure`:
fail-open -> not revoked (the call is judged on the rest); fail-closed -> `cert-revoked`
(437: the credential cannot be shown to be valid). Either way the failure is counted and
remembered for `negative_ttl` seconds so a dead CRL server costs no I/O per call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import partial

from cryptography import x509

from sipguard.shaken.cache import SingleFlight, VerifierCounters
from sipguard.shaken.certs import Credential, TrustStore, crl_urls
from sipguard.shaken.config import CrlConfig
from sipguard.shaken.reasons import Reason
from sipguard.shaken.x5u import CertFetcher, FetchError

log = logging.getLogger("sipguard.shaken.crl")

MAX_CRL_TTL = 86400.0  # re-read at least daily even when nextUpdate is far away


@dataclass(frozen=True, slots=True)
class CrlEntry:
    revoked: frozenset[int] | None  # None: the CRL could not be obtained or verified
    until: float                    # read it again from here
    valid_until: float = 0.0        # its nextUpdate: usable while it is read again, up to here


class CrlChecker:
    def __init__(self, fetcher: CertFetcher, cfg: CrlConfig, store: TrustStore | None,
                 negative_ttl: float = 30.0, counters: VerifierCounters | None = None) -> None:
        self.fetcher = fetcher
        self.cfg = cfg
        self.store = store
        self.negative_ttl = negative_ttl
        self._crls: dict[str, CrlEntry] = {}
        self.flights: SingleFlight[str, CrlEntry] = SingleFlight(_load_failed)
        self.counters = counters if counters is not None else VerifierCounters()   # crl_* are ours

    async def status(self, cred: Credential, now: float) -> tuple[Reason | None, float]:
        """(cert-revoked or None, time until which this answer holds)."""
        until = now + MAX_CRL_TTL
        if not self.cfg.enabled:
            return None, until
        chain = cred.chain
        for cert, issuer in zip(chain, chain[1:], strict=False):
            for url in crl_urls(cert):
                entry = await self._entry(url, issuer, now)
                until = min(until, entry.until)
                if entry.revoked is None:
                    if self.cfg.failure == "fail-closed":
                        log.warning("CRL %s unavailable: treating %s as revoked (fail-closed)",
                                    url, cert.subject.rfc4514_string())
                        return Reason.CERT_REVOKED, until
                elif cert.serial_number in entry.revoked:
                    return Reason.CERT_REVOKED, until
        return None, until

    async def _entry(self, url: str, issuer: x509.Certificate, now: float) -> CrlEntry:
        entry = self._crls.get(url)
        if entry is not None and now < entry.until:
            return entry
        usable = entry if entry is not None and entry.revoked is not None and now < entry.valid_until else None
        load = partial(self._load, url, issuer, now, usable)
        if usable is not None:
            self.flights.start(url, load)
            return usable  # still before its nextUpdate: no call waits for the new one
        return await self.flights.join(url, load)

    async def _load(self, url: str, issuer: x509.Certificate, now: float,
                    usable: CrlEntry | None = None) -> CrlEntry:
        self.counters.crl_fetches += 1
        try:
            fetched = await self.fetcher.fetch(url, crl=True)
            entry = self._parse(fetched.body, issuer, now)
        except FetchError as exc:
            log.warning("CRL %s: %s", url, exc.detail)
            entry = None
        if entry is None:
            self.counters.crl_failures += 1
            if usable is not None:  # the one we have is valid to its nextUpdate: keep it till then
                entry = replace(usable, until=min(now + self.negative_ttl, usable.valid_until))
            else:
                entry = CrlEntry(None, now + self.negative_ttl)
        if len(self._crls) >= 10000:
            self._crls.clear()  # bound: CRL URLs are few (one per CA) unless under attack
        self._crls[url] = entry
        return entry

    def _parse(self, body: bytes, issuer: x509.Certificate, now: float) -> CrlEntry | None:
        try:
            crl = (x509.load_pem_x509_crl(body) if body.lstrip().startswith(b"-----")
                   else x509.load_der_x509_crl(body))
        except ValueError:
            return None
        if not any(crl.is_signature_valid(c.public_key())  # type: ignore[arg-type]
                   for c in self._signers(crl, issuer)):
            log.warning("CRL from %s: signature does not verify", crl.issuer.rfc4514_string())
            return None
        next_update = crl.next_update_utc
        if next_update is None or next_update.timestamp() <= now:
            return None  # stale: a CRL past nextUpdate says nothing about today
        revoked = frozenset(r.serial_number for r in crl)
        return CrlEntry(revoked, min(next_update.timestamp(), now + MAX_CRL_TTL), next_update.timestamp())

    def _signers(self, crl: x509.CertificateRevocationList,
                 issuer: x509.Certificate) -> list[x509.Certificate]:
        out = [issuer] if issuer.subject == crl.issuer else []
        if self.store is not None:
            out += self.store.by_subject.get(crl.issuer.public_bytes(), ())
        return out


def _load_failed(url: str, exc: BaseException) -> None:
    log.error("CRL %s: loading failed internally", url, exc_info=exc)
