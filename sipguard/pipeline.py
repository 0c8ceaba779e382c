"""The INVITE pipeline: the one place that knows the order of the steps.

    trunk -> call numbers -> verify Identity -> store lookups + limits (one round trip)
          -> Facts -> policy -> (sign) -> Outcome

``serve`` (proxy/, through ``Pipeline.start``: the Outcome at once when nothing has to wait)
and ``replay`` (replay/) both call ``Pipeline.decide``; nothing in
here knows which one it is except through the clock it was given. It never raises on
bad input: a bad Identity is a reason code, an unreachable store is ``degraded``.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sipguard.clock import Clock, SystemClock
from sipguard.config import PipelineSettings
from sipguard.detectors import spoof_facts
from sipguard.numbers import TN, parse_tn
from sipguard.observe.hooks import NO_METRICS, MetricHooks
from sipguard.policy.decision import FORWARD, Decision, reject
from sipguard.policy.facts import Facts, shared_text, shared_texts
from sipguard.shaken.passport import tn_matches
from sipguard.shaken.reasons import RFC8224_RESPONSE, Reason, Verstat
from sipguard.shaken.result import NOT_VERIFIED, Verification
from sipguard.store.base import LookupKeys, Lookups, lookup_now_of
from sipguard.store.replay import call_key, replay_ttl
from sipguard.threats import NO_THREATS, ThreatIndex
from sipguard.trunks import TrunkTable

if TYPE_CHECKING:
    from sipguard.config import Config, Trunk
    from sipguard.policy.engine import PolicyHolder
    from sipguard.shaken.sign import Signer
    from sipguard.shaken.verify import Verifier
    from sipguard.sip import Request
    from sipguard.store.base import Store

log = logging.getLogger("sipguard.pipeline")
MAX_HISTORY = 32   # History-Info / Diversion entries read per header (a div check needs a few)

_PASSED = Verstat.PASSED   # a module global: an enum member read per call costs more

UNKNOWN_SOURCE = reject(403, "Forbidden", ("Reason", 'SIP;cause=403;text="unknown source"'),
                        rule="unknown-source")


@dataclass(frozen=True, slots=True)
class Call:
    """The numbers of an INVITE, normalised once (sipguard.numbers).

    ``identity`` is the caller identity the callee is shown, and the only one a PASSporT's
    orig is checked against and verstat is written on (ATIS-1000074: the P-Asserted-Identity
    when present, otherwise From; RFC 3325 lets a trusted network assert it over From): every
    P-Asserted-Identity value (RFC 3325 allows a sip and a tel URI), or From when there is
    none. A From beside a PAI is not displayed, so it can neither pass nor fail a PASSporT.
    """

    call_id: str
    caller: TN            # the identity's number (its first value carrying one), else From
    callee: TN            # Request-URI when it carries a number, else To
    from_tn: TN
    to_tn: TN
    identity: tuple[TN, ...]
    ruri_tn: TN
    identities: tuple[str, ...]
    caller_shown: bool    # caller is a value of identity (not From standing in for a PAI without a number)

    def __init__(self, call_id: str, caller: TN, callee: TN, from_tn: TN, to_tn: TN,
                 identity: tuple[TN, ...], ruri_tn: TN, identities: tuple[str, ...], caller_shown: bool) -> None:
        # written out (dataclass keeps it): compiled, where the generated one runs interpreted
        # (bench/RESULTS.md, session 7)
        object.__setattr__(self, "call_id", call_id)
        object.__setattr__(self, "caller", caller)
        object.__setattr__(self, "callee", callee)
        object.__setattr__(self, "from_tn", from_tn)
        object.__setattr__(self, "to_tn", to_tn)
        object.__setattr__(self, "identity", identity)
        object.__setattr__(self, "ruri_tn", ruri_tn)
        object.__setattr__(self, "identities", identities)
        object.__setattr__(self, "caller_shown", caller_shown)

    @classmethod
    def of(cls, req: Request) -> Call:
        from_tn = parse_tn(req.from_.uri)
        pai = req.pai
        identity = tuple([parse_tn(value.uri) for value in pai]) if pai else (from_tn,)
        to_tn = parse_tn(req.to.uri)
        ruri_tn = parse_tn(req.uri)
        caller = next((tn for tn in identity if tn.e164), None) or next(
            (tn for tn in identity if tn.forms), None)
        # a PAI that carries no number: lookups and policy still see From's (a DNO number
        # there stays blocked), but it is not what the callee sees: never signed, never verified
        shown = caller is not None or not pai
        callee = ruri_tn if ruri_tn.e164 or ruri_tn.emergency else to_tn
        return cls(req.call_id, caller or from_tn, callee, from_tn, to_tn, identity, ruri_tn,
                   tuple(req.identity), shown)

    @property
    def emergency(self) -> bool:
        return self.callee.emergency or self.to_tn.emergency or self.ruri_tn.emergency

    def orig_candidates(self) -> tuple[str, ...]:
        """What a PASSporT's orig may say: the forms of the identity's numbers, nothing else."""
        out: list[str] = []
        for tn in self.identity:
            for form in tn.forms:
                if form not in out:
                    out.append(form)
        return tuple(out)

    def dest_candidates(self) -> tuple[str, ...]:
        out: list[str] = []
        for tn in (self.to_tn, self.ruri_tn):
            for form in tn.forms:
                if form not in out:
                    out.append(form)
        return tuple(out)

    def vouched_for(self, orig_tn: str | None) -> Call:
        """After a pass: the call whose caller is the identity value the PASSporT named, when
        the PAI carries two numbers and it is not the first (ATIS-1000074 checks each value)."""
        if orig_tn is None or len(self.identity) < 2 or tn_matches(orig_tn, self.caller.forms):
            return self
        for tn in self.identity:
            if tn_matches(orig_tn, tn.forms):
                return Call(self.call_id, tn, self.callee, self.from_tn, self.to_tn, self.identity,
                            self.ruri_tn, self.identities, True)
        return self


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything decided about one INVITE: what to do and why."""

    time: float
    source: tuple[str, int]
    transport: str
    call: Call
    trunk: Trunk | None
    verification: Verification
    lookups: Lookups
    facts: Facts
    decision: Decision
    identity_added: str | None = None   # the Identity header value sipguard signed, if any
    signed_origid: str | None = None
    signed_attest: str | None = None    # the attestation it gave (decided by decision.rule)

    def __init__(self, time: float, source: tuple[str, int], transport: str, call: Call, trunk: Trunk | None,
                 verification: Verification, lookups: Lookups, facts: Facts, decision: Decision,
                 identity_added: str | None = None, signed_origid: str | None = None,
                 signed_attest: str | None = None) -> None:
        # written out, as Call's
        object.__setattr__(self, "time", time)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "call", call)
        object.__setattr__(self, "trunk", trunk)
        object.__setattr__(self, "verification", verification)
        object.__setattr__(self, "lookups", lookups)
        object.__setattr__(self, "facts", facts)
        object.__setattr__(self, "decision", decision)
        object.__setattr__(self, "identity_added", identity_added)
        object.__setattr__(self, "signed_origid", signed_origid)
        object.__setattr__(self, "signed_attest", signed_attest)

    @property
    def signed(self) -> bool:
        return self.identity_added is not None


