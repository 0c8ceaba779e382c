"""STI-VS: turn a call's Identity headers into a Verification (RFC 8224/8225/8588/8946, ATIS-1000074).

Rule 1: `verify` never raises on bad input; every failure is a Reason in the result, the most
fundamental first (malformed -> alg/ppt/x5u -> claims -> iat -> fetch -> certificate ->
signature -> numbers), because the first one picks the RFC 8224 response.
Rule 2: cheap local checks run first; a PASSporT already doomed by them (stale, wrong alg,
x5u != info) causes no network I/O, so replayed or forged tokens cannot make us fetch.
Rule 3: one certificate download per x5u URL however many calls wait for it, cached, behind a
per-host breaker and a per-trunk budget: the certificate repository, credentials.py.
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

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sipguard.observe.hooks import NO_METRICS, MetricHooks
from sipguard.shaken import passport as pp
from sipguard.shaken.cache import CertStore, LruCache, VerifierCounters
from sipguard.shaken.certs import Credential, TrustStore
from sipguard.shaken.config import ShakenConfig
from sipguard.shaken.credentials import DEFAULT_CERT_TTL, TRUNK, CredentialCache
from sipguard.shaken.identity import IdentityHeader, parse_identity, split_values
from sipguard.shaken.reasons import Reason, Verstat
from sipguard.shaken.result import NOT_VERIFIED, DivInfo, Verification
from sipguard.shaken.x5u import CertFetcher

log = logging.getLogger("sipguard.shaken.verify")

__all__ = ["Verifier", "CertStore", "DEFAULT_CERT_TTL", "REASON_ORDER"]

DEFAULT_TOKEN_CACHE = 4096  # verified PASSporTs kept (~2.5 KB each): forks, re-INVITEs, replays

# Most fundamental first: the first reason of a failed Verification decides the response.
REASON_ORDER: dict[Reason, int] = {r: i for i, r in enumerate((
    Reason.MALFORMED_IDENTITY, Reason.MISSING_ALG, Reason.BAD_ALG, Reason.MISSING_PPT, Reason.BAD_PPT,
    Reason.X5U_MISMATCH, Reason.BAD_CLAIMS,
    Reason.STALE_IAT, Reason.FUTURE_IAT, Reason.X5U_REFUSED, Reason.X5U_FETCH_FAILED,
    Reason.CERT_UNTRUSTED, Reason.CERT_NO_TNAUTHLIST, Reason.CERT_EXPIRED, Reason.CERT_REVOKED,
    Reason.BAD_SIGNATURE, Reason.ORIG_MISMATCH, Reason.DEST_MISMATCH, Reason.NO_IDENTITY))}
_MALFORMED = Verification(Verstat.FAILED, reasons=(Reason.MALFORMED_IDENTITY,))


@dataclass(slots=True)
class _Token:
    """A PASSporT whose signature verified with `cred` (the exact credential object)."""

    passport: pp.Passport
    claims: pp.ShakenClaims
    cred: Credential


class Verifier:
    def __init__(self, cfg: ShakenConfig, fetcher: CertFetcher, l2: CertStore | None = None,
                 trust: TrustStore | None = None, token_cache_size: int = DEFAULT_TOKEN_CACHE,
                 metrics: MetricHooks = NO_METRICS) -> None:
        self.cfg = cfg
        self.counters = VerifierCounters()
        self.creds = CredentialCache(cfg, fetcher, l2, trust, metrics, self.counters)
        # token bytes -> verified PASSporT; 0 turns it off (benchmarks of the full path)
        self.tokens: LruCache[str, _Token] | None = LruCache(token_cache_size) if token_cache_size > 0 else None

    # -- public ------------------------------------------------------------------------------
    async def verify(self, identities: Sequence[str], orig: Sequence[str], dest: Sequence[str],
                     now: float, *, trunk: str | None = None) -> Verification:
        """``trunk``: whose budget of x5u downloads this call spends ("": traffic from no trunk,
        one budget for all of it, as its source address may be forged; None: no budget)."""
        if not identities:  # an unsigned call (half of a US gateway's traffic): nothing to check
            self.counters.none += 1
            return NOT_VERIFIED
        TRUNK.set(trunk)
        try:
            result = await self._verify(identities, tuple(orig), tuple(dest), now)
        except Exception:  # a bug must not drop the call: no verdict, and a loud log line
            log.exception("verification failed internally")
            self.counters.internal_errors += 1
            return Verification(Verstat.NONE)
        if result.verstat is Verstat.PASSED:
            self.counters.passed += 1
        elif result.verstat is Verstat.FAILED:
            self.counters.failed += 1
        else:
            self.counters.none += 1
        return result

    def reconfigure(self, cfg: ShakenConfig) -> None:
        """SIGHUP: the trust anchors are read again (the STI-PA's list of STI-CAs changes), and
        the iat window, CRL and cache-time settings are taken. When the anchors changed, every
        certificate judged against the old ones is dropped and judged again at its next use.
        The download rules (timeout, ports, networks, CA bundle, size) and the cache size take
        effect after a restart: the downloads in flight use them."""
        if self.creds.reconfigure(cfg) and self.tokens is not None:
            self.tokens.clear()
        self.cfg = self.creds.cfg

    def breaker_states(self, now: float) -> dict[str, str]:
        """x5u host -> closed | open | half-open (hosts with recent failures only)."""
        return self.creds.breaker.states(now)

    async def aclose(self) -> None:
        await self.creds.aclose()

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
        token = self.tokens.get(hdr.token) if self.tokens is not None else None
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
            late = pp.check_iat(claims.iat, now, self.cfg.iat_max_age, self.cfg.iat_max_future)
            if late is not None:
                reasons.append(late)
        x5u = passport.header.get("x5u")
        spc: str | None = None
        if not reasons and isinstance(x5u, str):
            assert claims is not None  # else BAD_CLAIMS is in reasons
            known = token.cred if token is not None else None
            cred, found = await self.creds.check(x5u, passport, claims.iat, claims.orig_tn, now, known)
            reasons += found
            if cred is not None:
                spc = cred.spc
                if cred is known:
                    self.counters.token_cache_hits += 1  # same bytes, same key: the same verdict
                elif self.tokens is not None and Reason.BAD_SIGNATURE not in found:
                    self.tokens.put(hdr.token, _Token(passport, claims, cred))
        if claims is not None:
            reasons += _number_reasons(claims, orig, dest)
        return _result(reasons, claims, x5u, spc), claims

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
                 and pp.check_iat(claims.iat, now, self.cfg.iat_max_age, self.cfg.iat_max_future) is None
                 and shaken is not None and pp.tn_matches(claims.orig_tn, (shaken.orig_tn,))
                 and pp.tn_matches(claims.div_tn, shaken.dest_tns) and isinstance(x5u, str))
        if valid:  # the certificate's validity at now: a div PASSporT is checked, not its iat
            valid = not (await self.creds.check(str(x5u), passport, now, None, now))[1]
        return DivInfo(claims.orig_tn, claims.dest_tns, claims.div_tn, hdr.info, valid)


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


def _number_reasons(claims: pp.ShakenClaims, orig: tuple[str, ...], dest: tuple[str, ...]) -> list[Reason]:
    """``orig``: the canonical forms of the numbers of the identity the callee is shown (its
    P-Asserted-Identity values, else From: ``pipeline.Call.orig_candidates``), never of another
    header, so a PASSporT for one number cannot pass a call that shows another; ``dest``: those
    of To and the Request-URI."""
    # no caller number at all (anonymous without PAI): nothing binds orig.tn to this call
    reasons = [] if pp.tn_matches(claims.orig_tn, orig) else [Reason.ORIG_MISMATCH]
    for tn in claims.dest_tns:
        if pp.tn_matches(tn, dest):
            return reasons
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
