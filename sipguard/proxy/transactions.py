"""INVITE transactions (RFC 3261 17.1.1 and 17.2.1) as one state table; time is an input.

Rules:
1. Every state change of an ``InviteTx`` is a row of ``TRANSITIONS``; any other is a bug and
   raises ``TransactionError`` (h11's ``_state.py``).
2. Nothing here reads a clock, sends or schedules: ``now`` comes in as an argument,
   ``next_timer()`` says when the next timer is due and ``on_timer(now)`` says what is due
   then (aioquic's ``get_timer``/``handle_timer``); the core arms one event-loop timer from it.
3. Timer A retransmits a forwarded INVITE over UDP (T1, doubling up to T2) until a response
   comes; Timer B (64*T1 after the INVITE arrived) answers 408; Timer G retransmits our final
   response over UDP until the ACK. Any response stops Timers A and B; the ACK stops G.
   A 2xx ends the client transaction (RFC 6026): responses that come after it with our
   branch (retransmissions, other forks' 2xx) are relayed statelessly (``stateless.response``,
   our keyed branch proves them ours), so a burst's answered calls are not kept by branch.
4. A 2xx relayed upstream also ends the ``InviteTx`` (RFC 6026 "Accepted"): all the server
   side still does is absorb the INVITE's retransmissions and answer a late CANCEL 200 with
   our To tag, for which its key and its source (one tuple per peer) are enough
   (``accepted``). A burst's peak is a lifetime of answered calls at once, so this is what
   each of them keeps for it: the key and a table slot, not the ~190 bytes of an InviteTx.
5. Expiry in arrival order (``expire``): a transaction ends one lifetime after it started
   (to the housekeeping tick and ``GRAIN``: keys are kept in slots of the transactions
   started within ``GRAIN`` of each other, and a slot ends when its last one is a lifetime
   old), so a burst's memory is free one lifetime after the burst, not two; one still
   deciding or forwarded gets another lifetime, while it is younger than four. A dict never
   shrinks: once the tables have fallen to a quarter of their peak they are rebuilt, or a
   burst's hash tables (megabytes) would stay for good.

"The same transaction" is ``sipguard.sip.transaction.server_key``, which replay uses too.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from sipguard.proxy.messages import TAG_PREFIX, Hop, tag
from sipguard.sip import Via
from sipguard.sip.transaction import server_key

T1 = 0.5
T2 = 4.0
TIMER_B = 64 * T1
PEERS = 1024        # sources kept as one shared tuple each (more: the table starts again)
GRAIN = 0.25        # s: transactions started this close share one expiry slot (one list, not a float each)


# StrEnum: a member hashes as its (cached) string does, so a row of the table is found
# without a call to Enum.__hash__; states still read as the strings logs and tests know
class State(StrEnum):
    DECIDING = "deciding"        # the pipeline has the INVITE
    PROCEEDING = "proceeding"    # forwarded, no final response yet
    COMPLETED = "completed"      # a non-2xx final response: ours, or downstream's (ACKed by us)
    DONE = "done"                # a 2xx went upstream: the dialog is the UAs' now


class Event(StrEnum):
    FORWARD = "forward"          # the decision: relay it downstream
    ANSWER = "answer"            # a final response of ours (reject, redirect, 487, 408 ...)
    PROVISIONAL = "provisional"  # 101-199 from downstream (100 is hop-by-hop: no event)
    SUCCESS = "success"          # 2xx from downstream
    FAILURE = "failure"          # 300-699 from downstream


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.DECIDING, Event.FORWARD): State.PROCEEDING,
    (State.DECIDING, Event.ANSWER): State.COMPLETED,
    (State.PROCEEDING, Event.ANSWER): State.COMPLETED,         # Timer B: 408
    (State.PROCEEDING, Event.PROVISIONAL): State.PROCEEDING,
    (State.PROCEEDING, Event.SUCCESS): State.DONE,
    (State.PROCEEDING, Event.FAILURE): State.COMPLETED,        # ACKed downstream by us
    (State.COMPLETED, Event.PROVISIONAL): State.COMPLETED,     # late, after our 408: relayed
    (State.COMPLETED, Event.SUCCESS): State.DONE,              # late 2xx: relayed (16.7 step 5)
    (State.COMPLETED, Event.FAILURE): State.COMPLETED,         # retransmitted: ACKed again
    (State.DONE, Event.PROVISIONAL): State.DONE,
    (State.DONE, Event.SUCCESS): State.DONE,                   # 2xx retransmissions pass
    (State.DONE, Event.FAILURE): State.COMPLETED,              # a non-2xx after a 2xx: ACKed
}


class TransactionError(Exception):
    """A transition that is not in ``TRANSITIONS``: a bug in the caller, never the network's doing."""


