"""The proxy core: SIP transaction and relay rules around the pipeline.

Rules (RFC 3261 sections 16 and 17, RFC 3581):
1. A new INVITE (no To tag) gets ``100 Trying`` at once, then waits for ``Pipeline.decide``
   (with a store that answers from memory it runs at once, in a task only if it has to
   wait: ``sipguard.aio.start_eagerly``; with a network store, in a task).
   At most ``max_pending`` INVITEs wait; past that a new one gets ``503`` + Retry-After
   at once, and everything else (responses, ACK, BYE, CANCEL) keeps flowing.
2. A retransmitted INVITE (same top Via branch) is never evaluated twice: it gets the
   last response sent, or nothing while the decision is pending.
3. An accepted INVITE is forwarded statefully: our Via on top, Max-Forwards - 1 (``483``
   at 0), optional Record-Route; over UDP it is retransmitted (Timer A) until a response
   comes, and a non-2xx final response is ACKed downstream by us.
4. Responses are routed back by Via: ours is popped, the next one names the previous hop.
5. Every other request (BYE, ACK for 2xx, in-dialog requests, OPTIONS not for us) is
   forwarded statelessly with a branch derived from the incoming one, so retransmissions
   take the same path; routed by Route, else by the Request-URI.
6. CANCEL of a pending or forwarded INVITE: ``200`` to the CANCEL, then ``487`` for a
   pending INVITE, or a CANCEL downstream for a forwarded one.
7. Our own final responses carry a To tag starting with ``TAG_PREFIX``; an ACK with such a
   tag acknowledges one of them and is absorbed.

The core owns no sockets: it is given a ``Sender`` and called with received bytes.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

from sipguard.aio import start_eagerly
from sipguard.config import Config, next_hop_address
from sipguard.proxy import act
from sipguard.sip import (
    Request,
    Response,
    SipParseError,
    Via,
    build_response,
    parse,
    parse_name_addr,
    parse_uri,
    parse_via,
    relay,
)
from sipguard.sip.message import ENC, ERRORS
from sipguard.sip.relay import FastRequest, FastResponse

if TYPE_CHECKING:
    from sipguard.pipeline import Outcome, Pipeline

log = logging.getLogger("sipguard.proxy")
_RPORT = re.compile(r";\s*rport(?=\s*(;|$))", re.IGNORECASE)

BRANCH_PREFIX = "z9hG4bKsg"
TAG_PREFIX = "sg"
RR_MARK = "sgrr"
ROUTED_SCHEMES = ("sip", "sips", "tel")   # Request-URI schemes relayed (others: 416)
T1 = 0.5
SERVER_HEADER = ("Server", "sipguard")


class Sender(Protocol):
    """What the core needs from the transport layer."""

    def send_to_source(self, data: bytes, addr: tuple[str, int], transport: str, conn: object) -> None:
        """Send back towards where a request came from (on its TCP connection when there is one)."""

    def send_to(self, data: bytes, addr: tuple[str, int], transport: str) -> None:
        """Send to a next hop (our own socket, so responses come back to this process)."""

    def via_sent_by(self, transport: str) -> str:
        """host:port to put in our Via for this transport."""

    def is_local(self, host: str, port: int) -> bool:
        """Is host:port one of our own listening addresses?"""


@dataclass(slots=True)
class InviteTx:
    """One INVITE server transaction and, once forwarded, its client transaction.

    A transaction lives 32-64 s, most of it after its decision: it then keeps bytes, not
    the parsed request (dozens of objects the cyclic collector would walk on every pass,
    for nothing), and parses them again on the rare paths that need a header: Timer B's
    408, a CANCEL, the ACK of a non-2xx response."""

    key: str
    source: tuple[str, int]
    transport: str
    conn: Any                      # the connection it came on (Any, not object: mypyc's dataclasses refuse that)
    raw: bytes                     # the INVITE as received (our own responses are built from it)
    state: str = "deciding"        # deciding | proceeding | completed | done
    last: bytes | None = None      # last response sent upstream (for retransmitted INVITEs)
    cancelled: bool = False
    to_tag: str = ""
    client_branch: str | None = None
    dest: tuple[str, int, str] | None = None
    sent: bytes | None = None      # the INVITE as forwarded (CANCEL and ACK copy its headers)
    forwarded: bytes | None = None  # what Timer A / a retransmitted final response resends
    timer: asyncio.TimerHandle | None = None
    interval: float = T1
    started: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Counters:
    received: int = 0
    invites: int = 0
    retransmissions: int = 0
    overload_503: int = 0
    malformed_answered: int = 0
    malformed_dropped: int = 0
    forwarded: int = 0
    rejected: int = 0
    redirected: int = 0
    responses_relayed: int = 0
    decide_errors: int = 0


COUNTER_NAMES = tuple(f.name for f in fields(Counters))


class ProxyCore:
    def __init__(self, config: Config, pipeline: Pipeline, sender: Sender,
                 on_outcome: Callable[[Outcome, int | None, str | None, float], None] | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.sender = sender
        self.on_outcome = on_outcome
        self.redirect = config.mode == "redirect"
        self.max_pending = config.proxy.max_pending
        self.max_size = config.proxy.max_message_size
        self.retry_after = str(config.proxy.retry_after)
        self.tx_lifetime = config.proxy.transaction_timeout
        self.next_hop = config.next_hop
        self._next_hop_addr = next_hop_address(config.next_hop)
        self._hop_cache: dict[str, tuple[str, int, str]] = {config.next_hop: self._next_hop_addr}
        self.pending = 0
        self.counters = Counters()
        self.invites: dict[str, InviteTx] = {}      # current generation
        self._old_invites: dict[str, InviteTx] = {}  # previous generation (expiry by rotation)
        self.clients: dict[str, InviteTx] = {}       # our branch -> tx
        self._old_clients: dict[str, InviteTx] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._rotated = time.monotonic()
        self.draining = False
        self._targets: dict[str, tuple[str, int, str] | None] = {}  # Request-URI -> next hop (bounded)
        # the relay fast path (sipguard.sip.relay); off only to compare both paths in tests
        self.fast_path = True

    # -- entry point -----------------------------------------------------------------------
    def receive(self, data: bytes, source: tuple[str, int], transport: str, conn: object = None) -> None:
        self.counters.received += 1
        if self.fast_path and self._fast(data, source, transport, conn):
            return
        try:
            msg = parse(data, self.max_size)
        except SipParseError as exc:
            self._malformed(exc, source, transport, conn)
            return
        try:
            if isinstance(msg, Response):
                self._response(msg)
            elif msg.method != "ACK" and self._unacceptable(msg, source, transport, conn):
                return
            elif msg.method == "INVITE" and not msg.to.tag:
                self._invite(msg, source, transport, conn)
            elif msg.method == "ACK":
                self._ack(msg, source, transport, conn)
            elif msg.method == "CANCEL":
                self._cancel(msg, source, transport, conn)
            else:
                self._other(msg, source, transport, conn)
        except SipParseError as exc:  # a lazily-parsed header was bad
            self._malformed(exc, source, transport, conn, msg if isinstance(msg, Request) else None)

    def _fast(self, data: bytes, source: tuple[str, int], transport: str, conn: object) -> bool:
        """Responses and in-dialog requests of the common shape, relayed from their lines
        (sipguard.sip.relay). False: not handled, nothing changed; the full path decides,
        and answers or drops what is malformed. INVITE (initial or re-INVITE), CANCEL and
        OPTIONS always take the full path: they start or end transactions, or are answered
        here."""
        try:
            if data[:4] == b"SIP/":
                resp = relay.response(data, self.max_size)
                return resp is not None and self._fast_response(resp)
            if data[:7] in (b"INVITE ", b"CANCEL ", b"OPTIONS"):
                return False
            req = relay.request(data, self.max_size)
            return req is not None and self._fast_request(req, source, transport, conn)
        except SipParseError:
            return False  # read before anything changed: the full path reports it

    def _unacceptable(self, req: Request, source: tuple[str, int], transport: str, conn: object) -> bool:
        """RFC 3261 16.3: a scheme we cannot route (416), an extension a proxy must
        understand (420 + Unsupported). Answered here; True when answered."""
        scheme = req.uri.split(":", 1)[0].lower()
        emergency = scheme == "urn" and req.uri.lower().startswith("urn:service:sos")
        if scheme not in ROUTED_SCHEMES and not emergency:  # RFC 5031 emergency URNs route on
            self._reply(req, 416, source, transport, conn)
            return True
        required = req.headers("Proxy-Require") if req.method != "CANCEL" and req.has("proxy-require") else []
        if required:
            self._reply(req, 420, source, transport, conn, ("Unsupported", ", ".join(required)))
            return True
        return False

    def _malformed(self, exc: SipParseError, source: tuple[str, int], transport: str, conn: object,
                   req: Request | None = None) -> None:
        partial = req if req is not None else exc.partial
        if partial is None or partial.method == "ACK":
            self.counters.malformed_dropped += 1
            log.debug("dropped malformed message from %s:%s: %s", source[0], source[1], exc.reason)
            return
        self.counters.malformed_answered += 1
        warning = exc.reason.replace('"', "'")
        try:
            data = build_response(partial, exc.status_hint, act.PHRASES.get(exc.status_hint, "Bad Request"),
                                  [("Warning", f'399 sipguard "{warning}"'), SERVER_HEADER],
                                  to_tag=self._tag(source, exc.reason))
        except SipParseError:
            self.counters.malformed_dropped += 1
            return
        self.sender.send_to_source(data, source, transport, conn)

    # -- INVITE --------------------------------------------------------------------------------
    def _invite(self, req: Request, source: tuple[str, int], transport: str, conn: object) -> None:
        key = _server_key(req.top_via)
        tx = self._server_tx(key)
        if tx is not None:
            self.counters.retransmissions += 1
            if tx.last is not None:
                self.sender.send_to_source(tx.last, source, transport, conn)
            return
        self.counters.invites += 1
        # what the pipeline and the relay read, parsed (and cached) now: a bad one is a 400 here
        req.vias, req.from_, req.to, req.call_id, req.pai  # noqa: B018
        mf = req.max_forwards
        if mf is not None and mf <= 0:
            self._reply(req, 483, source, transport, conn)
            return
        if self.pending >= self.max_pending or self.draining:
            self.counters.overload_503 += 1
            self._reply(req, 503, source, transport, conn, ("Retry-After", self.retry_after))
            return
        tx = InviteTx(key, source, transport, conn, req.raw, to_tag=self._tag(source, key))
        self.invites[key] = tx
        tx.last = build_response(req, 100, "Trying", [SERVER_HEADER])
        self.sender.send_to_source(tx.last, source, transport, conn)
        self.pending += 1
        # decided here and now when the pipeline has nothing to wait for (sipguard.aio)
        decision = self._decide(tx, req)
        task = start_eagerly(decision) if self.pipeline.decides_inline \
            else asyncio.get_running_loop().create_task(decision)
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _decide(self, tx: InviteTx, req: Request) -> None:
        started = time.perf_counter()
        try:
            outcome = await self.pipeline.decide(req, tx.source, tx.transport)
        except SipParseError as exc:  # a header only the pipeline reads was malformed
            self.counters.malformed_answered += 1
            warning = exc.reason.replace('"', "'")
            self._final(tx, build_response(req, 400, "Bad Request", [("Warning", f'399 sipguard "{warning}"'),
                                                                    SERVER_HEADER], to_tag=tx.to_tag))
            return
        except Exception:
            self.counters.decide_errors += 1
            log.exception("decision failed for Call-ID %s", req.call_id)
            self._final(tx, build_response(req, 500, "Server Internal Error", [SERVER_HEADER],
                                           to_tag=tx.to_tag))
            return
        finally:
            self.pending -= 1
        latency = time.perf_counter() - started
        if tx.cancelled:
            self._final(tx, build_response(req, 487, "Request Terminated", [SERVER_HEADER], to_tag=tx.to_tag))
            self._report(outcome, 487, None, latency)
            return
        decision = outcome.decision
        if decision.action == "reject":
            self.counters.rejected += 1
            self._final(tx, act.reject_response(req, decision, tx.to_tag))
            self._report(outcome, decision.status, None, latency)
            return
        hop = decision.to or (outcome.trunk.next_hop if outcome.trunk and outcome.trunk.next_hop else None) \
            or self.next_hop
        if self.redirect:
            self.counters.redirected += 1
            self._final(tx, act.redirect_response(req, outcome, hop, tx.to_tag))
            self._report(outcome, 302, hop, latency)
            return
        self.counters.forwarded += 1
        self._forward_invite(tx, req, outcome, hop)
        self._report(outcome, None, hop, latency)

    def _report(self, outcome: Outcome, status: int | None, hop: str | None, latency: float) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome, status, hop, latency)
            except Exception:  # records/metrics must never break call handling
                log.exception("recording the decision failed")

    def _forward_invite(self, tx: InviteTx, req: Request, outcome: Outcome, hop: str) -> None:
        dest = self._hop(hop)
        act.apply_forward(req, outcome)
        branch = BRANCH_PREFIX + hashlib.blake2b(_bytes(tx.key), digest_size=8).hexdigest()
        self._prepare_relay(req, tx.source, tx.transport, dest[2], branch)
        data = req.serialize()
        tx.state, tx.client_branch, tx.dest, tx.forwarded, tx.sent = "proceeding", branch, dest, data, data
        tx.last = None  # our 100 is not resent after forwarding: downstream answers now
        self.clients[branch] = tx
        self.sender.send_to(data, (dest[0], dest[1]), dest[2])
        if dest[2] == "udp":
            tx.timer = asyncio.get_running_loop().call_later(T1, self._timer_a, tx)

    def _timer_a(self, tx: InviteTx) -> None:
        """RFC 3261 17.1.1.2: retransmit the INVITE over UDP until a response; Timer B -> 408."""
        tx.timer = None
        if tx.state != "proceeding" or tx.forwarded is None or tx.dest is None:
            return
        if time.monotonic() - tx.started >= 64 * T1:
            req = self._reparse(tx.raw)
            if req is not None:
                self._final(tx, build_response(req, 408, "Request Timeout", [SERVER_HEADER], to_tag=tx.to_tag))
            return
        self.sender.send_to(tx.forwarded, (tx.dest[0], tx.dest[1]), tx.dest[2])
        tx.interval = min(tx.interval * 2, 4.0)
        tx.timer = asyncio.get_running_loop().call_later(tx.interval, self._timer_a, tx)

    def _final(self, tx: InviteTx, data: bytes) -> None:
        """Send a final response we generated; keep it for retransmitted INVITEs (Timer G)."""
        tx.state, tx.last, tx.forwarded = "completed", data, None
        self.sender.send_to_source(data, tx.source, tx.transport, tx.conn)
        if tx.timer is not None:
            tx.timer.cancel()
            tx.timer = None
        if tx.transport == "udp":
            tx.interval = T1
            tx.timer = asyncio.get_running_loop().call_later(T1, self._timer_g, tx)

    def _timer_g(self, tx: InviteTx) -> None:
        tx.timer = None
        if tx.state != "completed" or tx.last is None or time.monotonic() - tx.started >= 64 * T1:
            return
        self.sender.send_to_source(tx.last, tx.source, tx.transport, tx.conn)
        tx.interval = min(tx.interval * 2, 4.0)
        tx.timer = asyncio.get_running_loop().call_later(tx.interval, self._timer_g, tx)

    # -- relay helpers --------------------------------------------------------------------------
    def _prepare_relay(self, req: Request, source: tuple[str, int], in_transport: str, out_transport: str,
                       branch: str) -> None:
        """RFC 3261 16.6: received/rport on the previous Via, Max-Forwards - 1, RR, our Via."""
        prev = _rewritten_via(req.top_via, source)
        if prev is not None:
            req.pop_first_value("Via")
            req.prepend_header("Via", prev)
        mf = req.max_forwards
        req.set_header("Max-Forwards", str((mf if mf is not None else 70) - 1))
        if self.config.proxy.record_route and req.method == "INVITE":
            # RFC 5658: changing transport, we record both of our sides; the callee reads the top
            # one (ours facing it), the caller the lower one (ours facing the caller)
            if in_transport != out_transport:
                req.prepend_header("Record-Route", self._record_route(in_transport))
            req.prepend_header("Record-Route", self._record_route(out_transport))
        req.prepend_header("Via", self._via_value(out_transport, branch))

    def _record_route(self, transport: str) -> str:
        param = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{self.sender.via_sent_by(transport)}{param};lr;{RR_MARK}>"

    def _via_value(self, transport: str, branch: str) -> str:
        return f"SIP/2.0/{transport.upper()} {self.sender.via_sent_by(transport)};branch={branch};rport"

    def _server_tx(self, key: str) -> InviteTx | None:
        """The INVITE server transaction of this key, in either generation."""
        return self.invites.get(key) or self._old_invites.get(key)

    def _client_tx(self, branch: str) -> InviteTx | None:
        """The transaction whose forwarded INVITE carries our ``branch``, in either generation."""
        return self.clients.get(branch) or self._old_clients.get(branch)

    def _reparse(self, data: bytes | None) -> Request | None:
        """A request this core accepted (or built) before, parsed again; None if absent."""
        if data is None:
            return None
        try:
            msg = parse(data, self.max_size)
        except SipParseError:  # pragma: no cover - it parsed the first time
            return None
        return msg if isinstance(msg, Request) else None

    def _hop(self, uri: str) -> tuple[str, int, str]:
        hop = self._hop_cache.get(uri)
        if hop is None:
            hop = next_hop_address(uri)
            if len(self._hop_cache) > 1024:
                self._hop_cache.clear()
            self._hop_cache[uri] = hop
        return hop

    def _reply(self, req: Request, status: int, source: tuple[str, int], transport: str, conn: object,
               *headers: tuple[str, str]) -> None:
        data = build_response(req, status, act.PHRASES.get(status, "Error"), [*headers, SERVER_HEADER],
                              to_tag=self._tag(source, req.top_via.branch or req.call_id))
        self.sender.send_to_source(data, source, transport, conn)

    @staticmethod
    def _tag(source: tuple[str, int], key: str) -> str:
        return TAG_PREFIX + hashlib.blake2b(_bytes(f"{source}{key}"), digest_size=6).hexdigest()

    # -- responses -----------------------------------------------------------------------------
    def _response(self, resp: Response) -> None:
        branch = resp.top_via.branch or ""
        if not branch.startswith(BRANCH_PREFIX):
            return  # not ours: drop (RFC 3261 16.7 step 1)
        tx = self._client_tx(branch)
        if tx is None:
            if resp.via_count() < 2:
                return  # nowhere to send it
            prev = resp.via(1)  # the previous hop, read before our Via is popped
            resp.pop_first_value("Via")
            self._relay_stateless_response(resp.serialize(), prev)
            return
        method = resp.cseq[1]
        if method == "CANCEL":
            return  # answers the CANCEL we sent downstream; upstream got its own 200
        if method == "INVITE" and not self._invite_response(tx, resp.status, resp):
            return
        resp.pop_first_value("Via")
        self._relay_tx_response(tx, resp.status, resp.serialize())

    def _fast_response(self, resp: FastResponse) -> bool:
        """``_response`` on the relay fast path's view; False (nothing changed) for a final
        non-2xx response to a forwarded INVITE, which we ACK from the full parse."""
        branch = parse_via(resp.top).branch or ""
        if not branch.startswith(BRANCH_PREFIX):
            return True
        tx = self._client_tx(branch)
        if tx is None:
            if resp.second is not None:
                self._relay_stateless_response(resp.relayed, parse_via(resp.second))
            return True
        if resp.method == "CANCEL":
            return True
        if resp.method == "INVITE":
            if resp.status >= 300:
                return False
            if not self._invite_response(tx, resp.status, None):
                return True
        self._relay_tx_response(tx, resp.status, resp.relayed)
        return True

    def _invite_response(self, tx: InviteTx, status: int, resp: Response | None) -> bool:
        """The client transaction's part (RFC 3261 17.1.1); True when the response goes on
        upstream. ``resp`` is needed for a final non-2xx response (we ACK it)."""
        if tx.timer is not None and tx.state == "proceeding":
            tx.timer.cancel()
            tx.timer = None
        if status == 100:
            return False  # hop-by-hop
        if status >= 300:
            if tx.state == "completed":
                if tx.forwarded is not None:  # retransmitted final: ACK again, relay nothing
                    self.sender.send_to(tx.forwarded, (tx.dest[0], tx.dest[1]), tx.dest[2])  # type: ignore[index]
                return False
            assert resp is not None
            tx.forwarded = self._ack_downstream(tx, resp)
            tx.state = "completed"
        elif status >= 200:
            tx.state = "done"
            # what only a transaction in progress reads (Timer A/B, CANCEL, the ACK of a non-2xx):
            # freed now, not when the transaction expires, a third of what it holds for 32-64 s
            tx.raw, tx.sent, tx.forwarded = b"", None, None
        return True

    def _relay_tx_response(self, tx: InviteTx, status: int, data: bytes) -> None:
        self.counters.responses_relayed += 1
        if status >= 300:
            tx.last = data
        self.sender.send_to_source(data, tx.source, tx.transport, tx.conn)

    def _relay_stateless_response(self, data: bytes, prev: Via) -> None:
        self.counters.responses_relayed += 1
        addr = prev.sent_by_addr()
        if not _routable(addr[0]):
            return  # RFC 4475 bcast: never send to broadcast, multicast or unspecified
        self.sender.send_to_source(data, addr, prev.transport.lower(), None)

    def _ack_downstream(self, tx: InviteTx, resp: Response) -> bytes | None:
        """RFC 3261 17.1.1.3: the client transaction ACKs a non-2xx final response itself.
        Returns the ACK so a retransmitted final response can be ACKed again."""
        req = self._reparse(tx.sent)
        if tx.dest is None or tx.client_branch is None or req is None:
            return None
        lines = [
            f"ACK {req.uri} SIP/2.0",
            f"Via: SIP/2.0/{tx.dest[2].upper()} {self.sender.via_sent_by(tx.dest[2])};branch={tx.client_branch}",
            "Max-Forwards: 70",
            f"From: {req.header('From')}",
            f"To: {resp.header('To')}",
            f"Call-ID: {req.call_id}",
            f"CSeq: {req.cseq[0]} ACK",
        ]
        lines.extend(f"Route: {r}" for r in req.headers("Route"))
        lines.append("Content-Length: 0")
        ack = _bytes("\r\n".join(lines)) + b"\r\n\r\n"
        self.sender.send_to(ack, (tx.dest[0], tx.dest[1]), tx.dest[2])
        return ack

    # -- ACK, CANCEL, everything else --------------------------------------------------------------
    def _ack(self, req: Request, source: tuple[str, int], transport: str, conn: object) -> None:
        if not self._ack_absorbed(req.to.tag or "", req.top_via):
            self._stateless(req, source, transport, conn)

    def _ack_absorbed(self, to_tag: str, via: Via) -> bool:
        """An ACK of a non-2xx final response we sent (our To tag, or its transaction is
        completed) is hop-by-hop: absorbed, Timer G stopped."""
        tx = self._server_tx(_server_key(via))
        if to_tag.startswith(TAG_PREFIX) or (tx is not None and tx.state == "completed"):
            if tx is not None and tx.timer is not None:
                tx.timer.cancel()
                tx.timer = None
            return True
        return False

    def _cancel(self, req: Request, source: tuple[str, int], transport: str, conn: object) -> None:
        tx = self._server_tx(_server_key(req.top_via))
        if tx is None:
            self._reply(req, 481, source, transport, conn)
            return
        self.sender.send_to_source(build_response(req, 200, "OK", [SERVER_HEADER], to_tag=tx.to_tag),
                                   source, transport, conn)
        if tx.state == "deciding":
            tx.cancelled = True
        elif tx.state == "proceeding" and tx.dest is not None and (inv := self._reparse(tx.sent)) is not None:
            lines = [
                f"CANCEL {inv.uri} SIP/2.0",
                f"Via: SIP/2.0/{tx.dest[2].upper()} {self.sender.via_sent_by(tx.dest[2])};branch={tx.client_branch}",
                "Max-Forwards: 70",
                f"From: {inv.header('From')}",
                f"To: {inv.header('To')}",
                f"Call-ID: {inv.call_id}",
                f"CSeq: {inv.cseq[0]} CANCEL",
            ]
            lines.extend(f"Route: {r}" for r in inv.headers("Route"))
            lines.append("Content-Length: 0")
            self.sender.send_to(_bytes("\r\n".join(lines)) + b"\r\n\r\n", (tx.dest[0], tx.dest[1]), tx.dest[2])

    def _other(self, req: Request, source: tuple[str, int], transport: str, conn: object) -> None:
        if req.method == "OPTIONS" and self._for_us(req):
            self._reply(req, 200, source, transport, conn, ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"),
                        ("Accept", "application/sdp"))
            return
        if self.redirect:
            if req.method == "OPTIONS":
                self._reply(req, 200, source, transport, conn)
            else:
                self._reply(req, 405, source, transport, conn, ("Allow", "INVITE, ACK, CANCEL, OPTIONS"))
            return
        self._stateless(req, source, transport, conn)

    def _for_us(self, req: Request) -> bool:
        mf = req.max_forwards
        if mf is not None and mf <= 0:
            return True
        uri = parse_uri(req.uri)
        return not uri.user or self.sender.is_local(uri.host.strip("[]"), uri.port or 5060)

    def _stateless(self, req: Request, source: tuple[str, int], transport: str, conn: object) -> None:
        """RFC 3261 16.11: forward without a transaction; the branch is a hash of the incoming one."""
        mf = req.max_forwards
        if mf is not None and mf <= 0:
            if req.method != "ACK":
                self._reply(req, 483, source, transport, conn)
            return
        dest = self._route(req)
        if dest is None:
            if req.method != "ACK":
                self._reply(req, 404, source, transport, conn)
            return
        branch = _stateless_branch(req.top_via, req.method, req.cseq[0])
        self._prepare_relay(req, source, transport, dest[2], branch)
        self.sender.send_to(req.serialize(), (dest[0], dest[1]), dest[2])

    def _fast_request(self, req: FastRequest, source: tuple[str, int], transport: str, conn: object) -> bool:
        """ACK, BYE and the other requests ``_other`` relays statelessly, on the fast path's
        view; False (nothing changed) for whatever is answered here or needs the full parse
        (Route, Proxy-Require, another scheme, Max-Forwards 0, an unroutable target)."""
        method, msg = req.method, req.msg  # never INVITE, CANCEL or OPTIONS (``_fast``)
        if (self.redirect and method != "ACK") or "route" in msg.keys:
            return False
        if method != "ACK" and ("proxy-require" in msg.keys
                                or req.uri.split(":", 1)[0].lower() not in ROUTED_SCHEMES):
            return False
        via = parse_via(msg.value(req.via))
        if method == "ACK":
            to = msg.only("to")
            if to is None:
                return False
            if self._ack_absorbed(parse_name_addr(msg.value(to)).tag or "", via):
                return True
        if req.max_forwards <= 0:
            return False
        dest = self._target(req.uri)
        if dest is None:
            return False
        prev = _rewritten_via(via, source)
        our = self._via_value(dest[2], _stateless_branch(via, method, req.cseq))
        self.sender.send_to(relay.forwarded(req, _bytes("Via: " + our), prev), (dest[0], dest[1]), dest[2])
        return True

    def _route(self, req: Request) -> tuple[str, int, str] | None:
        """Loose routing: drop our own Record-Route entry, then the top Route, else the R-URI."""
        routes = req.route
        while routes and RR_MARK in routes[0].uri:
            req.pop_first_value("Route")
            routes = routes[1:]
        return self._target(routes[0].uri if routes else req.uri)

    def _target(self, target: str) -> tuple[str, int, str] | None:
        """Where a request for this URI goes (None: not a URI we can route); memoised, since
        in-dialog requests of many calls carry the same remote target."""
        cache = self._targets
        if target in cache:
            return cache[target]
        try:
            uri = parse_uri(target)
        except SipParseError:
            dest = None
        else:
            secure = uri.scheme == "sips"
            transport = str(uri.params.get("transport") or ("tls" if secure else "udp")).lower()
            host = uri.host.strip("[]")
            port = uri.port or (5061 if transport == "tls" else 5060)
            if self.sender.is_local(host, port) or not _is_ip(host):
                dest = self._next_hop_addr  # addressed to us, or a name we do not resolve: the core
            else:
                dest = host, port, transport if transport in ("udp", "tcp", "tls") else "udp"
        if len(cache) >= 4096:
            cache.clear()
        cache[target] = dest
        return dest

    # -- housekeeping ---------------------------------------------------------------------------
    def rotate(self, now: float | None = None) -> None:
        """Expire transactions by generations: a tx lives between one and two lifetimes.
        Unfinished ones (deciding/proceeding) are carried into the new generation."""
        now = time.monotonic() if now is None else now
        if now - self._rotated < self.tx_lifetime:
            return
        self._rotated = now
        carried = {k: tx for k, tx in self.invites.items() if tx.state in ("deciding", "proceeding")
                   and now - tx.started < 4 * self.tx_lifetime}
        self._old_invites, self.invites = self.invites, carried
        carried_clients = {tx.client_branch: tx for tx in carried.values() if tx.client_branch}
        self._old_clients, self.clients = self.clients, carried_clients

    async def drain(self, deadline: float) -> None:
        """SIGTERM: refuse new INVITEs, wait (bounded) for pending decisions."""
        self.draining = True
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while self._tasks and loop.time() < end:
            await asyncio.sleep(0.02)

    def stats(self) -> dict[str, float]:
        counters = self.counters
        out = {k: float(getattr(counters, k)) for k in COUNTER_NAMES}
        out["pending"] = float(self.pending)
        out["transactions"] = float(len(self.invites) + len(self._old_invites))
        return out


def _bytes(text: str) -> bytes:
    """Text read from a message back to bytes: any byte survives (a non-UTF-8 byte in a
    branch or a From read with surrogateescape must not raise here)."""
    return text.encode(ENC, ERRORS)


def _server_key(via: Via) -> str:
    """RFC 3261 17.2.3: a server transaction is its top Via's branch and sent-by."""
    return f"{via.branch}|{via.host}|{via.port}"


