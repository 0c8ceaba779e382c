"""The INVITE transaction table (sipguard.proxy.transactions) without a loop, a socket or a
clock: every (state, event) pair, what a response does, retransmission and ACK matching,
the timers stepped by ``now``, expiry by generations."""

from __future__ import annotations

import itertools
import sys

import pytest

from sipguard.proxy.messages import TAG_PREFIX, Hop, tag
from sipguard.proxy.transactions import (
    PEERS,
    T1,
    Due,
    Event,
    InviteTx,
    Reply,
    State,
    TransactionError,
    Transactions,
)
from sipguard.sip import parse_via
from sipguard.sip.transaction import server_key

D, P, C, X = State.DECIDING, State.PROCEEDING, State.COMPLETED, State.DONE
# state -> what each event leads to; "-" : not a transition (a bug in the caller)
TABLE = {
    #    FORWARD  ANSWER  PROVISIONAL  SUCCESS  FAILURE
    D: (P,       C,      "-",         "-",     "-"),
    P: ("-",     C,      P,           X,       C),
    C: ("-",     "-",    C,           X,       C),
    X: ("-",     "-",    X,           X,       C),
}
EVENTS = (Event.FORWARD, Event.ANSWER, Event.PROVISIONAL, Event.SUCCESS, Event.FAILURE)
VIA = parse_via("SIP/2.0/UDP 192.0.2.1:5061;branch=z9hG4bK-1")
UAS = Hop("192.0.2.9", 5060, "udp")


def tx(state: State = State.DECIDING, transport: str = "udp", started: float = 100.0) -> InviteTx:
    return InviteTx(server_key(VIA), ("192.0.2.1", 5061), transport, None, b"INVITE ...", state=state,
                    started=started)


def test_the_table_covers_every_state_and_event() -> None:
    assert set(TABLE) == set(State) and set(EVENTS) == set(Event)


@pytest.mark.parametrize("state, event", list(itertools.product(State, Event)))
def test_every_state_and_event(state: State, event: Event) -> None:
    expected = TABLE[state][EVENTS.index(event)]
    t = tx(state)
    if expected == "-":
        with pytest.raises(TransactionError, match=f"no transition from {state.value} on {event.value}"):
            t.advance(event)
        assert t.state is state
    else:
        t.advance(event)
        assert t.state is expected


@pytest.mark.parametrize("state, status, reply, after", [
    (P, 100, Reply.DROP, P),            # hop-by-hop
    (P, 180, Reply.RELAY, P),
    (P, 200, Reply.RELAY, X),
    (P, 486, Reply.ACK_AND_RELAY, C),   # RFC 3261 17.1.1.3: the client transaction ACKs it
    (C, 486, Reply.ACK_AGAIN, C),       # retransmitted: our ACK again, nothing upstream
    (C, 200, Reply.RELAY, X),
    (X, 200, Reply.RELAY, X),
    (X, 603, Reply.ACK_AND_RELAY, C),
])
def test_a_response_to_the_forwarded_invite(state: State, status: int, reply: Reply, after: State) -> None:
    txs, t = Transactions(32.0, 0.0), tx(state)
    t.forwarded = b"ACK ..."  # what a completed transaction resends
    assert txs.response(t, status, 5.0) is reply and t.state is after
    assert txs.last_final == (5.0 if reply is Reply.ACK_AND_RELAY or (status >= 200 and status < 300) else 0.0)


def test_a_retransmitted_final_with_nothing_to_resend_is_dropped() -> None:
    assert Transactions(32.0, 0.0).response(tx(C), 486, 1.0) is Reply.DROP  # completed by our own 408


def test_retransmissions_and_acks_find_the_transaction_by_the_rfc_3261_key() -> None:
    txs, t = Transactions(32.0, 0.0), tx()
    txs.start(t)
    assert txs.server(server_key(parse_via("SIP/2.0/UDP 192.0.2.1:5061;branch=z9hG4bK-1;rport"))) is t
    assert txs.server(server_key(parse_via("SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-1"))) is None
    assert txs.server(server_key(parse_via("SIP/2.0/UDP 192.0.2.1:5061;branch=z9hG4bK-2"))) is None
    assert not txs.ack_absorbed("uas-tag", VIA)           # an ACK of a 2xx: relayed, not ours
    assert txs.ack_absorbed(TAG_PREFIX + "abc", VIA)      # our tag: hop-by-hop
    t.state = State.COMPLETED
    assert txs.ack_absorbed("uas-tag", VIA)               # the ACK of a non-2xx we ACKed downstream


def test_timers_are_stepped_by_now_alone() -> None:
    txs, t = Transactions(32.0, 0.0), tx(started=100.0)
    txs.start(t)
    assert txs.next_timer() is None and txs.on_timer(1e9) == []
    txs.forward(t, "z9hG4bKsg1", UAS, b"INVITE fwd", 100.0)
    assert txs.client("z9hG4bKsg1") is t and t.state is State.PROCEEDING and txs.next_timer() == 100.0 + T1
    assert txs.on_timer(100.4) == []                                  # not yet
    assert txs.on_timer(100.5) == [(t, Due.RESEND_REQUEST)]           # Timer A
    assert txs.next_timer() == 101.5
    assert txs.response(t, 100, 101.0) is Reply.DROP                  # any response stops A and B
    assert txs.next_timer() is None and txs.on_timer(200.0) == []