def default_decision(facts: Facts) -> Decision:
    """Without a policy file: reject failed verification with its RFC 8224 code, else forward."""
    if facts.verstat == Verstat.FAILED and facts.reasons:
        status, phrase = RFC8224_RESPONSE[Reason(facts.reasons[0])]
        return reject(status, phrase, ("Reason", f'SIP;cause={status};text="{facts.reasons[0]}"'),
                      rule="failed-verification")
    return FORWARD


class Pipeline:
    """Owns the verifier, the store, the policy and the signer of one process."""

    def __init__(self, settings: PipelineSettings, clock: Clock, verifier: Verifier, store: Store,
                 policy: PolicyHolder | None, signer: Signer | None) -> None:
        self.clock = clock
        self.verifier = verifier
        self.store = store
        self.policy = policy
        self.signer = signer
        # trunk id -> trunk.score, replaced whole by the analytics refresher (records/upstreams.py
        # ScoreRefresher) every ``upstreams.score_interval``: a dict lookup per call, no round trip
        self.scores: dict[str, int] = {}
        self._settings(settings)

    def _settings(self, settings: PipelineSettings) -> None:
        self.settings = settings
        self.trunks = TrunkTable(settings.trunks)
        self._fail_closed = settings.store_failure == "fail-closed"
        self._trusted = settings.trusted_proxies
        self._store_unavailable = reject(
            503, "Service Unavailable", ("Retry-After", str(settings.retry_after)),
            ("Reason", 'SIP;cause=503;text="state store unavailable"'), rule="store-failure")

    @classmethod
    async def create(cls, config: Config, clock: Clock, *, policy_path: str | None = None,
                     x5u_map: dict[str, bytes] | None = None, store: Store | None = None,
                     metrics: MetricHooks = NO_METRICS) -> Pipeline:
        """``metrics``: where the store and the verifier report their round trips and downloads."""
        from sipguard.policy.engine import PolicyHolder
        from sipguard.shaken.fetchers import make_fetcher
        from sipguard.shaken.sign import Signer
        from sipguard.shaken.verify import Verifier
        from sipguard.store import open_store
        from sipguard.store.datasets import load_datasets

        if store is None:
            store = open_store(config.store, config.limits, config.store_timeout, metrics=metrics,
                               detectors=config.detectors)
            await store.start()
            if config.datasets:
                await load_datasets(store, config.datasets)
        fetcher = make_fetcher(config.shaken.x5u, x5u_map=x5u_map)
        verifier = Verifier(config.shaken, fetcher, l2=store if config.store != "memory" else None,
                            metrics=metrics)
        path = policy_path or config.policy
        policy = PolicyHolder(path, config.redress) if path else None
        # the key and certificate are checked against the real time, also when replaying an
        # old capture on a capture clock: it is today's deployment being validated
        signer = Signer.load(config.signing, SystemClock().time()) if config.signing else None
        return cls(PipelineSettings.of(config), clock, verifier, store, policy, signer)

    def reconfigure(self, settings: PipelineSettings) -> None:
        """SIGHUP: take the settings that can change at run time (the store cannot).
        The caller has validated them; on a signing key problem the old signer stays."""
        from sipguard.errors import ConfigError
        from sipguard.policy.engine import PolicyHolder
        from sipguard.shaken.sign import Signer

        self.verifier.reconfigure(settings.shaken)
        if settings.detectors != self.settings.detectors:
            self.store.set_detectors(settings.detectors)   # thresholds tuned in shadow mode: no restart
        if settings.policy != self.settings.policy or settings.redress != self.settings.redress:
            self.policy = PolicyHolder(settings.policy, settings.redress) if settings.policy else None
        if settings.signing is not None:
            try:
                self.signer = Signer.load(settings.signing, SystemClock().time())
            except ConfigError as exc:
                log.error("signing key not reloaded, the old one stays: %s", exc)
        else:
            self.signer = None
        self._settings(settings)

    async def aclose(self) -> None:
        await self.verifier.aclose()
        await self.store.aclose()

    @property
    def decides_inline(self) -> bool:
        """Whether ``decide`` may run outside a task: the store answers without waiting (a
        network store's lookups wait under ``asyncio.timeout``, which needs a task; an x5u
        download runs in a task of its own either way). The proxy then decides at once."""
        return bool(getattr(self.store, "lookup_inline", False))

    def upstream_of(self, req: Request, source: tuple[str, int]) -> tuple[str, int]:
        """The address the call came from. Behind a trusted front proxy (Kamailio) that is not
        the packet's source but what the proxy says: an ``X-Sipguard-Source: ip:port`` header it
        adds, else the sent-by of the Via below its own (with received/rport)."""
        if not self._trusted or not self.trunks.trusted(source[0], self._trusted):
            return source
        claimed = req.header("X-Sipguard-Source")
        if claimed:
            from sipguard.addresses import split_hostport

            try:
                host, port = split_hostport(claimed.strip())
                return host, port or 5060
            except ValueError:
                log.warning("bad X-Sipguard-Source %r from %s", claimed, source[0])
        vias = req.vias
        return vias[1].sent_by_addr() if len(vias) > 1 else source

    async def decide(self, req: Request, source: tuple[str, int], transport: str) -> Outcome:
        started = self.start(req, source, transport)
        return started if isinstance(started, Outcome) else await started

    def start(self, req: Request, source: tuple[str, int],
              transport: str) -> Outcome | Coroutine[Any, Any, Outcome]:
        """``decide`` without a coroutine when nothing has to wait: its Outcome when the
        verification is at hand (no Identity, or one PASSporT whose certificate is cached:
        ``Verifier.verify_now``) and the store answers at once (``lookup_now_of``); else the
        coroutine that finishes the decision from where it has to wait (the same steps, each
        run once). The proxy sends the answer at once, or runs the coroutine (sipguard.aio)."""
        now = self.clock.time()
        source = self.upstream_of(req, source)
        trunk = self.trunks.classify(source[0])
        call = Call.of(req)
        if trunk is None and self.settings.unknown_source == "reject" and not call.emergency:
            return self._outcome(now, source, transport, call, None, NOT_VERIFIED, Lookups(),
                                 Facts(source_ip=source[0]), UNKNOWN_SOURCE)
        identities = call.identities
        verification = self.verifier.verify_now(identities, call.orig_candidates(), call.dest_candidates(),
                                                now) if len(identities) < 2 else None
        if verification is None:
            return self._verified_later(req, now, source, transport, trunk, call)
        if verification.verstat is _PASSED:
            call = call.vouched_for(verification.orig_tn)
        lookup_now = lookup_now_of(self.store)
        if lookup_now is None:
            return self._looked_up_later(now, source, transport, trunk, call, verification)
        return self._conclude(now, source, transport, trunk, call, verification,
                              lookup_now(self._keys(trunk, call, verification, source, now), now))

    async def _verified_later(self, req: Request, now: float, source: tuple[str, int], transport: str,
                              trunk: Trunk | None, call: Call) -> Outcome:
        identities = call.identities
        # History-Info / Diversion are read only for a call with several Identity values (div)
        history = call_history(req) if len(identities) > 1 or (identities and "," in identities[0]) else None
        verification = await self.verifier.verify(identities, call.orig_candidates(),
                                                  call.dest_candidates(), now,
                                                  trunk=trunk.id if trunk else "", history=history)
        if verification.verstat is _PASSED:
            call = call.vouched_for(verification.orig_tn)
        return await self._looked_up_later(now, source, transport, trunk, call, verification)

    async def _looked_up_later(self, now: float, source: tuple[str, int], transport: str, trunk: Trunk | None,
                               call: Call, verification: Verification) -> Outcome:
        lookups = await self.store.lookup(self._keys(trunk, call, verification, source, now), now)
        return self._conclude(now, source, transport, trunk, call, verification, lookups)

    def _keys(self, trunk: Trunk | None, call: Call, verification: Verification, source: tuple[str, int],
              now: float) -> LookupKeys:
        replay_key = verification.replay_key
        return LookupKeys(
            trunk=trunk.id if trunk else None,
            trunk_frn=trunk.provider.frn if trunk else None,
            trunk_rmd=trunk.provider.rmd if trunk else None,
            source_ip=source[0], caller=call.caller.e164, callee=call.callee.e164,
            spc=verification.spc,
            passport=replay_key,
            passport_call=call_key(call.call_id) if replay_key else "",
            passport_ttl=replay_ttl(verification.iat or 0, now, self.settings.shaken.iat_max_age,
                                    self.settings.shaken.iat_max_future) if replay_key else 0.0)

    def _conclude(self, now: float, source: tuple[str, int], transport: str, trunk: Trunk | None, call: Call,
                  verification: Verification, lookups: Lookups) -> Outcome:
        """Facts, policy and signing, given the verification and the store's answer."""
        facts = build_facts(trunk, call, verification, lookups, source[0], self.store.threats,
                            self.scores.get(trunk.id) if trunk is not None else None)

        if lookups.degraded and self._fail_closed and not facts.emergency:
            decision = self._store_unavailable
        elif self.policy is not None:
            decision = self.policy.current.evaluate(facts)
        else:
            decision = default_decision(facts)

        identity = origid = None
        if decision.action == "forward" and decision.sign and self.signer is not None:
            identity, origid = self._sign(trunk, call, verification, now)
        attest = self.signer.cfg.attest if identity is not None and self.signer is not None else None
        return self._outcome(now, source, transport, call, trunk, verification, lookups, facts,
                             decision, identity, origid, attest)

    def _sign(self, trunk: Trunk | None, call: Call, verification: Verification,
              now: float) -> tuple[str | None, str | None]:
        from sipguard.shaken.sign import should_sign

        assert self.signer is not None and self.settings.signing is not None
        if trunk is None or trunk.role != "foreign" or not call.caller_shown:
            return None, None  # the orig signed is the number the callee is shown (ATIS-1000074)
        if not should_sign(bool(call.identities), call.caller,
                           verification.verstat is Verstat.FAILED, self.settings.signing):
            return None, None
        dest = call.callee.e164 or call.to_tn.e164
        if call.caller.e164 is None or dest is None:
            return None, None
        origid = self.signer.origid_for(trunk.id)
        return self.signer.sign(call.caller.e164, (dest,), now, origid), origid

    @staticmethod
    def _outcome(now: float, source: tuple[str, int], transport: str, call: Call, trunk: Trunk | None,
                 verification: Verification, lookups: Lookups, facts: Facts, decision: Decision,
                 identity: str | None = None, origid: str | None = None,
                 attest: str | None = None) -> Outcome:
        return Outcome(now, source, transport, call, trunk, verification, lookups, facts, decision,
                       identity, origid, attest)


