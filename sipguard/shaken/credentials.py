"""The certificate repository behind the verifier: x5u URL -> credential, and the checks of that
credential against one PASSporT (validity, revocation, signature, delegate scope), written once.

One download per URL however many calls wait (SingleFlight). Good certificates are kept in the L1
LRU, then the shared CertStore; failures in their own LRU, so junk URLs cannot evict good ones.
Past its lifetime a good certificate serves up to `x5u.stale_grace` while one download refreshes
it (stale-while-revalidate, RFC 5861; stale-if-error while its host is down). A per-host breaker
makes a dead repository cost nothing per call; it counts only what says the host is down (no
connection, timeout, 5xx), as a 404/410 is a fact about one URL an attacker may have made up.
New URLs are budgeted per trunk (FetchBudget). Entries carry the trust anchors' generation they
were judged against. It must not read Identity headers or claims (verify.py) nor raise.
"""

from __future__ import annotations

import contextvars
import logging
import time
from dataclasses import dataclass, replace
from functools import partial
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.serialization import Encoding

from sipguard.observe.hooks import NO_METRICS, MetricHooks
from sipguard.shaken import certs
from sipguard.shaken import passport as pp
from sipguard.shaken.cache import Breaker, CertStore, FetchBudget, LruCache, SingleFlight, VerifierCounters
from sipguard.shaken.certs import Credential, TrustStore
from sipguard.shaken.config import ShakenConfig
from sipguard.shaken.crl import CrlChecker
from sipguard.shaken.reasons import Reason
from sipguard.shaken.x5u import MAX_URL_LENGTH, CertFetcher, FetchError

log = logging.getLogger("sipguard.shaken.credentials")

DEFAULT_CERT_TTL = 86400.0  # ATIS-1000074: 24 h unless Cache-Control/Expires says longer
# The trunk of the call being verified, for the fetch budget: read where a download starts, so
# the steps between verify() and there need not carry it. Set by every verify() and never reset:
# an eagerly started call (sipguard.aio) sets it in its caller's context and finishes in a task's
# copy of it, where a reset cannot run; the download task copies the value when it is created.
TRUNK: contextvars.ContextVar[str | None] = contextvars.ContextVar("sipguard_x5u_trunk", default=None)
_FIXED = ("timeout", "ports", "allow_http", "allow_networks", "tls_ca_bundle", "max_bytes", "cache_size",
          "trunk_fetch_rate", "trunk_fetch_burst")


@dataclass(slots=True)
class CertEntry:
    """What an x5u URL gave us: a credential, or the reason it did not, and until when."""

    cred: Credential | None
    reason: Reason | None
    expires: float
    crl_reason: Reason | None = None
    crl_until: float = 0.0
    stale_until: float = 0.0  # a credential: used past ``expires`` up to here while refreshed
    anchors: int = 0          # the trust anchors' generation it was judged against


