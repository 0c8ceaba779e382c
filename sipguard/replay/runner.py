"""Feed the INVITEs of a capture through the real pipeline, at the capture's time.

For every SIP message read from the capture: parse it with ``sipguard.sip.parse`` (the
parser ``serve`` uses), keep INVITE requests only, skip retransmissions (the same
transaction as serve sees it, ``sipguard.sip.transaction.server_key``, and the same
Call-ID), set the clock, and ask ``Pipeline.decide``. Nothing in the pipeline
knows it is a replay except the clock. This module never imports ``sipguard.proxy``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sipguard.clock import Clock, ManualClock, SystemClock
from sipguard.errors import SipguardError
from sipguard.replay.capture import CapturedMessage, CaptureReport, iter_sip
from sipguard.sip.transaction import server_key

if TYPE_CHECKING:
    from sipguard.config import Config

MALFORMED = "malformed-sip"
NO_VALIDATION = "No-TN-Validation"
MAX_SEEN = 1_000_000       # remembered INVITE transactions, for retransmission detection

_CALL_ID = re.compile(rb"(?im)^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+)")


class ReplayError(SipguardError):
    """A replay option or input the user must fix (clock value, x5u map ...)."""


@dataclass(frozen=True, slots=True)
class ReplayDecision:
    """One INVITE transaction of the capture and what the pipeline decided (CONTRACT jsonl)."""

    time: float
    call_id: str | None
    source: str
    trunk: str | None
    caller: str | None
    callee: str | None
    verstat: str
    attest: str | None
    reasons: tuple[str, ...]
    spc: str | None
    rule: str | None
    action: str
    status: int | None
    signed: bool
    transport: str = "udp"
    packet: int = 0

    def to_json(self) -> dict[str, Any]:
        """The CONTRACT.md replay line, keys in contract order."""
        return {"time": self.time, "call_id": self.call_id, "source": self.source, "trunk": self.trunk,
                "caller": self.caller, "callee": self.callee, "verstat": self.verstat,
                "attest": self.attest, "reasons": list(self.reasons), "spc": self.spc,
                "rule": self.rule, "action": self.action, "status": self.status, "signed": self.signed}


class Decider(Protocol):
    """What the runner needs of ``sipguard.pipeline.Pipeline``."""

    async def decide(self, req: Any, source: tuple[str, int], transport: str) -> Any: ...

    async def aclose(self) -> None: ...


_HOSTPORTS: dict[tuple[str, int], str] = {}


def hostport(addr: tuple[str, int]) -> str:
    text = _HOSTPORTS.get(addr)
    if text is None:
        # a capture has few distinct sources: format each once (bounded against many)
        if len(_HOSTPORTS) >= 4096:
            _HOSTPORTS.clear()
        text = _HOSTPORTS[addr] = f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
    return text


def parse_clock(spec: str | float | None) -> tuple[str, Clock]:
    """``capture`` (default), ``now`` or an epoch number -> (mode, clock)."""
    if spec is None or spec == "capture":
        return "capture", ManualClock(0.0)
    if spec == "now":
        return "now", SystemClock()
    try:
        epoch = float(spec)
    except ValueError:
        raise ReplayError(f"--clock {spec!r}: use 'capture', 'now' or seconds since the epoch "
                          "(e.g. 1700000000)") from None
    if not 0 <= epoch < 1e11:
        raise ReplayError(f"--clock {spec!r}: not a plausible epoch time in seconds")
    return "fixed", ManualClock(epoch)


def load_x5u_map(path: str) -> dict[str, bytes]:
    """YAML ``url: PEM file`` (paths relative to the map file) -> {url: PEM bytes}."""
    from sipguard import yamlconf

    root = yamlconf.load(path)
    base = Path(path).resolve().parent
    out: dict[str, bytes] = {}
    for url in root.keys():
        if not re.match(r"https?://", url):
            raise root.error(url, "an x5u map key must be the certificate's http(s) URL")
        file = base / root.str(url)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise root.error(url, f"cannot read {file}: {exc.strerror or exc}") from None
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise root.error(url, f"{file} holds no PEM certificate")
        out[url] = data
    return out


class Replayer:
    """Turns captured messages into decisions through one pipeline. Not thread-safe."""

    def __init__(self, pipeline: Decider, clock: Clock, mode: str = "capture",
                 parse: Callable[[bytes], Any] | None = None,
                 parse_error: type[Exception] | None = None,
                 source: tuple[str, int] | None = None) -> None:
        if parse is None or parse_error is None:
            from sipguard.sip import SipParseError
            from sipguard.sip import parse as sip_parse
            parse, parse_error = parse or sip_parse, parse_error or SipParseError
        self.pipeline = pipeline
        self.clock = clock
        self._set_time = clock.set if mode == "capture" and isinstance(clock, ManualClock) else None
        self._parse = parse
        self._parse_error: type[Exception] = parse_error
        self._seen: dict[tuple[str, ...], None] = {}
        self._source = source   # the pipeline sees every INVITE from here (replay --trunk)
        self.invites = 0
        self.retransmissions = 0
        self.malformed = 0

    def _first_time(self, key: tuple[str, ...]) -> bool:
        if key in self._seen:
            self.retransmissions += 1
            return False
        if len(self._seen) >= MAX_SEEN:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = None
        return True

    async def decide(self, msg: CapturedMessage) -> ReplayDecision | None:
        """The decision for an INVITE seen for the first time; None for anything else."""
        data = msg.data
        if not data.startswith(b"INVITE ") and b"INVITE " not in data[:64]:
            return None   # cheap pre-check: most messages of a capture are not INVITEs
        try:
            req = self._parse(data)
        except self._parse_error as exc:
            partial = getattr(exc, "partial", None)
            return self._malformed(msg, partial)
        if getattr(req, "method", None) != "INVITE":
            return None
        source = hostport(msg.src)
        try:
            # serve's transaction key (RFC 3261 17.2.3); the Call-ID keeps apart calls whose
            # INVITEs carry no branch (RFC 2543 senders), which that key would merge
            key = (req.call_id, server_key(req.top_via))
        except self._parse_error:
            return self._malformed(msg, None)
        if not self._first_time(key):
            return None
        if self._set_time is not None:
            self._set_time(msg.time)
        try:
            outcome = await self.pipeline.decide(req, self._source or msg.src, msg.transport)
        except self._parse_error:
            # Headers are parsed lazily: a bad one the pipeline reads (P-Asserted-Identity,
            # From ...) surfaces here, and serve answers it with a 400 too.
            self.invites += 1
            self.malformed += 1
            try:
                call_id = req.call_id
            except self._parse_error:
                call_id = None
            return self._malformed_line(msg, call_id)
        self.invites += 1
        return decision_of(outcome, msg, source)

    def _malformed(self, msg: CapturedMessage, partial: Any) -> ReplayDecision | None:
        if partial is not None:
            if getattr(partial, "method", None) != "INVITE":
                return None
            call_id: str | None
            try:
                call_id = partial.call_id
            except self._parse_error:  # e.g. two Call-ID headers (RFC 4475 multi01)
                call_id = None
            try:
                branch = partial.top_via.branch or ""
            except self._parse_error:
                branch = ""
            key = (call_id or "", branch, hostport(msg.src))
        else:
            first = msg.data.split(b"\n", 1)[0]
            if not first.startswith(b"INVITE "):
                return None   # junk we cannot even call an INVITE: a proxy drops it silently
            m = _CALL_ID.search(msg.data)
            call_id = m.group(1).strip().decode("utf-8", "replace") if m else None
            key = ("malformed", str(hash(msg.data)), hostport(msg.src))
        if not self._first_time(key):
            return None
        self.invites += 1
        self.malformed += 1
        return self._malformed_line(msg, call_id)

    @staticmethod
    def _malformed_line(msg: CapturedMessage, call_id: str | None) -> ReplayDecision:
        return ReplayDecision(msg.time, call_id, hostport(msg.src), None, None, None, NO_VALIDATION, None,
                              (MALFORMED,), None, None, "reject", 400, False, msg.transport, msg.packet)


def trunk_source(config: Config, trunk_id: str) -> tuple[str, int]:
    """An address the config classifies as trunk ``trunk_id`` (``replay --trunk``): a capture
    taken elsewhere then replays as that trunk's traffic."""
    from sipguard.trunks import TrunkTable

    ids = [t.id for t in config.trunks]
    if trunk_id not in ids:
        import difflib

        near = difflib.get_close_matches(trunk_id, ids, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f"; the config has: {', '.join(ids) or 'no trunks'}"
        raise ReplayError(f"--trunk {trunk_id!r}: no such trunk in {config.path}{hint}")
    table = TrunkTable(config.trunks)
    trunk = table.by_id[trunk_id]
    for net in trunk.sources:
        for addr in (net.network_address, *itertools.islice(net.hosts(), 2)):
            found = table.classify(str(addr))
            if found is not None and found.id == trunk_id:
                return str(addr), 5060
    raise ReplayError(f"--trunk {trunk_id!r}: its sources are all inside other trunks' networks")


def decision_of(outcome: Any, msg: CapturedMessage, source: str | None = None) -> ReplayDecision:
    """A pipeline Outcome as a replay line (time is the capture time, whatever the clock)."""
    ver, dec, call = outcome.verification, outcome.decision, outcome.call
    reasons = ver.reasons
    # positional, in field order (16 keyword arguments cost more than the dataclass itself)
    return ReplayDecision(
        msg.time, call.call_id, source if source is not None else hostport(msg.src),
        outcome.trunk.id if outcome.trunk is not None else None,
        call.caller.e164, call.callee.e164, str(ver.verstat), ver.attest,
        tuple([str(r) for r in reasons]) if reasons else (), ver.spc, dec.rule, dec.action,
        dec.status if dec.action == "reject" else None, bool(outcome.signed), msg.transport, msg.packet)


async def open_pipeline(config: Config, clock: Clock, policy_path: str | None,
                        x5u_map: dict[str, bytes] | None) -> Decider:
    from sipguard.pipeline import Pipeline

    return await Pipeline.create(config, clock, policy_path=policy_path, x5u_map=x5u_map)


async def replay(capture: str | Path, config: Config, *, policy: str | None = None,
                 clock: str | float | None = "capture", x5u_map: dict[str, bytes] | None = None,
                 ports: Collection[int] | None = None, report: CaptureReport | None = None,
                 pipeline: Decider | None = None, parse: Callable[[bytes], Any] | None = None,
                 parse_error: type[Exception] | None = None,
                 source: tuple[str, int] | None = None) -> AsyncIterator[ReplayDecision]:
    """Decisions for every INVITE transaction of ``capture``, in capture order.

    ``pipeline``: use this one (the caller closes it) instead of building one from ``config``.
    ``parse``/``parse_error``: another SIP parser (tests); default ``sipguard.sip.parse``.
    ``source``: decide every INVITE as sent from this address (``trunk_source``).
    """
    mode, clk = parse_clock(clock)
    own = pipeline is None
    pipe = pipeline if pipeline is not None else await open_pipeline(config, clk, policy, x5u_map)
    try:
        replayer = Replayer(pipe, clk, mode, parse, parse_error, source)
        for msg in iter_sip(capture, ports, report):
            decision = await replayer.decide(msg)
            if decision is not None:
                yield decision
    finally:
        if own:
            await pipe.aclose()


async def compare(capture: str | Path, config: Config, new_policy: str | None, old_policy: str,
                  *, clock: str | float | None = "capture", x5u_map: dict[str, bytes] | None = None,
                  ports: Collection[int] | None = None, report: CaptureReport | None = None,
                  source: tuple[str, int] | None = None
                  ) -> AsyncIterator[tuple[ReplayDecision, ReplayDecision]]:
    """(old, new) decision pairs for every INVITE, each policy with its own pipeline and state."""
    mode, clk_old = parse_clock(clock)
    _, clk_new = parse_clock(clock)
    old = await open_pipeline(config, clk_old, old_policy, x5u_map)
    try:
        new = await open_pipeline(config, clk_new, new_policy, x5u_map)
        try:
            r_old = Replayer(old, clk_old, mode, source=source)
            r_new = Replayer(new, clk_new, mode, source=source)
            for msg in iter_sip(capture, ports, report):
                a = await r_old.decide(msg)
                b = await r_new.decide(msg)
                if a is not None and b is not None:
                    yield a, b
        finally:
            await new.aclose()
    finally:
        await old.aclose()


def changed(old: ReplayDecision, new: ReplayDecision) -> bool:
    return (old.action, old.status, old.rule, old.signed) != (new.action, new.status, new.rule, new.signed)