def test_timer_b_then_timer_g() -> None:
    txs, t = Transactions(32.0, 0.0), tx(started=0.0)
    txs.forward(t, "z9hG4bKsg1", UAS, b"INVITE fwd", 0.0)
    due = []
    while (at := txs.next_timer()) is not None and at < 40:
        due += [(at, d) for _, d in txs.on_timer(at)]
        if due[-1][1] is Due.TIMEOUT:
            break
    assert due[-1] == (35.5, Due.TIMEOUT) and {d for _, d in due[:-1]} == {Due.RESEND_REQUEST}
    txs.answer(t, b"SIP/2.0 408", 35.5)                                # the core's 408
    assert t.state is State.COMPLETED and t.last == b"SIP/2.0 408" and t.forwarded is None
    assert txs.on_timer(36.0) == [] and txs.next_timer() is None      # past 64*T1: not resent


def test_timer_g_only_over_udp() -> None:
    txs = Transactions(32.0, 0.0)
    udp, tcp = tx(started=0.0), tx(transport="tcp", started=0.0)
    txs.answer(udp, b"SIP/2.0 603", 0.0)
    txs.answer(tcp, b"SIP/2.0 603", 0.0)
    assert udp.timer_at == T1 and tcp.timer_at is None
    assert txs.on_timer(0.5) == [(udp, Due.RESEND_RESPONSE)] and txs.next_timer() == 1.5


def test_expiry_one_lifetime_after_start_keeps_unfinished_ones_up_to_four() -> None:
    txs = Transactions(10.0, 0.0)
    done, deciding, stuck = tx(State.DONE, started=0.0), tx(State.DECIDING, started=0.0), \
        tx(State.PROCEEDING, started=-35.0)
    late = tx(State.DONE, started=6.0)
    done.key, stuck.key, late.key, stuck.client_branch = "done", "stuck", "late", "z9hG4bKsg-stuck"
    done.client_branch = "z9hG4bKsg-done"
    for t in (stuck, done, deciding, late):
        txs.start(t)
    txs.clients[stuck.client_branch] = stuck
    txs.clients[done.client_branch] = done
    assert txs.expire(9.5) == 1          # only the stuck one: past four lifetimes
    assert txs.server("stuck") is None and txs.client("z9hG4bKsg-stuck") is None and len(txs) == 3
    assert txs.expire(10.0) == 1         # exactly one lifetime after it started, not two
    assert txs.server("done") is None and txs.client("z9hG4bKsg-done") is None
    assert txs.server(deciding.key) is deciding and txs.server("late") is late
    assert txs.expire(16.0) == 1 and txs.server("late") is None
    assert txs.expire(19.9) == 0 and txs.expire(20.0) == 0 and txs.expire(30.0) == 0  # unfinished:
    assert txs.server(deciding.key) is deciding                                     # another lifetime
    assert txs.expire(40.0) == 1 and len(txs) == 0   # four lifetimes old: ended even undecided


def test_tables_are_rebuilt_once_they_fall_far_below_their_peak() -> None:
    """A dict keeps the hash table of its largest size: after a burst, new ones sized for what is left."""
    txs = Transactions(10.0, 0.0)
    burst = []
    for i in range(4000):
        t = tx(State.DONE, started=0.0 if i < 3500 else 5.0)
        t.key, t.client_branch = f"k{i}", f"z9hG4bKsg-{i}"
        txs.start(t)
        txs.clients[t.client_branch] = t
        burst.append(t)
    invites, clients = txs.invites, txs.clients
    txs.expire(1.0)
    assert txs.invites is invites       # nothing ended: the same tables
    txs.expire(10.0)                    # 3,500 of 4,000 ended: an eighth left
    assert len(txs) == 500 and txs.invites is not invites and txs.clients is not clients
    assert txs.server("k3999") is burst[3999] and txs.client("z9hG4bKsg-3999") is burst[3999]
    assert sys.getsizeof(txs.invites) * 4 < sys.getsizeof(invites)




def test_what_a_transaction_keeps_for_its_lifetime_is_shared_or_derived() -> None:
    """A burst's peak is a lifetime of transactions at once: every datagram comes with its own
    source tuple (new host string, new port), kept as one tuple per peer; our To tag is made
    from source and key when a response of ours needs it, the same each time."""
    txs = Transactions(32.0, 0.0)
    made = []
    for i in range(3):
        t = InviteTx(f"z9hG4bK-{i}|192.0.2.1|5061", ("".join(("192.0.2.", "1")), int("5061")), "udp", None, b"")
        txs.start(t)
        made.append(t)
    # compiled, the tuple is stored unboxed (mypyc): what is shared is its host string
    assert made[0].source == ("192.0.2.1", 5061) and made[1].source[0] is made[0].source[0] is made[2].source[0]
    assert made[0].to_tag.startswith(TAG_PREFIX) and made[0].to_tag == made[0].to_tag == tag(made[0].source, made[0].key)
    assert made[1].to_tag != made[0].to_tag
    for port in range(PEERS + 10):   # many sources: the table starts again, it never grows past PEERS
        txs.start(InviteTx(f"b{port}|192.0.2.2|{port}", ("192.0.2.2", port), "udp", None, b""))
    assert 0 < len(txs._peers) <= PEERS