class CredentialCache:
    def __init__(self, cfg: ShakenConfig, fetcher: CertFetcher, l2: CertStore | None = None,
                 trust: TrustStore | None = None, metrics: MetricHooks = NO_METRICS,
                 counters: VerifierCounters | None = None) -> None:
        self.cfg, self.fetcher, self.l2, self.metrics = cfg, fetcher, l2, metrics
        self.counters = counters if counters is not None else VerifierCounters()
        if trust is None and cfg.trust_anchors:
            trust = certs.load_trust_anchors(cfg.trust_anchors)
        # No anchors configured: nothing can be trusted, every credential is cert-untrusted.
        self.trust = trust or TrustStore({}, 0)
        self.certs: LruCache[str, CertEntry] = LruCache(cfg.x5u.cache_size)   # L1
        self._failed: LruCache[str, CertEntry] = LruCache(cfg.x5u.cache_size)  # URLs that gave no credential
        self.budget = FetchBudget(cfg.x5u.trunk_fetch_rate, cfg.x5u.trunk_fetch_burst)
        self.flights: SingleFlight[str, CertEntry] = SingleFlight(self._load_failed)
        self.breaker = Breaker()
        self._anchors = 0  # generation of the trust anchors, one more at each change (SIGHUP)
        self.crl = CrlChecker(fetcher, cfg.crl, self.trust, cfg.x5u.negative_ttl, self.counters)

    async def check(self, url: str, passport: pp.Passport, iat: float, orig_tn: str | None, now: float,
                    verified: Credential | None = None) -> tuple[Credential | None, list[Reason]]:
        """The credential of ``url`` and what is wrong with it for this PASSporT: no credential,
        validity at ``iat`` and ``now``, revocation, the ES256 signature (unless the credential is
        the very object that ``verified`` these bytes before) and, given ``orig_tn``, whether a
        delegate certificate covers it. The warm path (L1, CRL state known) awaits nothing."""
        entry = self.certs.get(url)
        if entry is None or now >= entry.expires:
            entry = await self._miss(url, now, entry)
        cred = entry.cred
        if cred is None:
            return None, [entry.reason or Reason.X5U_FETCH_FAILED]
        if now >= entry.crl_until:
            entry.crl_reason, entry.crl_until = await self.crl.status(cred, now)
        return cred, _judge(entry, cred, passport, iat, orig_tn, now, verified)

    def check_now(self, url: str, passport: pp.Passport, iat: float, orig_tn: str | None, now: float,
                  verified: Credential | None = None) -> tuple[Credential, list[Reason]] | None:
        """``check``'s answer when it has nothing to wait for (the certificate in L1, fresh, its
        revocation state known), with the same effects; None, having changed nothing (not even
        a cache count), when it would wait or download: ask ``check`` then."""
        entry = self.certs.peek(url)
        if entry is None or now >= entry.expires or now >= entry.crl_until or entry.cred is None:
            return None
        self.certs.get(url)  # counted and moved to the front as check's look-up does
        cred = entry.cred
        return cred, _judge(entry, cred, passport, iat, orig_tn, now, verified)

    def reconfigure(self, cfg: ShakenConfig) -> bool:
        """Read the trust anchors again; True when they changed (every entry is dropped then, and
        a download under way keeps no certificate judged before). See Verifier.reconfigure."""
        trust = self.trust if cfg.trust_anchors else TrustStore({}, 0)
        if cfg.trust_anchors:
            try:
                trust = certs.load_trust_anchors(cfg.trust_anchors)
            except certs.TrustStoreError as exc:
                log.error("trust anchors not reloaded, the old ones stay: %s", exc)
        changed = _anchor_set(trust) != _anchor_set(self.trust)
        if changed:
            self.trust = trust
            self._anchors += 1
            self.certs.clear()
            self._failed.clear()  # certificate-untrusted verdicts included
            log.info("trust anchors reloaded: %d certificates from %s", trust.count, cfg.trust_anchors)
        if any(getattr(cfg.x5u, name) != getattr(self.cfg.x5u, name) for name in _FIXED):
            log.warning("shaken.x5u download rules and cache size take effect after a restart")
            cfg = replace(cfg, x5u=replace(self.cfg.x5u, negative_ttl=cfg.x5u.negative_ttl,
                                           stale_grace=cfg.x5u.stale_grace))
        if changed or cfg.crl != self.cfg.crl or cfg.x5u.negative_ttl != self.cfg.x5u.negative_ttl:
            self.crl = CrlChecker(self.fetcher, cfg.crl, self.trust, cfg.x5u.negative_ttl, self.counters)
        self.cfg = cfg
        return changed

    @property
    def failed_urls(self) -> int:
        """URLs held in the negative cache (they gave no credential)."""
        return len(self._failed)

    async def aclose(self) -> None:
        self.flights.cancel()
        await self.fetcher.aclose()

    # -- L1 -> single flight -> L2 -> breaker -> fetch ------------------------------------------
    async def _miss(self, url: str, now: float, entry: CertEntry | None) -> CertEntry:
        """``entry``: what L1 holds for ``url``, past its lifetime (or None)."""
        failed = self._failed.get(url) if entry is None else None
        if failed is not None and now < failed.expires:
            self.counters.x5u_failed_hits += 1
            return failed
        stale = entry if entry is not None and entry.cred is not None and now < entry.stale_until else None
        load = partial(self._load, url, now, stale)
        if stale is None:
            return await self.flights.join(url, load)
        self.flights.start(url, load)
        self.counters.stale_served += 1
        return stale

    def _load_failed(self, url: str, exc: BaseException) -> None:
        self.counters.internal_errors += 1
        log.error("x5u %s: loading failed internally", url, exc_info=exc)

    async def _load(self, url: str, now: float, stale: CertEntry | None = None) -> CertEntry:
        entry = await self._from_l2(url, now)
        if entry is None:
            entry = await self._download(url, now, budgeted=stale is None)
        if entry.cred is None and entry.reason is Reason.X5U_FETCH_FAILED and stale is not None \
                and stale.anchors == self._anchors:
            # the host is down or answered an error: keep the good certificate a while more,
            # and try again after negative_ttl (never past the grace the entry was given)
            stale.expires = min(now + self.cfg.x5u.negative_ttl, stale.stale_until)
            log.warning("x5u %s: refresh failed, the cached certificate stays in use until %.0f",
                        url, stale.stale_until)
            entry = stale
        elif entry.cred is not None:
            entry.crl_reason, entry.crl_until = await self.crl.status(entry.cred, now)
        if entry.cred is not None:
            self.certs.put(url, entry)
            self._failed.pop(url)
        else:
            self.certs.pop(url)
            # a budget refusal is not a fact about the URL; a huge URL would cost memory
            if entry.expires > now and len(url) <= MAX_URL_LENGTH:
                self._failed.put(url, entry)
        return entry

    async def _from_l2(self, url: str, now: float) -> CertEntry | None:
        if self.l2 is None:
            return None
        try:
            got = await self.l2.get_cert(url)
        except Exception as exc:  # the shared cache is an optimisation: never fail a call on it
            self.counters.l2_errors += 1
            log.warning("shared certificate cache unavailable: %s", exc)
            return None
        if got is None or got[1] <= now:
            return None
        result = certs.build_credential(got[0], self.trust, now)
        if isinstance(result, Reason):
            return None  # trust anchors may differ per instance: fetch and judge ourselves
        self.counters.l2_hits += 1
        expires = min(got[1], max(result.not_after, now + self.cfg.x5u.negative_ttl))
        return CertEntry(result, None, expires, stale_until=expires + self.cfg.x5u.stale_grace,
                         anchors=self._anchors)

    async def _download(self, url: str, now: float, budgeted: bool = True) -> CertEntry:
        """``budgeted``: a URL we hold nothing for, whose download the call's trunk pays for
        (a refresh of a certificate in use is not)."""
        negative = now + self.cfg.x5u.negative_ttl
        host = _host_of(url)
        trunk = TRUNK.get()
        # the budget before the breaker's allow(): a refused call must not take the single
        # half-open attempt of a recovering host; none is spent on an open breaker either
        if budgeted and trunk is not None and self.breaker.state(host, now) != "open" \
                and not self.budget.take(trunk, now):
            self.counters.x5u_budget_skips += 1
            log.debug("x5u %s: trunk %s is over its budget of new downloads", url, trunk or "(none)")
            return CertEntry(None, Reason.X5U_FETCH_FAILED, now)
        if not self.breaker.allow(host, now):
            self.counters.x5u_breaker_skips += 1
            return CertEntry(None, Reason.X5U_FETCH_FAILED, negative)
        self.counters.x5u_fetches += 1
        started = time.perf_counter()
        try:
            fetched = await self.fetcher.fetch(url)
        except FetchError as exc:
            if exc.reason is Reason.X5U_REFUSED:
                self.counters.x5u_refused += 1
            else:
                if exc.gone:
                    self.counters.x5u_not_found += 1
                else:
                    self.counters.x5u_fetch_failures += 1
                if exc.host_down:
                    self.breaker.failure(host, now)
                else:  # it answered: the host is up, whatever it says about this URL
                    self.breaker.success(host)
            log.info("x5u %s: %s", url, exc.detail)
            return CertEntry(None, exc.reason, negative)
        except Exception:
            self.counters.x5u_fetch_failures += 1
            self.breaker.failure(host, now)
            log.exception("x5u %s: fetcher error", url)
            return CertEntry(None, Reason.X5U_FETCH_FAILED, negative)
        # failures are counted above, by outcome (VerifierCounters -> sipguard_x5u_fetches_total)
        self.metrics.observe_x5u_fetch(time.perf_counter() - started)
        self.breaker.success(host)
        result = certs.build_credential(fetched.body, self.trust, now)
        if isinstance(result, Reason):
            return CertEntry(None, result, negative)
        ttl = max(DEFAULT_CERT_TTL, fetched.max_age or 0.0)
        # never past notAfter, but an expired credential is still cached briefly (no refetch storm)
        expires = max(min(now + ttl, result.not_after), negative)
        if self.l2 is not None:
            try:
                await self.l2.put_cert(url, fetched.body, expires)
            except Exception as exc:
                self.counters.l2_errors += 1
                log.warning("shared certificate cache: put failed: %s", exc)
        return CertEntry(result, None, expires, stale_until=expires + self.cfg.x5u.stale_grace,
                         anchors=self._anchors)


def _judge(entry: CertEntry, cred: Credential, passport: pp.Passport, iat: float, orig_tn: str | None,
           now: float, verified: Credential | None) -> list[Reason]:
    """What is wrong with ``entry``'s credential for this PASSporT (``check``, ``check_now``)."""
    reasons: list[Reason] = []
    expired = pp.check_window(cred.not_before, cred.not_after, iat, now)  # cred.check_time, compiled
    if expired is not None:
        reasons.append(expired)
    if entry.crl_reason is not None:
        reasons.append(entry.crl_reason)
    if cred is not verified and not pp.verify_es256(cred.key, passport.signing_input, passport.signature):
        reasons.append(Reason.BAD_SIGNATURE)
    elif orig_tn is not None and not cred.tnauth.spcs and not cred.tnauth.covers(orig_tn):
        reasons.append(Reason.ORIG_MISMATCH)  # delegate certificate not covering the caller
    return reasons


def _anchor_set(trust: TrustStore) -> set[bytes]:
    """The anchors' certificates as DER, to tell whether a reload changed them."""
    return {cert.public_bytes(Encoding.DER) for certs in trust.by_subject.values() for cert in certs}


def _host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""