class Reply(Enum):
    """What becomes of a response to a forwarded INVITE."""

    DROP = "drop"                    # 100 (hop-by-hop), or a retransmitted final with nothing to resend
    RELAY = "relay"                  # upstream
    ACK_AND_RELAY = "ack_and_relay"  # a first non-2xx final: we ACK it, then it goes upstream
    ACK_AGAIN = "ack_again"          # a retransmitted non-2xx final: our ACK again, nothing upstream


class Due(Enum):
    """What a timer that ran out asks the core to do."""

    RESEND_REQUEST = "resend_request"    # Timer A: send ``forwarded`` to ``dest`` again
    TIMEOUT = "timeout"                  # Timer B: answer 408 upstream
    RESEND_RESPONSE = "resend_response"  # Timer G: send ``last`` upstream again


@dataclass(slots=True)
class InviteTx:
    """One INVITE server transaction and, once forwarded, its client transaction.

    A transaction lives 32 s (``proxy.transaction_timeout``), most of it after its decision:
    it then keeps bytes, not the parsed request (dozens of objects the cyclic collector would
    walk on every pass, for nothing), and parses them again on the rare paths that need a header: Timer B's
    408, a CANCEL, the ACK of a non-2xx response. What it keeps for its whole life is what a
    burst's peak is made of (a lifetime of calls at once), so nothing that can be derived:
    our To tag is made from ``source`` and ``key`` when a response of ours needs it, and
    ``source`` is one tuple per peer (``Transactions.start``)."""

    key: str
    source: tuple[str, int]
    transport: str
    conn: Any                      # the connection it came on (Any, not object: mypyc's dataclasses refuse that)
    raw: bytes                     # the INVITE as received (our own responses are built from it)
    state: State = State.DECIDING
    last: bytes | None = None      # last response sent upstream (for retransmitted INVITEs)
    cancelled: bool = False
    client_branch: str | None = None
    dest: Hop | None = None
    sent: bytes | None = None      # the INVITE as forwarded (CANCEL and ACK copy its headers)
    forwarded: bytes | None = None  # what Timer A / a retransmitted final response resends
    timer_at: float | None = None  # when its timer runs out (None: no timer)
    timer_seq: int = 0             # which entry of the timer heap is the live one
    interval: float = T1
    started: float = 0.0           # when the INVITE came, on the core's clock (Timer B counts from it)

    def __init__(self, key: str, source: tuple[str, int], transport: str, conn: Any, raw: bytes,
                 state: State = State.DECIDING, last: bytes | None = None, cancelled: bool = False,
                 client_branch: str | None = None, dest: Hop | None = None,
                 sent: bytes | None = None, forwarded: bytes | None = None, timer_at: float | None = None,
                 timer_seq: int = 0, interval: float = T1, started: float = 0.0) -> None:
        # written out (dataclass keeps it): compiled, where the generated one runs interpreted
        # (bench/RESULTS.md, session 7)
        self.key, self.source, self.transport, self.conn, self.raw = key, source, transport, conn, raw
        self.state, self.last, self.cancelled = state, last, cancelled
        self.client_branch, self.dest, self.sent, self.forwarded = client_branch, dest, sent, forwarded
        self.timer_at, self.timer_seq, self.interval, self.started = timer_at, timer_seq, interval, started

    @property
    def to_tag(self) -> str:
        """Our To tag for the responses we make (the same for a retransmitted INVITE)."""
        return tag(self.source, self.key)

    def advance(self, event: Event) -> None:
        """Take the transition ``event`` makes from this state; TransactionError when none."""
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            raise TransactionError(f"INVITE transaction {self.key}: no transition from {self.state.value} "
                                   f"on {event.value}")
        self.state = new