def _rewritten_via(via: Via, source: tuple[str, int]) -> str | None:
    """RFC 3261 18.2.1 / RFC 3581: the previous hop's Via value with received and rport filled
    in; None when it needs neither. ``via.raw`` is the value as it stands in the message (what
    ``pop_first_value`` removes)."""
    received = via.host.strip("[]") != source[0]
    if via.rport != "" and not received:
        return None
    value = via.raw
    if via.rport == "":  # fill in the rport the request asked for
        value = _RPORT.sub(f";rport={source[1]}", value, count=1)
    if received:
        value += f";received={source[0]}"
    return value


def _stateless_branch(via: Via, method: str, cseq: int) -> str:
    """RFC 3261 16.11: a stateless relay's branch is a function of the incoming request, so
    a retransmission takes the same branch (and path)."""
    seed = f"{via.branch}|{via.host}|{via.port}|{method}|{cseq}"
    return BRANCH_PREFIX + hashlib.blake2b(_bytes(seed), digest_size=8).hexdigest()


@functools.lru_cache(maxsize=4096)
def _routable(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name: resolved by the transport
    if addr.is_multicast or addr.is_unspecified:
        return False
    return not (addr.version == 4 and str(addr) == "255.255.255.255")


@functools.lru_cache(maxsize=4096)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