def build_facts(trunk: Trunk | None, call: Call, ver: Verification, lookups: Lookups,
                source_ip: str, threats: ThreatIndex = NO_THREATS, score: int | None = None) -> Facts:
    caller = call.caller
    passed = ver.verstat is Verstat.PASSED
    neighbor, same, us_foreign, a_bad = spoof_facts(
        caller.e164, call.callee.e164, caller.us, caller.valid, ver.attest, passed, bool(call.identities),
        trunk is not None and trunk.role == "foreign", None if lookups.degraded else lookups.caller_dno)
    trunk_threat = threats.trunk(trunk) if threats.entries else None
    signer_threat = threats.signer(ver.spc, lookups.signer_frn) if threats.entries and ver.spc else None
    return Facts(
        verstat=shared_text(ver.verstat),
        attest=ver.attest,
        reasons=shared_texts(ver.reasons),
        trunk=trunk.id if trunk else None,
        trunk_role=trunk.role if trunk else None,
        # a store that did not answer knows nothing but the RMD answers it remembers: unknown
        # (null) facts match no rule, so fail-open never turns an outage into "absent" blocks
        trunk_rmd=lookups.trunk_rmd,
        trunk_implementation=lookups.trunk_implementation,
        trunk_frn=trunk.provider.frn if trunk else None,
        trunk_score=score,
        signer_spc=ver.spc,
        signer_rmd=lookups.signer_rmd,
        source_ip=source_ip,
        caller=caller.e164,
        callee=call.callee.e164,
        caller_nanp=caller.nanp,
        caller_us=caller.us,
        caller_valid=caller.valid,
        caller_invalid_reason=caller.invalid_reason,
        caller_dno=lookups.caller_dno,
        caller_anonymous=caller.anonymous,
        list=lookups.list,
        limited=lookups.limited,
        notice=lookups.notice,
        store_degraded=lookups.degraded,
        campaign_fanout=lookups.campaign_fanout,
        campaign_burst=lookups.campaign_burst,
        spoof_neighbor=neighbor,
        spoof_same=same,
        spoof_us_cid_foreign_trunk=us_foreign,
        spoof_a_on_bad_number=a_bad,
        trunk_threat=trunk_threat.source if trunk_threat is not None else None,
        signer_threat=signer_threat.source if signer_threat is not None else None,
        emergency=call.emergency,
        div_count=len(ver.div),
        div_verstat=str(ver.div_verstat) if ver.div else "No-TN-Validation",
        rcd_present=ver.rcd is not None,
        rcd_verified=ver.rcd,
        # no verified signature: nothing to replay; else the seen-set's answer (None: store down)
        passport_replayed=lookups.passport_replayed if ver.replay_key else False,
    )


def call_history(req: Request) -> tuple[str, ...]:
    """The canonical forms of every number the call's History-Info (RFC 7044) and Diversion
    (RFC 5806) headers name: where a div PASSporT's retarget must appear. A value that does not
    parse names nothing."""
    from sipguard.sip import parse_name_addr
    from sipguard.sip.errors import SipParseError

    out: list[str] = []
    for name in ("History-Info", "Diversion"):
        try:
            values = req.headers(name)
        except SipParseError:
            continue
        for value in values[:MAX_HISTORY]:
            try:
                uri = parse_name_addr(value).uri
            except (SipParseError, ValueError):
                continue
            for form in parse_tn(uri).forms:
                if form not in out:
                    out.append(form)
    return tuple(out)