class Transactions:
    """The INVITE transactions of one core: by server key and by our client branch, the
    accepted ones by server key alone, in the order they end (``expire``), and their timers in
    one heap (an entry whose ``timer_seq`` is no longer the transaction's is stale and skipped).
    A server key is in ``invites`` or in ``accepted``, never in both."""

    def __init__(self, lifetime: float, now: float) -> None:
        self.lifetime = lifetime
        self.invites: dict[str, InviteTx] = {}      # server key -> tx
        self.clients: dict[str, InviteTx] = {}      # our branch -> tx
        # server key -> source, for a transaction whose 2xx went upstream (RFC 6026 "Accepted");
        # the source is the peer's one tuple (``_peer``), typed Any so that compiled it stays
        # that object (a tuple[str, int] is unboxed by mypyc: boxed again, a new tuple and port
        # int, ~100 bytes, each time it is stored)
        self.accepted: dict[str, Any] = {}
        self.last_final = 0.0  # when the last INVITE transaction got its final response
        # server keys in arrival order, so in the order they end (started + lifetime): in slots
        # of GRAIN, each with the start of its latest transaction
        self._slots: deque[list[str]] = deque()
        self._slot_at: deque[float] = deque()
        self._slot_from = 0.0   # when the last slot was opened
        self._again: deque[tuple[float, str]] = deque()  # (when, key): unfinished, another lifetime
        self._peak = 0  # the most transactions since the tables were last rebuilt
        # source address -> one tuple for all its transactions: each datagram comes with a new
        # tuple, host string and port, 160 bytes a transaction for 32 s, a third of what it keeps
        self._peers: dict[tuple[str, int], Any] = {}
        self._timers: list[tuple[float, int, InviteTx]] = []
        self._seq = 0

    # -- lookup ---------------------------------------------------------------------------------
    def server(self, key: str) -> InviteTx | None:
        """The INVITE server transaction of this key, unless it is accepted (``accepted``)."""
        return self.invites.get(key)

    def known(self, key: str) -> bool:
        """An INVITE with this key is a retransmission: its transaction is alive (accepted or not)."""
        return key in self.invites or key in self.accepted

    def client(self, branch: str) -> InviteTx | None:
        """The transaction whose forwarded INVITE carries our ``branch``."""
        return self.clients.get(branch)

    # -- transitions ----------------------------------------------------------------------------
    def _peer(self, source: tuple[str, int]) -> Any:
        """The one tuple kept for this source address (at most PEERS; more: the table starts again)."""
        shared = self._peers.get(source)
        if shared is None:
            if len(self._peers) >= PEERS:
                self._peers.clear()
            self._peers[source] = source
            shared = self._peers[source]
        return shared

    def start(self, tx: InviteTx) -> None:
        tx.source = self._peer(tx.source)
        self.invites[tx.key] = tx
        started = tx.started
        if self._slots and started - self._slot_from < GRAIN:
            self._slots[-1].append(tx.key)
            if started > self._slot_at[-1]:
                self._slot_at[-1] = started
        else:
            self._slots.append([tx.key])
            self._slot_at.append(started)
            self._slot_from = started

    def forward(self, tx: InviteTx, branch: str, dest: Hop, data: bytes, now: float) -> None:
        """The INVITE went downstream as ``data`` with our ``branch``: Timer A over UDP."""
        tx.advance(Event.FORWARD)
        tx.client_branch, tx.dest, tx.forwarded, tx.sent = branch, dest, data, data
        tx.last = None  # our 100 is not resent after forwarding: downstream answers now
        self.clients[branch] = tx
        if dest.transport == "udp":
            self._schedule(tx, now + tx.interval)

    def answer(self, tx: InviteTx, data: bytes, now: float) -> None:
        """We sent the final response ``data`` upstream: kept for retransmitted INVITEs, and
        over UDP resent (Timer G) until the ACK."""
        tx.advance(Event.ANSWER)
        tx.last, tx.forwarded = data, None
        self.last_final = now
        tx.timer_at = None
        if tx.transport == "udp":
            tx.interval = T1
            self._schedule(tx, now + T1)

    def response(self, tx: InviteTx, status: int, now: float) -> Reply:
        """The client transaction's part (RFC 3261 17.1.1) for a response to our INVITE."""
        if tx.state is State.PROCEEDING:
            tx.timer_at = None  # any response ends Timers A and B
        if status == 100:
            return Reply.DROP
        if status >= 300:
            first = tx.state is not State.COMPLETED
            tx.advance(Event.FAILURE)
            if first:
                self.last_final = now
                return Reply.ACK_AND_RELAY
            return Reply.ACK_AGAIN if tx.forwarded is not None else Reply.DROP
        if status >= 200:
            tx.advance(Event.SUCCESS)
            self.last_final = now
            # what only a transaction in progress reads (Timer A/B, CANCEL, the ACK of a non-2xx):
            # freed now, not when the transaction expires, a third of what it holds for 32-64 s
            tx.raw, tx.sent, tx.forwarded = b"", None, None
            # and the client side is over (RFC 6026): what comes later with our branch (a 2xx
            # again, another fork's 2xx) is relayed by it statelessly; the server side stays
            # a lifetime to absorb the INVITE's retransmissions
            branch, tx.client_branch = tx.client_branch, None
            if branch is not None and self.clients.get(branch) is tx:
                del self.clients[branch]
            # nothing of ours to resend to a retransmitted INVITE: accepted, the InviteTx goes
            # (one with a final response of its own before, a late 2xx, stays as it is)
            if tx.last is None and self.invites.get(tx.key) is tx:
                del self.invites[tx.key]
                self.accepted[tx.key] = self._peer(tx.source)
        else:
            tx.advance(Event.PROVISIONAL)
        return Reply.RELAY

    def ack_absorbed(self, to_tag: str, via: Via) -> bool:
        """An ACK of a non-2xx final response we sent (our To tag, or its transaction is
        completed) is hop-by-hop: absorbed, Timer G stopped."""
        tx = self.server(server_key(via))
        if to_tag.startswith(TAG_PREFIX) or (tx is not None and tx.state is State.COMPLETED):
            if tx is not None:
                tx.timer_at = None
            return True
        return False

    # -- time -----------------------------------------------------------------------------------
    def _schedule(self, tx: InviteTx, at: float) -> None:
        self._seq += 1
        tx.timer_at, tx.timer_seq = at, self._seq
        heapq.heappush(self._timers, (at, self._seq, tx))

    def next_timer(self) -> float | None:
        """When ``on_timer`` has something to do next; None: no timer runs."""
        heap = self._timers
        while heap:
            at, seq, tx = heap[0]
            if tx.timer_at is not None and tx.timer_seq == seq:
                return at
            heapq.heappop(heap)
        return None

    def on_timer(self, now: float) -> list[tuple[InviteTx, Due]]:
        """The timers due at ``now``, each run: what the core must do for each."""
        heap, out = self._timers, []
        while heap and heap[0][0] <= now:
            _, seq, tx = heapq.heappop(heap)
            if tx.timer_at is None or tx.timer_seq != seq:
                continue
            tx.timer_at = None
            due = self._run(tx, now)
            if due is not None:
                out.append((tx, due))
        return out

    def _run(self, tx: InviteTx, now: float) -> Due | None:
        if tx.state is State.PROCEEDING:         # Timers A and B
            if tx.forwarded is None or tx.dest is None:
                return None
            if now - tx.started >= TIMER_B:
                return Due.TIMEOUT
            tx.interval = min(tx.interval * 2, T2)
            self._schedule(tx, now + tx.interval)
            return Due.RESEND_REQUEST
        if tx.state is State.COMPLETED:          # Timer G
            if tx.last is None or now - tx.started >= TIMER_B:
                return None
            tx.interval = min(tx.interval * 2, T2)
            self._schedule(tx, now + tx.interval)
            return Due.RESEND_RESPONSE
        return None

    # -- expiry ---------------------------------------------------------------------------------
    def expire(self, now: float) -> int:
        """End the transactions whose lifetime has passed at ``now``; an unfinished one
        (deciding/proceeding) younger than four lifetimes gets another. Returns how many ended."""
        if len(self) > self._peak:
            self._peak = len(self)
        ended = 0
        slots, slot_at, again, lifetime = self._slots, self._slot_at, self._again, self.lifetime
        while slot_at and now - slot_at[0] >= lifetime:
            slot_at.popleft()
            for key in slots.popleft():
                ended += self._end(key, now)
        while again and again[0][0] <= now:
            ended += self._end(again.popleft()[1], now)
        if self._peak >= 1024 and len(self) * 4 < self._peak:
            self._shrink()
        return ended

    def _end(self, key: str, now: float) -> int:
        if self.accepted.pop(key, None) is not None:
            return 1
        tx = self.invites.get(key)
        if tx is None:
            return 0  # forgotten already (clear)
        if (tx.state is State.DECIDING or tx.state is State.PROCEEDING) and now - tx.started < 4 * self.lifetime:
            self._again.append((now + self.lifetime, key))
            return 0
        del self.invites[key]
        branch = tx.client_branch
        if branch is not None and self.clients.get(branch) is tx:
            del self.clients[branch]
        return 1

    def _shrink(self) -> None:
        """New tables sized for what is left: a dict keeps the hash table of its peak."""
        self.invites = {k: tx for k, tx in self.invites.items()}
        self.clients = {k: tx for k, tx in self.clients.items()}
        self.accepted = {k: source for k, source in self.accepted.items()}
        self._peak = len(self)

    def in_progress(self) -> int:
        """INVITE transactions deciding or forwarded and waiting for their final response."""
        return sum(1 for tx in self.invites.values()
                   if tx.state is State.DECIDING or tx.state is State.PROCEEDING)

    def __len__(self) -> int:
        return len(self.invites) + len(self.accepted)

    def clear(self) -> None:
        """Forget every transaction and timer (benchmarks replaying the same calls)."""
        self.invites.clear()
        self.clients.clear()
        self.accepted.clear()
        self._slots.clear()
        self._slot_at.clear()
        self._again.clear()
        self._timers.clear()
