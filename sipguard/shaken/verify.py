"""STI-VS: turn a call's Identity headers into a Verification (RFC 8224/8225/8588/8946, ATIS-1000074).

Rule 1: `verify` never raises on bad input; every failure is a Reason in the result, the most
fundamental first (malformed -> alg/ppt/x5u -> claims -> iat -> fetch -> certificate ->
signature -> numbers), because the first one picks the RFC 8224 response.
Rule 2: cheap local checks run first; a PASSporT already doomed by them (stale, wrong alg,
x5u != info) causes no network I/O, so replayed or forged tokens cannot make us fetch.
Rule 3: one certificate download per x5u URL however many calls wait for it (single flight);
results are cached (good ones in the L1 LRU, then the shared CertStore; failures in their own
LRU, so junk URLs cannot evict good certificates) and a per-host breaker stops a dead
repository from costing anything per call. The breaker counts only what says the host is down
(no connection, timeout, 5xx): a 404/410 is a fact about one URL, so URLs an attacker makes up
on a good host cannot close that host to correctly signed calls. Downloads of URLs we hold
nothing for are budgeted per trunk (FetchBudget), so one trunk cannot spend them for all.
Rule 4: several Identity headers: unknown ppt values are ignored, the call passes if one
`shaken` PASSporT passes; `div` PASSporTs are reported and their chain checked. A header without
`ppt` or `alg` is a SHAKEN header that fails (`missing-ppt`, `missing-alg`: ATIS-1000074 requires
both) unless `shaken.identity.lenient` names the parameter; then the PASSporT's own ppt says what
it is, and alg is ES256 (RFC 8224 section 4.1's default).
Rule 5: a token seen before (a forked or re-presented INVITE, a replayed capture) skips only
what cannot change: its decoding and, when the x5u still gives the same credential object, the
ES256 check over the same bytes. Header/claim checks, iat freshness at `now`, certificate
validity at `now`, revocation state and number matching run on every call.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.serialization import Encoding

from sipguard.shaken import passport as pp
from sipguard.shaken.cache import Breaker, CertStore, FetchBudget, LruCache
from sipguard.shaken.certs import (
    Credential,
    TrustStore,
    TrustStoreError,
    build_credential,
    load_trust_anchors,
)
from sipguard.shaken.config import ShakenConfig
from sipguard.shaken.crl import CrlChecker
from sipguard.shaken.identity import IdentityHeader, parse_identity, split_values
from sipguard.shaken.reasons import Reason, Verstat
from sipguard.shaken.result import NOT_VERIFIED, DivInfo, Verification
from sipguard.shaken.x5u import MAX_URL_LENGTH, CertFetcher, FetchError

log = logging.getLogger("sipguard.shaken.verify")

__all__ = ["Verifier", "CertStore", "DEFAULT_CERT_TTL", "REASON_ORDER"]

DEFAULT_CERT_TTL = 86400.0  # ATIS-1000074: 24 h unless Cache-Control/Expires says longer
DEFAULT_TOKEN_CACHE = 4096  # verified PASSporTs kept (~2.5 KB each): forks, re-INVITEs, replays

# Most fundamental first: the first reason of a failed Verification decides the response.
REASON_ORDER: dict[Reason, int] = {r: i for i, r in enumerate((
    Reason.MALFORMED_IDENTITY, Reason.MISSING_ALG, Reason.BAD_ALG, Reason.MISSING_PPT, Reason.BAD_PPT,
    Reason.X5U_MISMATCH, Reason.BAD_CLAIMS,
    Reason.STALE_IAT, Reason.FUTURE_IAT, Reason.X5U_REFUSED, Reason.X5U_FETCH_FAILED,
    Reason.CERT_UNTRUSTED, Reason.CERT_NO_TNAUTHLIST, Reason.CERT_EXPIRED, Reason.CERT_REVOKED,
    Reason.BAD_SIGNATURE, Reason.ORIG_MISMATCH, Reason.DEST_MISMATCH, Reason.NO_IDENTITY))}
_LOCAL_FATAL = frozenset(r for r, i in REASON_ORDER.items() if i <= REASON_ORDER[Reason.FUTURE_IAT])
_MALFORMED = Verification(Verstat.FAILED, reasons=(Reason.MALFORMED_IDENTITY,))
# The trunk of the call being verified, for the fetch budget: read where a download starts, so
# the steps between verify() and there need not carry it. Set by every verify() and never reset:
# an eagerly started call (sipguard.aio) sets it in its caller's context and finishes in a task's
# copy of it, where a reset cannot run; the download task copies the value when it is created.
_TRUNK: contextvars.ContextVar[str | None] = contextvars.ContextVar("sipguard_x5u_trunk", default=None)


@dataclass(slots=True)
class _Entry:
    """What an x5u URL gave us: a credential, or the reason it did not, and until when."""

    cred: Credential | None
    reason: Reason | None
    expires: float
    crl_reason: Reason | None = None
    crl_until: float = 0.0
    stale_until: float = 0.0  # a credential: used past ``expires`` up to here while refreshed
    anchors: int = 0          # the trust anchors' generation it was judged against


@dataclass(slots=True)
class _Token:
    """A PASSporT whose signature verified with `cred` (the exact credential object)."""

    passport: pp.Passport
    claims: pp.ShakenClaims
    cred: Credential


class Verifier:
    def __init__(self, cfg: ShakenConfig, fetcher: CertFetcher, l2: CertStore | None = None,
                 trust: TrustStore | None = None, token_cache_size: int = DEFAULT_TOKEN_CACHE) -> None:
        self.cfg = cfg
        self.fetcher = fetcher
        self.l2 = l2
        if trust is None and cfg.trust_anchors:
            trust = load_trust_anchors(cfg.trust_anchors)
        # No anchors configured: nothing can be trusted, every credential is cert-untrusted.
        self.trust = trust or TrustStore({}, 0)
        self._l1: LruCache[str, _Entry] = LruCache(cfg.x5u.cache_size)
        self._failed: LruCache[str, _Entry] = LruCache(cfg.x5u.cache_size)  # URLs that gave no credential
        self.budget = FetchBudget(cfg.x5u.trunk_fetch_rate, cfg.x5u.trunk_fetch_burst)
        # token bytes -> verified PASSporT; 0 turns it off (benchmarks of the full path)
        self._tokens: LruCache[str, _Token] | None = LruCache(token_cache_size) if token_cache_size > 0 else None
        self._token_hits = 0
        self._inflight: dict[str, asyncio.Future[_Entry]] = {}
        self.breaker = Breaker()
        self._anchors = 0  # generation of the trust anchors, one more at each change (SIGHUP)
        self.crl = CrlChecker(fetcher, cfg.crl, self.trust, cfg.x5u.negative_ttl)
        self._max_age, self._max_future = cfg.iat_max_age, cfg.iat_max_future
        self.counters: dict[str, float] = dict.fromkeys((
            "x5u_fetches", "x5u_fetch_failures", "x5u_refused", "x5u_breaker_skips", "l2_hits",
            "l2_errors", "internal_errors", "passed", "failed", "none", "stale_served", "x5u_not_found",
            "x5u_budget_skips", "x5u_failed_hits"), 0.0)

    # -- public ------------------------------------------------------------------------------
    async def verify(self, identities: Sequence[str], orig: Sequence[str], dest: Sequence[str],
                     now: float, *, trunk: str | None = None) -> Verification:
        """``trunk``: whose budget of x5u downloads this call spends ("": traffic from no trunk,
        one budget for all of it, as its source address may be forged; None: no budget)."""
        if not identities:  # an unsigned call (half of a US gateway's traffic): nothing to check
            self.counters["none"] += 1
            return NOT_VERIFIED
        _TRUNK.set(trunk)
        try:
            result = await self._verify(identities, tuple(orig), tuple(dest), now)
        except Exception:  # a bug must not drop the call: no verdict, and a loud log line
            log.exception("verification failed internally")
            self.counters["internal_errors"] += 1
            return Verification(Verstat.NONE)
        key = "passed" if result.verstat is Verstat.PASSED else (
            "failed" if result.verstat is Verstat.FAILED else "none")
        self.counters[key] += 1
        return result

    def reconfigure(self, cfg: ShakenConfig) -> None:
        """SIGHUP: the trust anchors are read again (the STI-PA's list of STI-CAs changes), and
        the iat window, CRL and cache-time settings are taken. When the anchors changed, every
        certificate judged against the old ones is dropped and judged again at its next use.
        The download rules (timeout, ports, networks, CA bundle, size) and the cache size take
        effect after a restart: the downloads in flight use them."""
        trust = self.trust
        if cfg.trust_anchors:
            try:
                trust = load_trust_anchors(cfg.trust_anchors)
            except TrustStoreError as exc:
                log.error("trust anchors not reloaded, the old ones stay: %s", exc)
        else:
            trust = TrustStore({}, 0)
        anchors_changed = _anchor_set(trust) != _anchor_set(self.trust)
        if anchors_changed:
            self.trust = trust
            self._anchors += 1  # a download under way keeps no certificate judged before
            self._l1.clear()
            self._failed.clear()  # certificate-untrusted verdicts included
            if self._tokens is not None:
                self._tokens.clear()
            log.info("trust anchors reloaded: %d certificates from %s", trust.count, cfg.trust_anchors)
        fixed = ("timeout", "ports", "allow_http", "allow_networks", "tls_ca_bundle", "max_bytes", "cache_size",
                 "trunk_fetch_rate", "trunk_fetch_burst")
        if any(getattr(cfg.x5u, name) != getattr(self.cfg.x5u, name) for name in fixed):
            log.warning("shaken.x5u download rules and cache size take effect after a restart")
            cfg = replace(cfg, x5u=replace(self.cfg.x5u, negative_ttl=cfg.x5u.negative_ttl,
                                           stale_grace=cfg.x5u.stale_grace))
        if anchors_changed or cfg.crl != self.cfg.crl or cfg.x5u.negative_ttl != self.cfg.x5u.negative_ttl:
            self.crl = CrlChecker(self.fetcher, cfg.crl, self.trust, cfg.x5u.negative_ttl)
        self._max_age, self._max_future = cfg.iat_max_age, cfg.iat_max_future
        self.cfg = cfg

    def stats(self) -> dict[str, float]:
        out = dict(self.counters)
        out.update(cert_cache_hits=self._l1.hits, cert_cache_misses=self._l1.misses,
                   cert_cache_evictions=self._l1.evictions, cert_cache_size=len(self._l1),
                   crl_fetches=self.crl.fetches, crl_failures=self.crl.failures,
                   x5u_failed_size=len(self._failed))
        tokens = self._tokens
        # hits = ES256 checks answered from the cache; a lookup that found the token but with
        # another credential (certificate re-fetched) verified again and counts as a miss
        out.update(token_cache_hits=self._token_hits,
                   token_cache_misses=(tokens.hits + tokens.misses - self._token_hits) if tokens else 0,
                   token_cache_evictions=tokens.evictions if tokens else 0,
                   token_cache_size=len(tokens) if tokens else 0)
        return out

    def breaker_states(self, now: float) -> dict[str, str]:
        """x5u host -> closed | open | half-open (hosts with recent failures only)."""
        return self.breaker.states(now)

    async def aclose(self) -> None:
        for fut in list(self._inflight.values()):
            fut.cancel()
        await self.fetcher.aclose()

    # -- selection of the Identity headers ----------------------------------------------------
    async def _verify(self, identities: Sequence[str], orig: tuple[str, ...], dest: tuple[str, ...],
                      now: float) -> Verification:
        if len(identities) == 1 and "," not in identities[0]:
            # the usual call: one shaken header, no div; same outcome as the general loop below
            hdr = parse_identity(identities[0].strip())
            if hdr is not None and hdr.ppt == "shaken":
                return (await self._verify_one(hdr, orig, dest, now))[0]
        shaken: list[IdentityHeader | None] = []
        divs: list[IdentityHeader] = []
        for raw in identities:
            for value in split_values(raw) if "," in raw else (raw.strip(),):
                hdr = parse_identity(value)
                ppt = _ppt_of(hdr, "ppt" in self.cfg.identity_lenient)
                if ppt == "shaken" or hdr is None or ppt == "?":
                    shaken.append(hdr)  # unparseable: it may have been shaken, report it
                elif ppt == "div":
                    divs.append(hdr)
        if not shaken:
            return replace(NOT_VERIFIED, div=await self._divs(divs, None, now)) if divs else NOT_VERIFIED
        first: tuple[Verification, pp.ShakenClaims | None] | None = None
        for hdr in shaken:
            outcome = await self._verify_one(hdr, orig, dest, now) if hdr else (_MALFORMED, None)
            if outcome[0].verstat is Verstat.PASSED:
                first = outcome
                break
            first = first or outcome
        assert first is not None
        result, claims = first
        if divs:
            result = replace(result, div=await self._divs(divs, claims, now))
        return result

    # -- one shaken PASSporT -------------------------------------------------------------------
    async def _verify_one(self, hdr: IdentityHeader, orig: tuple[str, ...], dest: tuple[str, ...],
                          now: float) -> tuple[Verification, pp.ShakenClaims | None]:
        token = self._tokens.get(hdr.token) if self._tokens is not None else None
        claims: pp.ShakenClaims | None
        if token is None:
            passport = pp.decode(hdr.token)  # None for compact form (empty payload) and garbage
            if passport is None:
                return _MALFORMED, None
            claims = pp.shaken_claims(passport)
        else:
            passport, claims = token.passport, token.claims
        reasons = pp.check_header(passport, "shaken", hdr.info)
        if hdr.alg != "ES256":
            reasons.append(Reason.BAD_ALG)
        lenient = self.cfg.identity_lenient
        if hdr.ppt is None and "ppt" not in lenient:
            reasons.append(Reason.MISSING_PPT)
        if "alg" not in lenient and not hdr.has_alg:
            reasons.append(Reason.MISSING_ALG)
        if hdr.info is None:
            reasons.append(Reason.MALFORMED_IDENTITY)  # RFC 8224: info is mandatory
        if claims is None:
            reasons.append(Reason.BAD_CLAIMS)
        else:
            late = pp.check_iat(claims.iat, now, self._max_age, self._max_future)
            if late is not None:
                reasons.append(late)
        x5u = passport.header.get("x5u")
        spc: str | None = None
        if not reasons and isinstance(x5u, str):
            assert claims is not None  # else BAD_CLAIMS is in reasons
            entry = self._l1.get(x5u)  # the warm path stays synchronous up to the signature
            if entry is None or now >= entry.expires:
                entry = await self._credential(x5u, now)
            cred = entry.cred
            if cred is None:
                reasons.append(entry.reason or Reason.X5U_FETCH_FAILED)
            else:
                spc = cred.spc
                if now >= entry.crl_until:
                    entry.crl_reason, entry.crl_until = await self.crl.status(cred, now)
                expired = cred.check_time(claims.iat, now)
                if expired is not None:
                    reasons.append(expired)
                if entry.crl_reason is not None:
                    reasons.append(entry.crl_reason)
                if token is not None and token.cred is cred:
                    self._token_hits += 1  # same bytes, same key: the same verdict
                    signed = True
                else:
                    signed = pp.verify_es256(cred.key, passport.signing_input, passport.signature)
                    if signed and self._tokens is not None:
                        self._tokens.put(hdr.token, _Token(passport, claims, cred))
                if not signed:
                    reasons.append(Reason.BAD_SIGNATURE)
                elif not cred.tnauth.spcs and not cred.tnauth.covers(claims.orig_tn):
                    reasons.append(Reason.ORIG_MISMATCH)  # delegate certificate not covering the caller
        if claims is not None:
            reasons += _number_reasons(claims, orig, dest)
        return _result(reasons, claims, x5u, spc), claims

    async def _check_credential(self, entry: _Entry, passport: pp.Passport,
                                claims: pp.ShakenClaims | None, now: float) -> list[Reason]:
        if now >= entry.crl_until and entry.cred is not None:
            entry.crl_reason, entry.crl_until = await self.crl.status(entry.cred, now)
        return self._check_cached(entry, passport, claims, now)

    @staticmethod
    def _check_cached(entry: _Entry, passport: pp.Passport, claims: pp.ShakenClaims | None,
                      now: float) -> list[Reason]:
        """Validity, revocation state (already known), signature, delegate-certificate scope."""
        cred = entry.cred
        assert cred is not None
        reasons: list[Reason] = []
        iat = claims.iat if claims is not None else now
        expired = cred.check_time(iat, now)
        if expired is not None:
            reasons.append(expired)
        if entry.crl_reason is not None:
            reasons.append(entry.crl_reason)
        if not pp.verify_es256(cred.key, passport.signing_input, passport.signature):
            reasons.append(Reason.BAD_SIGNATURE)
        elif claims is not None and not cred.tnauth.spcs and not cred.tnauth.covers(claims.orig_tn):
            reasons.append(Reason.ORIG_MISMATCH)  # delegate certificate not covering the caller
        return reasons

    # -- div PASSporTs (RFC 8946) ----------------------------------------------------------------
    async def _divs(self, hdrs: list[IdentityHeader], shaken: pp.ShakenClaims | None,
                    now: float) -> tuple[DivInfo, ...]:
        return tuple([await self._div(hdr, shaken, now) for hdr in hdrs[:5]])

    async def _div(self, hdr: IdentityHeader, shaken: pp.ShakenClaims | None, now: float) -> DivInfo:
        passport = pp.decode(hdr.token) if hdr.is_full_form else None
        claims = pp.div_claims(passport) if passport is not None else None
        if passport is None or claims is None:
            return DivInfo(None, (), None, hdr.info, False)
        x5u = passport.header.get("x5u")
        valid = (not pp.check_header(passport, "div", hdr.info) and hdr.alg == "ES256"
                 and pp.check_iat(claims.iat, now, self._max_age, self._max_future) is None
                 and shaken is not None and pp.tn_matches(claims.orig_tn, (shaken.orig_tn,))
                 and pp.tn_matches(claims.div_tn, shaken.dest_tns) and isinstance(x5u, str))
        if valid:
            entry = await self._credential(str(x5u), now)
            valid = entry.cred is not None and not await self._check_credential(
                entry, passport, None, now)
        return DivInfo(claims.orig_tn, claims.dest_tns, claims.div_tn, hdr.info, valid)

    # -- certificates: L1 -> single flight -> L2 -> breaker -> fetch ------------------------------
    async def _credential(self, url: str, now: float) -> _Entry:
        """The entry of ``url``. Past its lifetime a good certificate is still used, up to
        ``x5u.stale_grace`` seconds, while one download refreshes it in the background
        (stale-while-revalidate, RFC 5861); so no call waits for a refresh, and while the
        host cannot be reached the calls keep the certificate they had (stale-if-error)."""
        entry = self._l1.get(url)
        if entry is not None and now < entry.expires:
            return entry
        failed = self._failed.get(url) if entry is None else None
        if failed is not None and now < failed.expires:
            self.counters["x5u_failed_hits"] += 1
            return failed
        stale = entry if entry is not None and entry.cred is not None and now < entry.stale_until else None
        waiting = self._inflight.get(url)
        if waiting is None:
            waiting = asyncio.ensure_future(self._load(url, now, stale))
            self._inflight[url] = waiting
            waiting.add_done_callback(lambda done: self._loaded(url, done))
        if stale is not None:
            self.counters["stale_served"] += 1
            return stale
        # shield: a caller that gives up (call cancelled) must not cancel everyone's download
        return await asyncio.shield(waiting)

    def _loaded(self, url: str, done: asyncio.Future[_Entry]) -> None:
        self._inflight.pop(url, None)
        if not done.cancelled() and done.exception() is not None:  # nobody may be waiting: say it
            self.counters["internal_errors"] += 1
            log.error("x5u %s: loading failed internally", url, exc_info=done.exception())

    async def _load(self, url: str, now: float, stale: _Entry | None = None) -> _Entry:
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
            self._l1.put(url, entry)
            self._failed.pop(url)
        else:
            self._l1.pop(url)
            # a budget refusal is not a fact about the URL; a huge URL would cost memory
            if entry.expires > now and len(url) <= MAX_URL_LENGTH:
                self._failed.put(url, entry)
        return entry

    async def _from_l2(self, url: str, now: float) -> _Entry | None:
        if self.l2 is None:
            return None
        try:
            got = await self.l2.get_cert(url)
        except Exception as exc:  # the shared cache is an optimisation: never fail a call on it
            self.counters["l2_errors"] += 1
            log.warning("shared certificate cache unavailable: %s", exc)
            return None
        if got is None or got[1] <= now:
            return None
        result = build_credential(got[0], self.trust, now)
        if isinstance(result, Reason):
            return None  # trust anchors may differ per instance: fetch and judge ourselves
        self.counters["l2_hits"] += 1
        expires = min(got[1], max(result.not_after, now + self.cfg.x5u.negative_ttl))
        return _Entry(result, None, expires, stale_until=expires + self.cfg.x5u.stale_grace, anchors=self._anchors)

    async def _download(self, url: str, now: float, budgeted: bool = True) -> _Entry:
        """``budgeted``: a URL we hold nothing for, whose download the call's trunk pays for
        (a refresh of a certificate in use is not)."""
        negative = now + self.cfg.x5u.negative_ttl
        host = _host_of(url)
        trunk = _TRUNK.get()
        # the budget before the breaker's allow(): a refused call must not take the single
        # half-open attempt of a recovering host; none is spent on an open breaker either
        if budgeted and trunk is not None and self.breaker.state(host, now) != "open" \
                and not self.budget.take(trunk, now):
            self.counters["x5u_budget_skips"] += 1
            log.debug("x5u %s: trunk %s is over its budget of new downloads", url, trunk or "(none)")
            return _Entry(None, Reason.X5U_FETCH_FAILED, now)
        if not self.breaker.allow(host, now):
            self.counters["x5u_breaker_skips"] += 1
            return _Entry(None, Reason.X5U_FETCH_FAILED, negative)
        self.counters["x5u_fetches"] += 1
        try:
            fetched = await self.fetcher.fetch(url)
        except FetchError as exc:
            if exc.reason is Reason.X5U_REFUSED:
                self.counters["x5u_refused"] += 1
            else:
                self.counters["x5u_not_found" if exc.gone else "x5u_fetch_failures"] += 1
                if exc.host_down:
                    self.breaker.failure(host, now)
                else:  # it answered: the host is up, whatever it says about this URL
                    self.breaker.success(host)
            log.info("x5u %s: %s", url, exc.detail)
            return _Entry(None, exc.reason, negative)
        except Exception:
            self.counters["x5u_fetch_failures"] += 1
            self.breaker.failure(host, now)
            log.exception("x5u %s: fetcher error", url)
            return _Entry(None, Reason.X5U_FETCH_FAILED, negative)
        self.breaker.success(host)
        result = build_credential(fetched.body, self.trust, now)
        if isinstance(result, Reason):
            return _Entry(None, result, negative)
        ttl = max(DEFAULT_CERT_TTL, fetched.max_age or 0.0)
        # never past notAfter, but an expired credential is still cached briefly (no refetch storm)
        expires = max(min(now + ttl, result.not_after), negative)
        stale_until = expires + self.cfg.x5u.stale_grace
        if self.l2 is not None:
            try:
                await self.l2.put_cert(url, fetched.body, expires)
            except Exception as exc:
                self.counters["l2_errors"] += 1
                log.warning("shared certificate cache: put failed: %s", exc)
        return _Entry(result, None, expires, stale_until=stale_until, anchors=self._anchors)


def _anchor_set(trust: TrustStore) -> set[bytes]:
    """The anchors' certificates as DER, to tell whether a reload changed them."""
    return {cert.public_bytes(Encoding.DER) for certs in trust.by_subject.values() for cert in certs}


def _ppt_of(hdr: IdentityHeader | None, lenient: bool) -> str | None:
    """The header's ppt; without one "?" (treated as shaken: it fails with missing-ppt) unless
    ``lenient``, then the PASSporT's own ("?" when it cannot be read)."""
    if hdr is None:
        return None
    if hdr.ppt is not None:
        return hdr.ppt
    if not lenient:
        return "?"
    passport = pp.decode(hdr.token) if hdr.is_full_form else None
    if passport is None:
        return "?"
    ppt = passport.header.get("ppt")
    return ppt if isinstance(ppt, str) else None


def _host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _number_reasons(claims: pp.ShakenClaims, orig: tuple[str, ...], dest: tuple[str, ...]) -> list[Reason]:
    """``orig``: the canonical forms of the numbers of the identity the callee is shown (its
    P-Asserted-Identity values, else From: ``pipeline.Call.orig_candidates``), never of another
    header, so a PASSporT for one number cannot pass a call that shows another; ``dest``: those
    of To and the Request-URI."""
    reasons = []
    # no caller number at all (anonymous without PAI): nothing binds orig.tn to this call
    if not pp.tn_matches(claims.orig_tn, orig):
        reasons.append(Reason.ORIG_MISMATCH)
    for tn in claims.dest_tns:
        if pp.tn_matches(tn, dest):
            break
    else:
        reasons.append(Reason.DEST_MISMATCH)
    return reasons


def _result(reasons: list[Reason], claims: pp.ShakenClaims | None, x5u: object,
            spc: str | None) -> Verification:
    ordered = tuple(sorted(set(reasons), key=REASON_ORDER.__getitem__)) if reasons else ()
    verstat = Verstat.FAILED if ordered else Verstat.PASSED
    if claims is None:
        return Verification(verstat, x5u=x5u if isinstance(x5u, str) else None, spc=spc, reasons=ordered)
    # positional: verstat, attest, orig_tn, dest_tns, origid, x5u, spc, iat, reasons
    return Verification(verstat, claims.attest, claims.orig_tn, claims.dest_tns, claims.origid,
                        x5u if isinstance(x5u, str) else None, spc, claims.iat, ordered)