def test_an_accepted_transaction_is_its_key_and_source_until_its_lifetime_ends() -> None:
    """RFC 6026 "Accepted": once a 2xx went upstream, the table keeps the key (retransmitted
    INVITEs are absorbed) and the source (a late CANCEL's 200 carries our To tag), not the
    InviteTx; the ACK rule is the one of a transaction answered 2xx; it ends one lifetime after
    its INVITE came, time stepped by ``now``."""
    txs, t = Transactions(32.0, 0.0), tx(started=100.0)
    txs.start(t)
    txs.forward(t, "z9hG4bKsg1", UAS, b"INVITE fwd", 100.0)
    assert txs.response(t, 180, 100.5) is Reply.RELAY and txs.server(t.key) is t
    assert txs.response(t, 200, 101.0) is Reply.RELAY and t.state is State.DONE
    assert txs.server(t.key) is None and txs.invites == {} and txs.clients == {} and len(txs) == 1
    assert txs.known(t.key) and txs.accepted == {t.key: ("192.0.2.1", 5061)}
    assert not txs.ack_absorbed("uas-tag", VIA) and txs.ack_absorbed(TAG_PREFIX + "abc", VIA)
    assert txs.next_timer() is None and txs.on_timer(1e9) == []
    assert txs.expire(131.9) == 0 and txs.known(t.key)
    assert txs.expire(132.0) == 1 and not txs.known(t.key) and len(txs) == 0 and txs.accepted == {}


def test_what_has_a_final_response_of_its_own_stays_a_transaction() -> None:
    """A 2xx after our own final response (a late 2xx after Timer B's 408) or after a relayed
    non-2xx leaves the InviteTx as it was: its ``last`` still answers retransmitted INVITEs."""
    txs = Transactions(32.0, 0.0)
    ours, relayed = tx(started=0.0), tx(started=0.0)
    relayed.key = "other"
    for t, branch in ((ours, "z9hG4bKsg1"), (relayed, "z9hG4bKsg2")):
        txs.start(t)
        txs.forward(t, branch, UAS, b"INVITE fwd", 0.0)
    txs.answer(ours, b"SIP/2.0 408", 35.5)
    assert txs.response(relayed, 486, 1.0) is Reply.ACK_AND_RELAY
    relayed.last = b"SIP/2.0 486"        # what the core keeps of a relayed final (_relay_tx_response)
    for t in (ours, relayed):
        assert txs.response(t, 200, 36.0) is Reply.RELAY and t.state is State.DONE
        assert txs.server(t.key) is t and t.last is not None
    assert len(txs) == 2


def test_no_transaction_ends_before_its_lifetime_nor_long_after() -> None:
    """Expiry in arrival order, in slots of transactions started close together: each ends at
    the first ``expire`` at least one lifetime after it started, and no later than a slot's
    width (0.25 s) after that, accepted or not."""
    txs, lifetime = Transactions(10.0, 0.0), 10.0
    started = {}
    for i in range(60):   # irregular arrivals: close together, then a gap (binary fractions: exact)
        at = i * 0.0625 + (1.0 if i >= 30 else 0.0)
        t = tx(started=at)
        t.key = f"k{i}"
        txs.start(t)
        if i % 2:   # forwarded and answered 2xx: accepted (the others completed)
            txs.forward(t, f"z9hG4bKsg{i}", UAS, b"INVITE fwd", at)
            txs.response(t, 200, at + 0.01)
        else:
            txs.answer(t, b"SIP/2.0 603", at)
        started[t.key] = at
    now = 0.0
    while now < 30.0:
        txs.expire(now)
        for key, at in started.items():
            alive = key in txs.invites or key in getattr(txs, "accepted", {})
            assert alive or now >= at + lifetime, (key, at, now)
            assert not alive or now < at + lifetime + 0.25, (key, at, now)
        now += 0.03125
    assert len(txs) == 0


def test_accepted_transactions_of_one_peer_share_its_source_tuple() -> None:
    """What an accepted transaction keeps besides its key is a reference to its peer's one
    tuple, not a tuple (and port int) of its own: ~100 bytes a call at a burst's peak."""
    txs = Transactions(32.0, 0.0)
    for i in range(3):
        t = InviteTx(f"z9hG4bK-{i}|192.0.2.1|5061", ("".join(("192.0.2.", "1")), int("5061")), "udp", None, b"")
        txs.start(t)
        txs.forward(t, f"z9hG4bKsg{i}", UAS, b"INVITE fwd", 0.0)
        txs.response(t, 200, 0.0)
    first, *others = txs.accepted.values()
    assert first == ("192.0.2.1", 5061) and all(source is first for source in others)
