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

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from sipguard.observe.hooks import NO_METRICS, MetricHooks
from sipguard.shaken import passport as pp
from sipguard.shaken.cache import CertStore, LruCache, VerifierCounters
from sipguard.shaken.certs import Credential, TrustStore
from sipguard.shaken.config import ShakenConfig
from sipguard.shaken.credentials import DEFAULT_CERT_TTL, TRUNK, CredentialCache
from sipguard.shaken.identity import IdentityHeader, parse_identity, split_values
from sipguard.shaken.rcd import check_rcdi, content_matches, rcd_claims
from sipguard.shaken.reasons import Reason, Verstat
from sipguard.shaken.result import NOT_VERIFIED, DivInfo, PassportResult, Verification
from sipguard.shaken.x5u import CertFetcher, FetchError

log = logging.getLogger("sipguard.shaken.verify")

__all__ = ["Verifier", "CertStore", "DEFAULT_CERT_TTL", "REASON_ORDER"]

MAX_RCD_FETCHES = 4      # URL-referenced rcdi entries checked per rcd PASSporT (shaken.rcd.fetch)
RCD_CONTENT_TTL = 300.0  # seconds a downloaded logo's / jCard's verdict is reused
DEFAULT_TOKEN_CACHE = 4096  # verified PASSporTs kept (~2.5 KB each): forks, re-INVITEs, replays

# Most fundamental first: the first reason of a failed Verification decides the response.
REASON_ORDER: dict[Reason, int] = {r: i for i, r in enumerate((
    Reason.MALFORMED_IDENTITY, Reason.MISSING_ALG, Reason.BAD_ALG, Reason.MISSING_PPT, Reason.BAD_PPT,
    Reason.X5U_MISMATCH, Reason.BAD_CLAIMS,
    Reason.STALE_IAT, Reason.FUTURE_IAT, Reason.X5U_REFUSED, Reason.X5U_FETCH_FAILED,
    Reason.CERT_UNTRUSTED, Reason.CERT_NO_TNAUTHLIST, Reason.CERT_EXPIRED, Reason.CERT_REVOKED,
    Reason.BAD_SIGNATURE, Reason.ORIG_MISMATCH, Reason.DEST_MISMATCH, Reason.NO_IDENTITY,
    Reason.TOO_MANY_IDENTITY, Reason.DIV_CHAIN_BROKEN, Reason.DIV_NO_HISTORY, Reason.RCDI_MISMATCH))}
# member reads of an enum class cost more than a module global: the ones of every call
# (Final: compiled, a read of these is a C static instead of a module dict look-up)
_PASSED: Final = Verstat.PASSED
_FAILED: Final = Verstat.FAILED
_BAD_SIGNATURE: Final = Reason.BAD_SIGNATURE
_BLAKE2B_16: Final = hashlib.blake2b(digest_size=16)  # never updated: signature_key copies it
_MALFORMED: Final = Verification(Verstat.FAILED, reasons=(Reason.MALFORMED_IDENTITY,))
_TOO_MANY: Final = Verification(Verstat.FAILED, reasons=(Reason.TOO_MANY_IDENTITY,),
                         passports=(PassportResult("?", "failed", (Reason.TOO_MANY_IDENTITY,)),))


@dataclass(slots=True)
class _Token:
    """A PASSporT whose signature verified with `cred` (the exact credential object)."""

    passport: pp.Passport
    claims: pp.ShakenClaims
    cred: Credential
    replay_key: str

    def __init__(self, passport: pp.Passport, claims: pp.ShakenClaims, cred: Credential, replay_key: str) -> None:
        # written out (dataclass keeps it): compiled, where the generated one runs interpreted
        self.passport = passport
        self.claims = claims
        self.cred = cred
        self.replay_key = replay_key


