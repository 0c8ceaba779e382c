"""The proxy core: SIP transaction and relay rules around the pipeline.

Rules (RFC 3261 sections 16 and 17, RFC 3581):
1. A new INVITE (no To tag) gets ``100 Trying`` at once (in redirect mode only when its
   302 or rejection does not go at once: RFC 3261 17.2.1), then its decision: at once when
   nothing has to wait (``Pipeline.start``: a cached certificate, a store that answers from
   memory); otherwise the rest runs at once until it waits, in a task only then
   (``sipguard.aio.start_eagerly``), or in a task with a network store.
   At most ``max_pending`` INVITEs wait; past that a new one gets ``503`` + Retry-After
   at once, and everything else (responses, ACK, BYE, CANCEL) keeps flowing.
2. A retransmitted INVITE (same top Via branch and sent-by: ``sip.transaction.server_key``)
   is never evaluated twice: it gets the last response sent, or nothing while the decision
   is pending.
3. An accepted INVITE is forwarded statefully: our Via on top, Max-Forwards - 1 (``483``
   at 0), optional Record-Route; over UDP it is retransmitted (Timer A) until a response
   comes, and a non-2xx final response is ACKed downstream by us.
4. Responses are routed back by Via: ours is popped, the next one names the previous hop.
5. Every other request (BYE, ACK for 2xx, in-dialog requests, OPTIONS not for us) is
   forwarded statelessly with a branch derived from the incoming one, so retransmissions
   take the same path; routed by our signed Record-Route, else to its trunk's next hop
   (``stateless.py``).
6. CANCEL of a pending or forwarded INVITE: ``200`` to the CANCEL, then ``487`` for a
   pending INVITE, or a CANCEL downstream for a forwarded one.
7. Our own final responses carry a To tag starting with ``TAG_PREFIX``; an ACK with such a
   tag acknowledges one of them and is absorbed.

The core owns no sockets and reads no clock of its own: it is given a ``Sender`` and a
``Clock`` and called with received bytes. It is the glue of three modules: the INVITE
transactions and their timers (``transactions.py``: the core arms one event-loop timer at
their ``next_timer()``), the stateless relay and its routing (``stateless.py``), and what
sipguard writes itself (``messages.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from sipguard.aio import start_eagerly
from sipguard.clock import Clock, SystemClock
from sipguard.config import CoreSettings
from sipguard.pipeline import Outcome
from sipguard.proxy import act
from sipguard.proxy.messages import (
    BRANCH_PREFIX,
    SERVER_HEADER,
    Answers,
    Counters,
    Hop,
    Sender,
    local_request,
    reparse,
    response,
    tag,
    warning_response,
)
from sipguard.proxy.stateless import StatelessRelay, stateless_branch
from sipguard.proxy.transactions import Due, InviteTx, Reply, State, Transactions
from sipguard.proxy.transport import Receive
from sipguard.sip import Request, Response, SipParseError, build_response, parse, parse_via, relay
from sipguard.sip.relay import FastResponse
from sipguard.sip.transaction import server_key

if TYPE_CHECKING:
    from sipguard.pipeline import Pipeline

log = logging.getLogger("sipguard.proxy")

DRAIN_LINGER = 1.0  # s after the last final response a drain still relays (ACK of a 2xx, early BYE)


Intercept = Callable[[bytes, tuple[str, int], str, object], bool]


class Intercepted:
    """``inner`` (the core's receive, steered or not) behind a check that may take a new
    INVITE or an ACK itself (the worker's overload guard, ``proxy/overload.py``: a 503 while
    behind, the ACK of one). Compiled, so responses and the other requests, most datagrams,
    reach ``inner`` with no Python frame in between."""

    __slots__ = ("intercept", "inner")

    def __init__(self, intercept: Intercept, inner: Receive) -> None:
        self.intercept = intercept
        self.inner = inner

    def __call__(self, data: bytes, source: tuple[str, int], transport: str, conn: object) -> None:
        head = data[:4]
        if (head == b"INVI" or head == b"ACK ") and self.intercept(data, source, transport, conn):
            return
        self.inner(data, source, transport, conn)


class ProxyCore:
    def __init__(self, settings: CoreSettings, pipeline: Pipeline, sender: Sender,
                 on_outcome: Callable[[Outcome, int | None, str | None, float], None] | None = None,
                 clock: Clock | None = None) -> None:
        self.pipeline = pipeline
        self._sender = sender
        self.on_outcome = on_outcome
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.counters = Counters()
        self.answers = Answers(sender, self.counters, self.clock)
        self.stateless = StatelessRelay(sender, self.answers, pipeline.upstream_of)
        self.txs = Transactions(settings.transaction_timeout, self.clock.monotonic())
        self._absorbed = self.txs.ack_absorbed
        self.reconfigure(settings)
        self.pending = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None   # the one event-loop timer, at _timer_at
        self._timer_at = 0.0
        self.draining = False
        # the relay fast path (sipguard.sip.relay); off only to compare both paths in tests
        self.fast_path = True

    @property
    def sender(self) -> Sender:
        return self._sender

    @sender.setter
    def sender(self, sender: Sender) -> None:
        """Another transport (a benchmark's capture): for the relay and the answers too."""
        self._sender = self.answers.sender = self.stateless.sender = sender

    def reconfigure(self, settings: CoreSettings) -> None:
        """SIGHUP: every proxy setting takes effect for the messages that follow; transactions
        in progress keep their destinations. The listening addresses need a restart
        (``Worker.reload`` says so)."""
        self.settings = settings
        self.redirect = settings.mode == "redirect"
        self.record_route = settings.record_route
        self.max_pending = settings.max_pending
        self.max_size = settings.max_message_size
        self.retry_after = str(settings.retry_after)
        self.txs.lifetime = settings.transaction_timeout
        self.next_hop = settings.next_hop
        self.stateless.configure(settings, self.pipeline.trunks)

    # -- entry point -----------------------------------------------------------------------
    def receive(self, data: bytes, source: tuple[str, int], transport: str, conn: object = None) -> None:
        self.counters.received += 1
        if self.fast_path and self._fast(data, source, transport, conn):
            return
        try:
            msg = parse(data, self.max_size)
        except SipParseError as exc:
            self.answers.malformed(exc, source, transport, conn)
            return
        try:
            if isinstance(msg, Response):
                self._response(msg)
            elif msg.method != "ACK" and self.answers.unacceptable(msg, source, transport, conn):
                return
            elif msg.method == "INVITE" and not msg.to.tag:
                self._invite(msg, source, transport, conn)
            elif msg.method == "ACK":
                if not self.txs.ack_absorbed(msg.to.tag or "", msg.top_via):
                    self.stateless.forward(msg, source, transport, conn)
            elif msg.method == "CANCEL":
                self._cancel(msg, source, transport, conn)
            else:
                self._other(msg, source, transport, conn)
        except SipParseError as exc:  # a lazily-parsed header was bad
            self.answers.malformed(exc, source, transport, conn, msg if isinstance(msg, Request) else None)

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
            return req is not None and self.stateless.fast_request(req, source, self.redirect, self._absorbed)
        except SipParseError:
            return False  # read before anything changed: the full path reports it

    # -- INVITE --------------------------------------------------------------------------------
    def in_transaction(self, via: str) -> bool:
        """Is an INVITE whose top Via is ``via`` (one header value) a retransmission of one of
        this core's live transactions, accepted ones included? The overload guard asks before
        it answers an INVITE 503: a retransmission is answered by its transaction (rule 2),
        never with a 503 after the call it belongs to was let in. A value the guard cannot read
        on its own (several Vias on the line, a bad one) counts as one: the full path decides."""
        if "," in via:
            return True
        try:
            return self.txs.known(server_key(parse_via(via)))
        except SipParseError:
            return True

    def _invite(self, req: Request, source: tuple[str, int], transport: str, conn: object) -> None:
        key = server_key(req.top_via)
        if self.txs.known(key):  # a retransmission: the last response again, never a second decision
            self.counters.retransmissions += 1
            tx = self.txs.server(key)  # None: accepted (its 2xx went upstream), absorbed
            if tx is not None and tx.last is not None:
                self._sender.send_to_source(tx.last, source, transport, conn)
            return
        self.counters.invites += 1
        # what the pipeline and the relay read, parsed (and cached) now: a bad one is a 400 here
        req.vias, req.from_, req.to, req.call_id, req.pai  # noqa: B018
        mf = req.max_forwards
        if mf is not None and mf <= 0:
            self.answers.reply(req, 483, source, transport, conn)
            return
        if self.pending >= self.max_pending or self.draining:
            self.counters.overload_503 += 1
            self.answers.reply(req, 503, source, transport, conn, ("Retry-After", self.retry_after))
            return
        tx = InviteTx(key, source, transport, conn, req.raw, started=self.clock.monotonic())
        self.txs.start(tx)
        if not self.redirect:
            self._trying(tx, req)
        self.pending += 1
        started = self.clock.monotonic()
        # decided here and now when the pipeline has nothing to wait for (Pipeline.start); else
        # the rest runs at once until it waits (sipguard.aio), or in a task for a network store
        try:
            decided = self.pipeline.start(req, tx.source, tx.transport)
        except Exception as exc:
            self.pending -= 1
            self._failed(tx, req, exc)
            decided = None
        if isinstance(decided, Outcome):
            self.pending -= 1
            self._decided(tx, req, decided, started)
        elif decided is not None:
            rest = self._decide(tx, req, decided, started)
            task = start_eagerly(rest) if self.pipeline.decides_inline \
                else asyncio.get_running_loop().create_task(rest)
            if task is not None:
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if self.redirect and tx.last is None:  # the final response is not out yet
            self._trying(tx, req)

    def _trying(self, tx: InviteTx, req: Request) -> None:
        """RFC 3261 17.2.1: ``100 Trying`` unless the final response goes at once, as a
        redirect server's does when it decides inline (Kamailio's sl_send_reply sends none)."""
        tx.last = build_response(req, 100, "Trying", [SERVER_HEADER])
        self._sender.send_to_source(tx.last, tx.source, tx.transport, tx.conn)

    async def _decide(self, tx: InviteTx, req: Request, rest: Coroutine[Any, Any, Outcome],
                      started: float) -> None:
        try:
            outcome = await rest
        except Exception as exc:
            self._failed(tx, req, exc)
            return
        finally:
            self.pending -= 1
        self._decided(tx, req, outcome, started)

    def _failed(self, tx: InviteTx, req: Request, exc: Exception) -> None:
        """The pipeline raised: 400 for a header only it reads that was malformed, else 500."""
        if isinstance(exc, SipParseError):
            self.counters.malformed_answered += 1
            self._final(tx, warning_response(req, 400, "Bad Request", exc.reason, tx.to_tag))
            return
        self.counters.decide_errors += 1
        log.error("decision failed for Call-ID %s", req.call_id, exc_info=exc)
        self._final(tx, response(req, 500, tx.to_tag))

    def _decided(self, tx: InviteTx, req: Request, outcome: Outcome, started: float) -> None:
        latency = self.clock.monotonic() - started
        if tx.cancelled:
            self._final(tx, response(req, 487, tx.to_tag))
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
        dest = self.stateless.hop(hop)
        act.apply_forward(req, outcome)
        # the stateless rule with our key: a response that outlives its transaction is still ours
        branch = stateless_branch(self.stateless.secret, req.top_via, "INVITE", req.cseq[0])
        token = self.stateless.rr_token(req, Hop(tx.source[0], tx.source[1], tx.transport), dest) \
            if self.record_route else None
        self.stateless.prepare(req, tx.source, tx.transport, dest.transport, branch, token)
        data = req.serialize()
        self.txs.forward(tx, branch, dest, data, self.clock.monotonic())
        self._sender.send_to(data, (dest.host, dest.port), dest.transport)
        self._arm(tx.timer_at)

    def _final(self, tx: InviteTx, data: bytes) -> None:
        """Send a final response we generated; keep it for retransmitted INVITEs (Timer G)."""
        self.txs.answer(tx, data, self.clock.monotonic())
        self._sender.send_to_source(data, tx.source, tx.transport, tx.conn)
        self._arm(tx.timer_at)

    # -- timers: one event-loop timer at the transactions' next_timer() ----------------------------
    def _arm(self, at: float | None) -> None:
        if at is None or (self._timer is not None and self._timer_at <= at):
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = at
        self._timer = loop.call_at(loop.time() + (at - self.clock.monotonic()), self.on_timer)

    def on_timer(self) -> None:
        """Run the transaction timers that are due on the clock, then arm for the next one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for tx, due in self.txs.on_timer(self.clock.monotonic()):
            if due is Due.RESEND_REQUEST:
                self._downstream(tx, tx.forwarded)
            elif due is Due.RESEND_RESPONSE and tx.last is not None:
                self._sender.send_to_source(tx.last, tx.source, tx.transport, tx.conn)
            elif due is Due.TIMEOUT and (req := reparse(tx.raw, self.max_size)) is not None:
                self._final(tx, response(req, 408, tx.to_tag))
        self._arm(self.txs.next_timer())

    def close(self) -> None:
        """Stop the timer (the transactions' timers stay due, for another ``on_timer``)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- responses -----------------------------------------------------------------------------
    def _response(self, resp: Response) -> None:
        branch = resp.top_via.branch or ""
        if not branch.startswith(BRANCH_PREFIX):
            return  # not ours: drop (RFC 3261 16.7 step 1)
        tx = self.txs.client(branch)
        if tx is None:  # relayed statelessly (or it outlived its transaction)
            self.stateless.response(resp, branch)
            return
        method = resp.cseq[1]
        if method == "CANCEL":
            return  # answers the CANCEL we sent downstream; upstream got its own 200
        if method == "INVITE":
            reply = self.txs.response(tx, resp.status, self.clock.monotonic())
            if reply is Reply.ACK_AND_RELAY:  # RFC 3261 17.1.1.3: the client transaction ACKs it
                tx.forwarded = local_request(tx, "ACK", resp.header("To"), self._sender, self.max_size)
                self._downstream(tx, tx.forwarded)
            elif reply is not Reply.RELAY:
                if reply is Reply.ACK_AGAIN:  # retransmitted final: ACK again, relay nothing
                    self._downstream(tx, tx.forwarded)
                return
        resp.pop_first_value("Via")
        self._relay_tx_response(tx, resp.status, resp.serialize())

    def _fast_response(self, resp: FastResponse) -> bool:
        """``_response`` on the relay fast path's view; False (nothing changed) for a final
        non-2xx response to a forwarded INVITE, which we ACK from the full parse."""
        branch = parse_via(resp.top).branch or ""
        if not branch.startswith(BRANCH_PREFIX):
            return True
        tx = self.txs.client(branch)
        if tx is None:
            self.stateless.fast_response(resp, branch)
            return True
        if resp.method == "CANCEL":
            return True
        if resp.method == "INVITE":
            if resp.status >= 300:
                return False
            if self.txs.response(tx, resp.status, self.clock.monotonic()) is Reply.DROP:
                return True
        self._relay_tx_response(tx, resp.status, resp.relayed)
        return True

    def _relay_tx_response(self, tx: InviteTx, status: int, data: bytes) -> None:
        self.counters.responses_relayed += 1
        if status >= 300:
            tx.last = data
        self._sender.send_to_source(data, tx.source, tx.transport, tx.conn)

    def _downstream(self, tx: InviteTx, data: bytes | None) -> None:
        """Send to where ``tx`` forwarded its INVITE (the INVITE again, our ACK or CANCEL)."""
        if data is not None and tx.dest is not None:
            self._sender.send_to(data, (tx.dest.host, tx.dest.port), tx.dest.transport)

    # -- CANCEL, everything else ---------------------------------------------------------------
    def _cancel(self, req: Request, source: tuple[str, int], transport: str, conn: object) -> None:
        key = server_key(req.top_via)
        tx = self.txs.server(key)
        origin = tx.source if tx is not None else self.txs.accepted.get(key)
        if origin is None or origin[0] != source[0]:  # only the INVITE's sender may cancel it
            refusal = self.stateless.source_refusal(req, source) if origin is None else ""
            if self.answers.refused(req, source, transport, conn, refusal):
                return
            self.answers.reply(req, 481, source, transport, conn)
            return
        # RFC 3261 16.10: 200 while the transaction lives, accepted too (nothing else to do then)
        self._sender.send_to_source(response(req, 200, tag(origin, key)), source, transport, conn)
        if tx is None:
            return
        if tx.state is State.DECIDING:
            tx.cancelled = True
        elif tx.state is State.PROCEEDING:
            self._downstream(tx, local_request(tx, "CANCEL", None, self._sender, self.max_size))

    def _other(self, req: Request, source: tuple[str, int], transport: str, conn: object) -> None:
        if not self.answers.here(req, source, transport, conn, self.redirect, self.stateless.source_refusal):
            self.stateless.forward(req, source, transport, conn)

    # -- housekeeping ---------------------------------------------------------------------------
    def rotate(self, now: float | None = None) -> None:
        """End the transactions whose lifetime has passed (``Transactions.expire``), at ``now``
        or the clock's."""
        self.txs.expire(self.clock.monotonic() if now is None else now)

    async def drain(self, deadline: float) -> None:
        """SIGTERM: new INVITEs get 503 + Retry-After (the upstream tries elsewhere) while the
        calls in progress finish: wait until every INVITE transaction has its final response
        and a moment has passed since the last one (its ACK and an early BYE still pass through
        us), or ``deadline`` seconds (``proxy.drain_timeout``). Responses and in-dialog requests
        keep flowing the whole time."""
        self.draining = True
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while loop.time() < end:
            if not self._tasks and not self.txs.in_progress() \
                    and self.clock.monotonic() - self.txs.last_final >= DRAIN_LINGER:
                return
            await asyncio.sleep(0.05)
        log.warning("drain timeout (%.0f s): %d INVITE transaction(s) still in progress", deadline,
                    self.txs.in_progress())