class Verifier:
    def __init__(self, cfg: ShakenConfig, fetcher: CertFetcher, l2: CertStore | None = None,
                 trust: TrustStore | None = None, token_cache_size: int = DEFAULT_TOKEN_CACHE,
                 metrics: MetricHooks = NO_METRICS) -> None:
        self.cfg = cfg
        self.counters = VerifierCounters()
        self.creds = CredentialCache(cfg, fetcher, l2, trust, metrics, self.counters)
        # token bytes -> verified PASSporT; 0 turns it off (benchmarks of the full path)
        self.tokens: LruCache[str, _Token] | None = LruCache(token_cache_size) if token_cache_size > 0 else None
        # shaken.rcd.fetch: (url, alg, digest) -> (verdict, until)
        self._rcd_seen: LruCache[tuple[str, str, bytes], tuple[Reason | None, float]] = LruCache(1024)

    # -- public ------------------------------------------------------------------------------
    async def verify(self, identities: Sequence[str], orig: Sequence[str], dest: Sequence[str],
                     now: float, *, trunk: str | None = None,
                     history: Sequence[str] | None = None) -> Verification:
        """``trunk``: whose budget of x5u downloads this call spends ("": traffic from no trunk,
        one budget for all of it, as its source address may be forged; None: no budget).
        ``history``: the canonical forms of the numbers the call's History-Info and Diversion
        headers name (div PASSporTs must find their retarget there); None: not checked."""
        if not identities:  # an unsigned call (half of a US gateway's traffic): nothing to check
            self.counters.none += 1
            return NOT_VERIFIED
        TRUNK.set(trunk)
        try:
            result = await self._verify(identities, tuple(orig), tuple(dest), now,
                                        tuple(history) if history is not None else None)
        except Exception:  # a bug must not drop the call: no verdict, and a loud log line
            return self._internal_error()
        return self._counted(result)

    def verify_now(self, identities: Sequence[str], orig: Sequence[str], dest: Sequence[str],
                   now: float) -> Verification | None:
        """``verify``'s answer when it has nothing to wait for: no Identity, or the usual one
        shaken PASSporT whose certificate is cached and fresh (``CredentialCache.check_now``),
        with the same result and the same counts. None, having counted nothing, for anything
        else (several or comma-separated values, a download, a CRL to read): ask ``verify``.
        ``TRUNK`` is left alone: only a download reads it, and a download goes through ``verify``."""
        if not identities:
            self.counters.none += 1
            return NOT_VERIFIED
        if len(identities) != 1 or "," in identities[0]:
            return None
        try:
            hdr = parse_identity(identities[0].strip())
            if hdr is None or hdr.ppt != "shaken":
                return None
            outcome = self._verify_one_now(hdr, tuple(orig), tuple(dest), now)
        except Exception:  # as verify
            return self._internal_error()
        return self._counted(outcome[0]) if outcome is not None else None

    def _counted(self, result: Verification) -> Verification:
        if result.verstat is _PASSED:
            self.counters.passed += 1
        elif result.verstat is _FAILED:
            self.counters.failed += 1
        else:
            self.counters.none += 1
        return result

    def _internal_error(self) -> Verification:
        log.exception("verification failed internally")
        self.counters.internal_errors += 1
        return Verification(Verstat.NONE)

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
                      now: float, history: tuple[str, ...] | None) -> Verification:
        if len(identities) == 1 and "," not in identities[0]:
            # the usual call: one shaken header, no div; same outcome as the general loop below
            hdr = parse_identity(identities[0].strip())
            if hdr is not None and hdr.ppt == "shaken":
                return (await self._verify_one(hdr, orig, dest, now))[0]
        values: list[str] = []
        for raw in identities:
            values.extend(split_values(raw) if "," in raw else (raw.strip(),))
            if len(values) > self.cfg.max_identity:
                # refused unread: no decoding, no download for a flood of headers
                return _TOO_MANY
        # ATIS-1000074 order: the SHAKEN PASSporT decides; then div (chained to it), then rcd
        kinds: list[str] = []
        shaken: list[tuple[int, IdentityHeader | None]] = []
        divs: list[tuple[int, IdentityHeader]] = []
        rcds: list[tuple[int, IdentityHeader]] = []
        for index, value in enumerate(values):
            hdr = parse_identity(value)
            ppt = _ppt_of(hdr, "ppt" in self.cfg.identity_lenient)
            if ppt == "shaken" or hdr is None or ppt == "?":
                shaken.append((index, hdr))  # unparseable: it may have been shaken, report it
                ppt = "shaken" if hdr is not None else "?"
            elif ppt == "div" and hdr is not None:
                divs.append((index, hdr))
            elif ppt == "rcd" and hdr is not None:
                rcds.append((index, hdr))
            kinds.append(ppt or "?")
        report: list[PassportResult] = [PassportResult(kind, "ignored") for kind in kinds]
        result = NOT_VERIFIED
        claims: pp.ShakenClaims | None = None
        decided = False
        for index, hdr in shaken:
            if decided:
                report[index] = PassportResult(kinds[index], "skipped")  # one passed: enough (RFC 8224 6.2)
                continue
            outcome = await self._verify_one(hdr, orig, dest, now) if hdr else (_MALFORMED, None)
            report[index] = _report(kinds[index], outcome[0].verstat, outcome[0].reasons)
            if outcome[0].verstat is Verstat.PASSED or result is NOT_VERIFIED:
                result, claims = outcome
            decided = outcome[0].verstat is Verstat.PASSED
        div_infos: tuple[DivInfo, ...] = ()
        if divs:
            div_infos = await self._divs([hdr for _, hdr in divs], claims, dest, history, now)
            for (index, _), info in zip(divs, div_infos, strict=False):
                report[index] = PassportResult("div", "passed" if info.valid else "failed", info.reasons)
        rcd: bool | None = None
        if rcds:
            rcd = True
            for index, hdr in rcds:
                reasons = await self._rcd(hdr, orig, dest, now)
                report[index] = _report("rcd", Verstat.FAILED if reasons else Verstat.PASSED, reasons)
                rcd = rcd and not reasons
        return replace(result, div=div_infos, rcd=rcd, passports=tuple(report))

    # -- one shaken PASSporT -------------------------------------------------------------------
    async def _verify_one(self, hdr: IdentityHeader, orig: tuple[str, ...], dest: tuple[str, ...],
                          now: float) -> tuple[Verification, pp.ShakenClaims | None]:
        token = self.tokens.get(hdr.token) if self.tokens is not None else None
        read = self._read(hdr, token, now)
        if read is None:
            return _MALFORMED, None
        passport, claims, reasons, x5u = read
        checked: tuple[Credential | None, list[Reason]] | None = None
        if not reasons and isinstance(x5u, str):
            assert claims is not None  # else BAD_CLAIMS is in reasons
            checked = await self.creds.check(x5u, passport, claims.iat, claims.orig_tn, now,
                                             token.cred if token is not None else None)
        return self._verdict(hdr, token, passport, claims, reasons, x5u, checked, orig, dest)

    def _verify_one_now(self, hdr: IdentityHeader, orig: tuple[str, ...], dest: tuple[str, ...],
                        now: float) -> tuple[Verification, pp.ShakenClaims | None] | None:
        """``_verify_one`` without waiting (``verify_now``); None, with nothing counted, when the
        certificate check would wait."""
        tokens = self.tokens
        token = tokens.peek(hdr.token) if tokens is not None else None
        read = self._read(hdr, token, now)
        if read is None:
            if tokens is not None:
                tokens.count_miss()  # _verify_one's look-up: a miss (not found by peek)
            return _MALFORMED, None
        passport, claims, reasons, x5u = read
        checked: tuple[Credential | None, list[Reason]] | None = None
        if not reasons and isinstance(x5u, str):
            assert claims is not None
            checked = self.creds.check_now(x5u, passport, claims.iat, claims.orig_tn, now,
                                           token.cred if token is not None else None)
            if checked is None:
                return None
        if tokens is not None:
            if token is None:
                tokens.count_miss()  # what _verify_one's look-up counts when peek found nothing
            else:
                tokens.get(hdr.token)  # counted and moved as _verify_one's look-up
        return self._verdict(hdr, token, passport, claims, reasons, x5u, checked, orig, dest)

    def _read(self, hdr: IdentityHeader, token: _Token | None, now: float
              ) -> tuple[pp.Passport, pp.ShakenClaims | None, list[Reason], object] | None:
        """The PASSporT (decoded, or the verified token's) and the checks that need no
        certificate: (passport, claims, reasons, x5u); None when it does not decode."""
        claims: pp.ShakenClaims | None
        if token is None:
            passport = pp.decode(hdr.token)  # None for compact form (empty payload) and garbage
            if passport is None:
                return None
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
        return passport, claims, reasons, passport.header.get("x5u")

    def _verdict(self, hdr: IdentityHeader, token: _Token | None, passport: pp.Passport,
                 claims: pp.ShakenClaims | None, reasons: list[Reason], x5u: object,
                 checked: tuple[Credential | None, list[Reason]] | None,
                 orig: tuple[str, ...], dest: tuple[str, ...]) -> tuple[Verification, pp.ShakenClaims | None]:
        """The result, given the certificate check's answer (None: not checked)."""
        spc: str | None = None
        replay_key: str | None = None
        if checked is not None:
            assert claims is not None
            cred, found = checked
            reasons += found
            if cred is not None:
                spc = cred.spc
                if token is not None and cred is token.cred:
                    self.counters.token_cache_hits += 1  # same bytes, same key: the same verdict
                    replay_key = token.replay_key
                elif _BAD_SIGNATURE not in found:
                    replay_key = signature_key(passport.signature)
                    if self.tokens is not None:
                        self.tokens.put(hdr.token, _Token(passport, claims, cred, replay_key))
        if claims is not None:
            reasons += _number_reasons(claims, orig, dest)
        return _result(reasons, claims, x5u, spc, replay_key if self.cfg.replay else None), claims

    # -- div PASSporTs (RFC 8946) ----------------------------------------------------------------
    async def _divs(self, hdrs: list[IdentityHeader], shaken: pp.ShakenClaims | None, dest: tuple[str, ...],
                    history: tuple[str, ...] | None, now: float) -> tuple[DivInfo, ...]:
        """Each div PASSporT checked on its own (header, iat, certificate, signature), then as a
        link: the chain starts at the shaken PASSporT's dest; a div whose div.tn is the current
        destination and whose orig is the shaken orig moves it to its own dest (RFC 8946
        section 4: the diverting party signs the number it was called on). Every retarget must
        also be in the call's History-Info or Diversion (``history``: canonical forms of the
        numbers they name), and the last destination must be the call's (To/Request-URI)."""
        decoded = [await self._div(hdr, now) for hdr in hdrs]
        links: dict[int, list[Reason]] = {i: [] for i in range(len(decoded))}
        current = shaken.dest_tns if shaken is not None else ()
        pending = [i for i, (claims, _, own) in enumerate(decoded) if claims is not None and not own]
        last: int | None = None
        while pending and shaken is not None:
            nxt = next((i for i in pending if pp.tn_matches(decoded[i][0].div_tn, current)  # type: ignore[union-attr]
                        ), None)
            if nxt is None:
                break
            pending.remove(nxt)
            claims = decoded[nxt][0]
            assert claims is not None
            if not pp.tn_matches(claims.orig_tn, (shaken.orig_tn,)):
                links[nxt].append(Reason.DIV_CHAIN_BROKEN)
            if history is not None and not pp.tn_matches(claims.div_tn, history):
                links[nxt].append(Reason.DIV_NO_HISTORY)
            current, last = claims.dest_tns, nxt
        for i in pending:
            links[i].append(Reason.DIV_CHAIN_BROKEN)  # links to nothing: no shaken, or a dest mismatch
        if last is not None and not any(pp.tn_matches(tn, dest) for tn in current):
            links[last].append(Reason.DIV_CHAIN_BROKEN)  # the call is not where the chain ends
        out = []
        for i, (claims, x5u, own) in enumerate(decoded):
            reasons = tuple(sorted(set(own + links[i]), key=REASON_ORDER.__getitem__))
            out.append(DivInfo(claims.orig_tn if claims else None, claims.dest_tns if claims else (),
                               claims.div_tn if claims else None, x5u, not reasons, reasons))
        return tuple(out)

    async def _div(self, hdr: IdentityHeader, now: float) -> tuple[pp.DivClaims | None, str | None, list[Reason]]:
        """One div PASSporT on its own: (claims, x5u, reasons)."""
        passport = pp.decode(hdr.token) if hdr.is_full_form else None
        claims = pp.div_claims(passport) if passport is not None else None
        if passport is None:
            return None, hdr.info, [Reason.MALFORMED_IDENTITY]
        x5u = passport.header.get("x5u")
        reasons = self._own_checks(hdr, passport, "div", claims.iat if claims else None, now)
        if claims is None:
            reasons.append(Reason.BAD_CLAIMS)
        if not reasons and isinstance(x5u, str) and claims is not None:
            reasons += (await self.creds.check(x5u, passport, claims.iat, None, now))[1]
        return claims, x5u if isinstance(x5u, str) else hdr.info, reasons

    # -- rcd PASSporTs (RFC 9795) ----------------------------------------------------------------
    async def _rcd(self, hdr: IdentityHeader, orig: tuple[str, ...], dest: tuple[str, ...],
                   now: float) -> tuple[Reason, ...]:
        """An rcd PASSporT: header, iat, certificate and signature like any PASSporT, its orig
        and dest the call's, and every rcdi digest of inline content matching (rcd.py)."""
        passport = pp.decode(hdr.token) if hdr.is_full_form else None
        if passport is None:
            return (Reason.MALFORMED_IDENTITY,)
        claims = rcd_claims(passport)
        reasons = self._own_checks(hdr, passport, "rcd", claims.iat if claims else None, now)
        if claims is None:
            reasons.append(Reason.BAD_CLAIMS)
        else:
            if not pp.tn_matches(claims.orig_tn, orig):
                reasons.append(Reason.ORIG_MISMATCH)
            if not any(pp.tn_matches(tn, dest) for tn in claims.dest_tns):
                reasons.append(Reason.DEST_MISMATCH)
            rcdi = check_rcdi(claims.rcd, claims.rcdi)
            if not rcdi.ok:
                reasons.append(Reason.RCDI_MISMATCH)
        x5u = passport.header.get("x5u")
        if claims is not None and isinstance(x5u, str) and not reasons:
            reasons += (await self.creds.check(x5u, passport, claims.iat, None, now))[1]
            if not reasons and rcdi.urls and self.cfg.rcd_fetch:
                # only for a PASSporT whose signature verified: a stranger cannot make us fetch
                reasons += await self._rcd_content(rcdi.urls, now)
        return tuple(sorted(set(reasons), key=REASON_ORDER.__getitem__))

    async def _rcd_content(self, urls: tuple[tuple[str, str, bytes], ...], now: float) -> list[Reason]:
        """shaken.rcd.fetch: download what rcdi names by URL (the x5u fetcher: its SSRF guard,
        ports, size bound, timeout), at most MAX_RCD_FETCHES per PASSporT, each URL's verdict
        cached for RCD_CONTENT_TTL seconds; a failed download or a wrong digest fails the rcd."""
        reasons: list[Reason] = []
        for url, alg, digest in urls[:MAX_RCD_FETCHES]:
            cached = self._rcd_seen.get((url, alg, digest))
            if cached is not None and cached[1] > now:
                if cached[0] is not None:
                    reasons.append(cached[0])
                continue
            verdict: Reason | None
            try:
                fetched = await self.creds.fetcher.fetch(url)
                verdict = None if content_matches(fetched.body, alg, digest) else Reason.RCDI_MISMATCH
            except FetchError as exc:
                verdict = exc.reason
            except Exception:  # noqa: BLE001 - a downloader bug fails this rcd, not the call
                log.exception("rcd content %s: fetcher error", url)
                verdict = Reason.X5U_FETCH_FAILED
            self._rcd_seen.put((url, alg, digest), (verdict, now + RCD_CONTENT_TTL))
            if verdict is not None:
                reasons.append(verdict)
        if len(urls) > MAX_RCD_FETCHES:
            reasons.append(Reason.RCDI_MISMATCH)  # more than we check: not verified
        return reasons

    def _own_checks(self, hdr: IdentityHeader, passport: pp.Passport, ppt: str, iat: int | None,
                    now: float) -> list[Reason]:
        """The checks that need no download: JOSE header, Identity parameters, iat window."""
        reasons = pp.check_header(passport, ppt, hdr.info)
        if hdr.alg != "ES256":
            reasons.append(Reason.BAD_ALG)
        if hdr.info is None:
            reasons.append(Reason.MALFORMED_IDENTITY)
        if iat is not None:
            late = pp.check_iat(iat, now, self.cfg.iat_max_age, self.cfg.iat_max_future)
            if late is not None:
                reasons.append(late)
        return reasons


def _report(ppt: str, verstat: Verstat, reasons: tuple[Reason, ...]) -> PassportResult:
    if verstat is Verstat.PASSED:
        return PassportResult(ppt, "passed")
    return PassportResult(ppt, "failed", reasons)


def signature_key(signature: bytes) -> str:
    """The seen-set key of a PASSporT: 16 bytes of BLAKE2b over ``r``, the first half of its
    ES256 signature, as hex. ``r`` comes from the signer's random nonce, so two calls share it
    only by replay; ``s`` is left out because anyone can turn (r, s) into the equally valid
    (r, n - s) (ECDSA malleability), which would make a replayed token look new."""
    hasher = _BLAKE2B_16.copy()  # a copy of a fresh one: cheaper than building it from its parameters
    hasher.update(signature[:32])
    return hasher.hexdigest()


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
            spc: str | None, replay_key: str | None) -> Verification:
    ordered = tuple(sorted(set(reasons), key=REASON_ORDER.__getitem__)) if reasons else ()
    verstat = _FAILED if ordered else _PASSED
    if claims is None:
        return Verification(verstat, x5u=x5u if isinstance(x5u, str) else None, spc=spc, reasons=ordered)
    # positional: verstat, attest, orig_tn, dest_tns, origid, x5u, spc, iat, reasons, div, rcd,
    # passports, replay_key (keywords cost more: this is every signed call's path)
    return Verification(verstat, claims.attest, claims.orig_tn, claims.dest_tns, claims.origid,
                        x5u if isinstance(x5u, str) else None, spc, claims.iat, ordered, (), None, (),
                        replay_key)
