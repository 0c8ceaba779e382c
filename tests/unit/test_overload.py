"""Overload shedding (issue "Hold the edge", item 3): the decision with time as an input,
the 503 built from the raw lines, the ACK of it absorbed, and the guard on the receive path."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sipguard.proxy.overload import (
    ACK_WINDOW,
    RECORDS_AT,
    SHED_TAG,
    MemoryTrim,
    OverloadCounters,
    OverloadGuard,
    QueueProbe,
    ShedState,
)
from sipguard.sip import parse
from sipguard.sip.relay import overload_ack, overload_answer
from tests.sipclient import invite, parse_msg

HEADERS = b"Retry-After: 5\r\nServer: sipguard\r\n"
INVITE = invite(("127.0.0.1", 5060), ("192.0.2.7", 5070), call_id="c1", branch="z9hG4bKone")


# -- the decision ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("delays", "expected"), [
    ([0.001, 0.005, 0.019], [False, False, False]),          # under the threshold: decided as usual
    ([0.021], [True]),                                       # past it: shed
])
def test_shed_state_follows_the_age_of_the_work(delays: list[float], expected: list[bool]) -> None:
    state = ShedState(threshold=0.02)
    assert [state.update(d) for d in delays] == expected


def test_shed_state_threshold_zero_never_sheds() -> None:
    state = ShedState(threshold=0.0)
    assert not any(state.update(d) for d in (0.0, 1.0, 60.0))
    state = ShedState(threshold=0.02)
    assert state.update(0.05)
    state.threshold = 0.0                                    # turned off by a reload while shedding
    assert not state.update(0.05) and state.share == 0.0


def test_shed_state_share_follows_the_age_against_half_the_threshold() -> None:
    """An episode starts shedding every new INVITE; then the share goes down while the work
    waits less than half the threshold, up while it waits more, and the episode ends when the
    share is back to 0 (not at the first measurement under half the threshold)."""
    state = ShedState(threshold=0.02)
    assert state.update(0.03) and state.share == 1.0
    assert state.update(0.02) and state.share < 1.0          # falling: less
    falling = state.share
    assert state.update(0.009) and state.share < falling     # under the target: less again
    low = state.share
    assert state.update(0.009) and state.share < low         # still under it: still less
    low = state.share
    assert state.update(0.015) and state.share > low         # over the target (under the threshold): more
    assert state.update(0.015) and state.share > low
    shares = []
    while state.update(0.005):                               # under it: down to 0, then the episode ends
        shares.append(state.share)
    assert shares == sorted(shares, reverse=True) and len(shares) > 2
    assert not state.shedding and state.share == 0.0
    assert not state.update(0.015)                           # a new episode: past the threshold only
    assert state.update(0.025) and state.share == 1.0


def test_shed_state_an_episode_with_no_overload_behind_it_ends_within_a_few_ticks() -> None:
    """A busy moment of the host (two late ticks) starts an episode; the queue has caught up at
    the next tick and stays short: the share falls faster than it rises, so the episode sheds
    for a few ticks (30 ms), not the ten or more an even gain would take."""
    state = ShedState(threshold=0.02)
    assert state.update(0.025)
    ticks = 0
    while state.update(0.004):
        ticks += 1
    assert ticks <= 3


@pytest.mark.parametrize("overload", [1.5, 3.0, 6.0])
def test_shed_state_holds_the_age_near_its_target_under_sustained_overload(overload: float) -> None:
    """A worker offered ``overload`` x what it handles, a shed INVITE costing a tenth of an
    admitted one, measured each 10 ms tick: the age of the work settles at half the threshold
    (not an oscillation between the threshold and half of it, every restart of admission
    letting the whole excess in), the episode never ends while the overload lasts, and the
    share shed is what the overload asks (not all: the worker keeps completing calls)."""
    state, backlog, ages, shares = ShedState(threshold=0.02), 0.0, [], []
    for _ in range(500):
        share = state.share if state.shedding else 0.0
        backlog = max(0.0, backlog + 0.01 * overload * ((1 - share) + 0.1 * share) - 0.01)
        state.update(backlog)
        ages.append(backlog)
        shares.append(share)
    settled = ages[100:]
    assert max(settled) < 0.011 and min(settled) > 0.009
    assert all(s > 0 for s in shares[5:])
    needed = (1 - 1 / overload) / 0.9          # the share that balances the work
    assert abs(sum(shares[100:]) / len(shares[100:]) - needed) < 0.02


def test_shed_state_take_spreads_the_share_evenly() -> None:
    state = ShedState(threshold=0.02)
    state.update(0.05)
    assert [state.take() for _ in range(4)] == [True] * 4      # share 1: every one
    state.share, state.credit = 0.25, 0.0
    assert [state.take() for _ in range(8)] == [False, False, False, True] * 2
    state.share, state.credit = 0.6, 0.0
    assert sum(state.take() for _ in range(1000)) in (599, 600)


# -- the cheap answer ------------------------------------------------------------------------------
def test_overload_answer_copies_the_transaction_lines_and_adds_retry_after() -> None:
    data = INVITE.replace(b"\r\nFrom:", b"\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKup\r\nFrom:", 1)
    answer = overload_answer(data, HEADERS, SHED_TAG, 65535)
    assert answer is not None
    msg, req = parse(answer), parse(data)
    assert msg.status == 503 and msg.header("Retry-After") == "5"  # type: ignore[union-attr]
    assert msg.headers("Via") == req.headers("Via") and len(msg.headers("Via")) == 2
    for name in ("From", "Call-ID", "CSeq"):
        assert msg.header(name) == req.header(name)
    assert msg.to.tag.startswith(SHED_TAG.decode())  # type: ignore[union-attr]
    assert msg.header("Content-Length") == "0" and msg.body == b""
    # a retransmission gets the same answer (the To tag is a function of the request)
    assert overload_answer(data, HEADERS, SHED_TAG, 65535) == answer


def test_overload_answer_reads_compact_and_lower_case_names() -> None:
    data = (b"INVITE sip:+13035550100@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/TCP 192.0.2.7:5070;branch=z9hG4bKc\r\n"
            b"f: <sip:a@192.0.2.7>;tag=1\r\nt: <sip:b@127.0.0.1>\r\ni: compact\r\ncseq: 7 INVITE\r\n"
            b"Max-Forwards: 70\r\nl: 0\r\n\r\n")
    answer = overload_answer(data, HEADERS, SHED_TAG, 65535)
    assert answer is not None
    msg = parse_msg(answer)
    assert msg.status == 503 and msg.header("Call-ID") == "compact" and msg.header("CSeq") == "7 INVITE"
    assert "tag=sgx" in (msg.header("To") or "")


@pytest.mark.parametrize("data", [
    INVITE.replace(b"To: <sip:+13035550100@127.0.0.1;user=phone>",
                   b"To: <sip:+13035550100@127.0.0.1;user=phone>;tag=dialog"),      # re-INVITE: in-dialog
    INVITE.replace(b"To: <sip:+13035550100@127.0.0.1;user=phone>",
                   b"To: <sip:+13035550100@127.0.0.1;user=phone> ; TAG = x"),        # any spelling of it
    INVITE.replace(b"INVITE ", b"OPTIONS ", 1),                                     # not an INVITE
    INVITE.replace(b"\r\nCall-ID:", b"\r\n continued\r\nCall-ID:", 1),               # folded line
    INVITE.replace(b"\r\nCSeq: 1 INVITE", b"", 1),                                  # no CSeq
    INVITE.replace(b"\r\nCall-ID: c1", b"\r\nCall-ID: c1\r\ni: c2", 1),               # two Call-IDs
    INVITE.replace(b"\r\n", b"\n"),                                                 # bare LF: the full path's
    INVITE.split(b"\r\n\r\n")[0],                                                   # no end of head
])
def test_overload_answer_leaves_everything_else_to_the_full_path(data: bytes) -> None:
    assert overload_answer(data, HEADERS, SHED_TAG, 65535) is None


def test_overload_ack_is_recognised_by_our_tag_in_to_only() -> None:
    ack = (b"ACK sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKone\r\n"
           b"From: <sip:a@192.0.2.7>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=sgx0011\r\nCall-ID: c1\r\n"
           b"CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
    assert overload_ack(ack, SHED_TAG)
    assert not overload_ack(ack.replace(b"tag=sgx0011", b"tag=uas1"), SHED_TAG)
    assert not overload_ack(ack.replace(b"tag=1", b"tag=sgx1").replace(b"tag=sgx0011", b"tag=uas"), SHED_TAG)
    assert not overload_ack(ack.replace(b"ACK ", b"BYE ", 1), SHED_TAG)
    assert not overload_ack(ack[:-4], SHED_TAG)


# -- the guard on the receive path -----------------------------------------------------------------
class Sent(list[tuple[bytes, tuple[str, int], str]]):
    def __call__(self, data: bytes, addr: tuple[str, int], transport: str, conn: object) -> None:
        self.append((data, addr, transport))


def test_guard_answers_new_invites_only_while_shedding() -> None:
    sent = Sent()
    guard = OverloadGuard(0.02, 7, 65535, sent)
    guard.due = time.monotonic() + 3600       # the loop is not late: shedding is the state's word only
    src = ("192.0.2.7", 5070)
    assert not guard.intercept(INVITE, src, "udp", None) and sent == []
    guard.measure(0.5)
    bye = INVITE.replace(b"INVITE sip", b"BYE sip", 1).replace(b"1 INVITE", b"2 BYE")
    response = b"SIP/2.0 200 OK\r\n" + INVITE.split(b"\r\n", 1)[1]
    reinvite = INVITE.replace(b"user=phone>\r\nCall-ID", b"user=phone>;tag=d\r\nCall-ID", 1)
    assert reinvite != INVITE
    for other in (bye, response, reinvite):
        assert not guard.intercept(other, src, "udp", None)
    assert guard.intercept(INVITE, src, "udp", None)
    assert len(sent) == 1 and sent[0][1:] == (src, "udp")
    answer = parse_msg(sent[0][0])
    assert answer.status == 503 and answer.header("Retry-After") == "7"
    ack = (b"ACK sip:b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKone\r\n"
           b"To: " + (answer.header("To") or "").encode() + b"\r\n\r\n")
    guard.measure(0.0)                        # over: the ACK of an earlier answer is still absorbed
    assert guard.intercept(ack, src, "udp", None)
    assert guard.counters == OverloadCounters(shed_503=1, shed_ack_absorbed=1, overload_episodes=1)
    guard.shed_at -= ACK_WINDOW               # past the answer's Timer H (and more): not looked for
    assert not guard.intercept(ack, src, "udp", None)
    assert guard.counters.shed_ack_absorbed == 1
    guard.measure(0.5)                        # a second episode
    assert guard.counters.overload_episodes == 2


def test_intercepted_asks_the_guard_about_invites_and_acks_only() -> None:
    """core.Intercepted, the worker's receive: the guard sees new INVITEs and ACKs (and takes
    the ones it answers); every other message goes straight to the core, unseen."""
    from sipguard.proxy.core import Intercepted

    asked: list[bytes] = []
    delivered: list[bytes] = []

    def intercept(data: bytes, source: tuple[str, int], transport: str, conn: object) -> bool:
        asked.append(data)
        return b"take" in data

    receive = Intercepted(intercept, lambda d, s, t, c: delivered.append(d))
    bye = INVITE.replace(b"INVITE sip", b"BYE sip", 1)
    response = b"SIP/2.0 200 OK\r\n" + INVITE.split(b"\r\n", 1)[1]
    ack = b"ACK sip:b SIP/2.0\r\n\r\n"
    taken = INVITE.replace(b"Call-ID: c1", b"Call-ID: take")
    for data in (INVITE, bye, response, ack, taken, b"ACK take"):
        receive(data, ("192.0.2.7", 5070), "udp", None)
    assert asked == [INVITE, ack, taken, b"ACK take"]
    assert delivered == [INVITE, bye, response, ack]


def test_guard_sheds_when_the_next_tick_is_overdue() -> None:
    """A loop stalled longer than shed_delay: the first message after the stall sees it."""
    sent = Sent()
    guard = OverloadGuard(0.02, 5, 65535, sent)
    guard.due = time.monotonic() - 1.0       # the tick should have run a second ago
    assert guard.intercept(INVITE, ("192.0.2.7", 5070), "udp", None)
    assert guard.state.shedding and guard.gauges()[1] >= 1.0
    off = OverloadGuard(0.0, 5, 65535, sent)  # shed_delay 0: off
    off.due = time.monotonic() - 1.0
    assert not off.intercept(INVITE, ("192.0.2.7", 5070), "udp", None)


def test_one_late_tick_is_a_preemption_two_in_a_row_are_a_loop_behind_and_a_stall_is_one() -> None:
    async def main(lates: list[float]) -> list[bool]:
        guard = OverloadGuard(0.02, 5, 65535, Sent())
        seen = []
        try:
            for late in lates:
                guard.due = time.monotonic() - late
                guard._tick()
                seen.append(guard.state.shedding)
            return seen
        finally:
            guard.close()

    assert asyncio.run(main([0.05, 0.0, 0.05])) == [False, False, False]   # preemptions
    assert asyncio.run(main([0.05, 0.05, 0.0])) == [False, True, False]    # behind, then caught up
    assert asyncio.run(main([0.3])) == [True]                             # a stall: 4x the threshold


# -- decisions waiting on the store (a network store: RedisStore.waiting) ------------------------
def test_measure_counts_a_decision_waiting_on_the_store_on_the_scale_of_shed_delay() -> None:
    """How far into store_timeout the oldest decision waiting on the store is: STORE_AT of it
    (half) counts as work waiting shed_delay, so a worker sheds before the calls it let in
    are decided degraded (bench/RESULTS.md, "Session 10")."""
    from sipguard.proxy.overload import STORE_AT

    assert STORE_AT == 0.5
    guard = OverloadGuard(0.02, 5, 65535, Sent())
    assert not guard.measure(0.0, 0.4)          # 16 ms on the shed_delay scale: let in
    assert guard.measure(0.0, 0.6)              # 24 ms: shed
    assert guard.gauges() == (True, 0.0, 1.0, 0.6)   # the store wait has a gauge of its own
    assert guard.gauges()[3] == 0.0             # the largest since the last call
    off = OverloadGuard(0.0, 5, 65535, Sent())  # shed_delay 0: off, whatever waits
    assert not off.measure(0.0, 5.0)


def test_guard_ticks_shed_by_the_decisions_waiting_on_the_store() -> None:
    """The tick asks the store how long its oldest lookup in flight has waited (time as an
    input: the tick's own clock is passed on). Two ticks in a row past half the timeout, a
    worker behind: shed; one alone (a preemption) is not; when nothing waits any more the
    share falls and the episode ends within a few ticks."""
    async def main(waits: list[float]) -> list[bool]:
        asked: list[float] = []
        guard = OverloadGuard(0.02, 5, 65535, Sent())

        def waiting(now: float) -> float:
            asked.append(now)
            return waits[len(asked) - 1]

        guard.watch_store(waiting)
        seen = []
        try:
            for _ in waits:
                guard.due = time.monotonic()        # the loop is on time; no queue to probe
                before = time.monotonic()
                guard._tick()
                assert before <= asked[-1] <= time.monotonic()
                seen.append(guard.state.shedding)
            return seen
        finally:
            guard.close()

    assert asyncio.run(main([0.6, 0.0, 0.6, 0.3])) == [False, False, False, False]   # one at a time
    assert asyncio.run(main([0.3, 0.45, 0.45])) == [False, False, False]           # under half the timeout
    assert asyncio.run(main([0.6, 0.7, 0.8])) == [False, True, True]               # behind: shed
    ended = asyncio.run(main([0.6, 0.7] + [0.0] * 6))
    assert ended[1] and not ended[-1]                                              # over once none waits


def test_guard_without_a_store_to_watch_keeps_its_idle_rule_and_one_with_waiting_lookups_ticks_on() -> None:
    async def main() -> tuple[bool, bool]:
        guard = OverloadGuard(0.02, 5, 65535, Sent())
        try:
            guard.due = time.monotonic()
            guard._tick()
            idle_without = guard.idle
            guard.idle = False
            guard.watch_store(lambda now: 0.1)       # a lookup in flight: its answer is still to come
            guard.due = time.monotonic()
            guard._tick()
            return idle_without, guard.idle
        finally:
            guard.close()

    assert asyncio.run(main()) == (True, False)


def test_guard_answers_the_share_of_new_invites_the_state_asks() -> None:
    sent = Sent()
    guard = OverloadGuard(0.02, 5, 65535, sent)
    guard.due = time.monotonic() + 3600
    guard.measure(0.5)
    guard.state.share, guard.state.credit = 0.5, 0.0
    src = ("192.0.2.7", 5070)
    assert [guard.intercept(INVITE, src, "udp", None) for _ in range(6)] == [False, True] * 3
    assert len(sent) == 3 and guard.counters.shed_503 == 3
    reinvite = INVITE.replace(b"user=phone>\r\nCall-ID", b"user=phone>;tag=d\r\nCall-ID", 1)
    assert not guard.intercept(INVITE, src, "udp", None)
    assert not guard.intercept(reinvite, src, "udp", None)    # its turn, but never shed: the next one's
    assert guard.intercept(INVITE, src, "udp", None)


@contextlib.contextmanager
def _loopback() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A UDP socket bound on loopback (``rx``) and one to send to it from (``tx``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        yield rx, tx


def _aged_datagram(rx: socket.socket, tx: socket.socket, probe: QueueProbe, age: float) -> None:
    """Leave one datagram in ``rx`` that has waited ``age`` seconds (the kernel starts
    stamping a little after the first socket asks for it: retried)."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        tx.sendto(b"x" * 100, rx.getsockname())
        time.sleep(age)
        if probe.age(time.time()) >= age:
            return
        while True:
            try:
                rx.recv(2048, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
    raise AssertionError("no receive timestamp")


def test_guard_does_not_tick_while_idle_and_the_next_invite_resumes_it() -> None:
    """An idle worker woke up 100 times a second for the tick (~175 us each, bench/RESULTS.md):
    a tick that finds no datagram waiting and no INVITE since the last one stops the ticks;
    the next INVITE starts them again, and measures the queues at once, so a loop that stalled
    meanwhile with work waiting is seen by that INVITE (what the stall check does)."""
    async def main() -> None:
        with _loopback() as (rx, tx):
            sent = Sent()
            guard = OverloadGuard(0.02, 5, 65535, sent)
            guard.probes.append(QueueProbe(rx.fileno()))
            src = ("192.0.2.7", 5070)
            try:
                guard.due = time.monotonic()
                guard._tick()                                 # nothing waits, no INVITE: idle
                assert guard.idle and guard._timer is None
                assert not guard.intercept(INVITE, src, "udp", None)   # resumed, nothing to shed
                assert not guard.idle and guard._timer is not None
                guard.due = time.monotonic()
                assert not guard.intercept(INVITE, src, "udp", None)
                guard._tick()                                 # INVITEs came: ticking on
                assert not guard.idle and guard._timer is not None
                tx.sendto(b"y" * 100, rx.getsockname())
                while guard.probes[0].age(time.time()) == 0.0:
                    time.sleep(0.001)
                guard.due = time.monotonic()
                guard._tick()                                 # a datagram waits: ticking on
                assert not guard.idle
                rx.recv(2048)
                guard.due = time.monotonic()
                guard._tick()
                assert guard.idle and sent == []
                _aged_datagram(rx, tx, guard.probes[0], 0.05)  # a stall while idle, work waiting
                assert guard.intercept(INVITE, src, "udp", None)
                assert guard.state.shedding and len(sent) == 1 and not guard.idle
            finally:
                guard.close()

    asyncio.run(main())


def test_a_started_guard_is_idle_and_its_first_invite_sees_a_stall_before_any_tick() -> None:
    """A call within TICK of the start, then a stall: the first tick had not run, and the stall
    check read the lag against no tick at all, so the queue the stall left was decided, not
    shed (the sockets are read before the timers when the loop wakes up; CI, session 19). A
    started worker is idle: its first INVITE measures the queues at once."""
    async def main() -> None:
        with _loopback() as (rx, tx):
            sent = Sent()
            guard = OverloadGuard(0.02, 5, 65535, sent)
            guard.start([rx.fileno()])
            src = ("192.0.2.7", 5070)
            try:
                assert guard.idle and guard._timer is None
                assert not guard.intercept(INVITE, src, "udp", None)   # the call before the stall
                assert not guard.idle and guard._timer is not None
                _aged_datagram(rx, tx, guard.probes[0], 0.05)          # the stall, no tick ran
                assert guard.intercept(INVITE, src, "udp", None)
                assert guard.state.shedding and len(sent) == 1
            finally:
                guard.close()

    asyncio.run(main())


def test_guard_with_shedding_off_stays_without_ticks() -> None:
    async def main() -> None:
        guard = OverloadGuard(0.0, 5, 65535, Sent())
        guard.start([])
        try:
            assert guard._timer is None
            assert not guard.intercept(INVITE, ("192.0.2.7", 5070), "udp", None)
            assert guard._timer is None
        finally:
            guard.close()

    asyncio.run(main())


def test_queue_probe_reads_the_age_of_the_oldest_datagram() -> None:
    with _loopback() as (rx, tx):
        probe = QueueProbe(rx.fileno())
        try:
            assert probe.age(time.time()) == 0.0   # nothing waits
            # the kernel starts stamping a little after the first socket asks for it: retry
            end, age = time.monotonic() + 10, 0.0
            while time.monotonic() < end and age < 0.05:
                tx.sendto(b"x" * 100, rx.getsockname())
                time.sleep(0.1)
                age = probe.age(time.time())
                while True:  # empty the queue for the next try
                    try:
                        rx.recv(2048, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        break
            assert age >= 0.05
            tx.sendto(b"kept", rx.getsockname())   # peeked at, not taken: the event loop reads it
            end = time.monotonic() + 10
            while time.monotonic() < end and probe.age(time.time()) == 0.0:
                time.sleep(0.01)
            assert rx.recv(2048, socket.MSG_DONTWAIT) == b"kept"
            # an empty datagram at the head reads as none (FIONREAD's 0): the loop takes it next
            tx.sendto(b"", rx.getsockname())
            time.sleep(0.1)
            assert probe.age(time.time()) == 0.0
            assert rx.recv(2048, socket.MSG_DONTWAIT) == b""
        finally:
            probe.close()


def test_memory_trim_once_the_transactions_of_a_burst_have_halved() -> None:
    trim = MemoryTrim(minimum=1000)
    counts = [10, 500, 900, 400, 100]          # a peak under the minimum: never
    counts += [5000, 12000, 11000, 7000, 6100]  # a burst, expiring: not yet half
    counts += [5900, 5800]                      # half of the peak: once
    counts += [4000, 2900]                      # half of the new reference: again
    assert [trim.tick(c) for c in counts] == [False] * 10 + [True, False, False, True]
    assert trim.trims == 2
    counts = [1400, 700]                        # the fall goes on: at each halving
    counts += [300, 100, 62, 10, 0]             # under the minimum: once more when all but gone
    assert [trim.tick(c) for c in counts] == [True, True, False, False, True, False, False]
    assert [trim.tick(c) for c in (900, 400, 20)] == [False] * 3  # a peak under the minimum: never


def test_memory_trim_empties_the_parse_cache_when_a_burst_is_over() -> None:
    """The entries a burst adds to numbers' parse cache would keep the burst's arenas: emptied
    with each trim, never while the transactions still grow."""
    from sipguard import numbers

    trim = MemoryTrim(minimum=1000, release=(numbers.clear_cache,))
    numbers.parse_tn("sip:011442071838750@gw")  # the cached path (not the usual forms)
    for count in (3000, 8000, 5000):      # a burst, then expiry not yet at half
        assert not trim.tick(count)
        assert numbers.cache_info()[2] > 0
    assert trim.tick(4000)                  # half of the peak: trimmed, cache emptied
    assert numbers.cache_info()[2] == 0
    assert numbers.parse_tn("sip:011442071838750@gw").e164 == "442071838750"
    assert numbers.cache_info()[2] == 1  # refilled


def test_the_workers_trim_empties_the_number_cache() -> None:
    """The parse caches of a burst's last calls are emptied by the worker's compaction (the
    name-addr cache it emptied too is gone: bench/RESULTS.md, session 13)."""
    from sipguard import numbers
    from sipguard.proxy.worker import CACHES

    trim = MemoryTrim(minimum=1000, release=CACHES)
    numbers.parse_tn("sip:011442071838750@gw")  # the cached path (not the usual forms)
    for count in (3000, 8000, 5000):
        assert not trim.tick(count)
    assert numbers.cache_info()[2] > 0
    assert trim.tick(4000)
    assert numbers.cache_info()[2] == 0
    assert CACHES == (numbers.clear_cache,)


def test_a_transaction_past_its_2xx_holds_no_message_bytes(tmp_path: Path) -> None:
    """What a burst leaves in memory for 32-64 s: a forwarded INVITE answered 200 keeps no copy
    of the INVITE (as received or as forwarded); a retransmitted INVITE is still absorbed."""
    from tests.unit.test_proxy_core import INVITE as CORE_INVITE
    from tests.unit.test_proxy_core import UAC, UAS, answer, forward, run

    async def scenario(core: Any, cap: Any) -> None:
        fwd = await forward(core, cap)
        [tx] = core.txs.invites.values()
        core.receive(answer(fwd, "200 OK"), UAS, "udp", None)
        [(ok, to_uac)] = cap.take()
        assert ok.startswith(b"SIP/2.0 200 OK") and to_uac == UAC
        assert tx.state == "done" and (tx.raw, tx.sent, tx.forwarded) == (b"", None, None)
        assert core.txs.invites == {}   # accepted: not even the InviteTx is kept (test_proxy_core.py)
        core.receive(CORE_INVITE, UAC, "udp", None)
        assert cap.take() == []

    run(tmp_path, scenario)


def test_memory_trim_compacts_at_each_trim_and_once_more_when_the_burst_has_settled() -> None:
    """Each trim empties the caches, runs a full collection (it also empties the interpreter's
    free lists, whose burst-made tuples and dicts pin pymalloc arenas) and gives the pages
    back; SETTLE_TICKS ticks after the burst's last trim, once more (what was freed after it:
    records written, their batches); a new rise pauses that count."""
    steps: list[str] = []
    def collect() -> int:
        steps.append("collect")
        return 0

    def release() -> bool:
        steps.append("release")
        return True

    trim = MemoryTrim(minimum=1000, release=(lambda: steps.append("caches"),), collect=collect)
    trim._release = release
    assert [trim.tick(c) for c in (5000, 2400)] == [False, True]
    assert steps == ["caches", "collect", "release"]
    steps.clear()
    assert [trim.tick(c) for c in (1000, 60, 0)] == [True, True, True]   # halved, halved, all but gone
    assert steps == ["caches", "collect", "release"] * 3 and trim.trims == 4
    steps.clear()
    ticks = [trim.tick(0) for _ in range(MemoryTrim.SETTLE_TICKS - 3)]
    ticks += [trim.tick(300)] * 2                                   # calls again: the count waits
    ticks += [trim.tick(10) for _ in range(3)]
    assert ticks == [False] * (MemoryTrim.SETTLE_TICKS + 1) + [True]
    assert steps == ["caches", "collect", "release"] and trim.trims == 5
    steps.clear()
    assert [trim.tick(0) for _ in range(3 * MemoryTrim.SETTLE_TICKS)] == [False] * (3 * MemoryTrim.SETTLE_TICKS)
    assert steps == []                                              # once per burst


def test_overload_answer_leaves_an_invite_a_live_transaction_answers_to_the_full_path() -> None:
    data = INVITE.replace(b"\r\nFrom:", b"\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKup\r\nFrom:", 1)
    asked: list[str] = []

    def live(whole: bytes, via: str) -> bool:
        asked.append(via)
        return whole == data

    assert overload_answer(data, HEADERS, SHED_TAG, 65535, live) is None
    assert asked == [parse(data).header("Via")]      # the top Via's value, as the parser reads it
    assert overload_answer(data, HEADERS, SHED_TAG, 65535, lambda d, v: False) == \
        overload_answer(data, HEADERS, SHED_TAG, 65535)


def test_a_worker_never_sheds_an_invite_another_worker_s_transaction_may_answer() -> None:
    """With steering, an INVITE whose branch another worker owns goes on to be handed over
    (that worker's guard asks its own core); one this worker owns is its core's question."""
    from types import SimpleNamespace

    from sipguard.proxy.steer import owner_of
    from sipguard.proxy.worker import Worker

    asked: list[str] = []
    worker = Worker.__new__(Worker)
    worker.workers, worker.index = 2, 0
    worker.steering = SimpleNamespace()  # type: ignore[assignment]
    worker.core = SimpleNamespace(in_transaction=lambda via: asked.append(via) or False)  # type: ignore[assignment]
    mine = next(INVITE.replace(b"z9hG4bKone", b"z9hG4bK%d" % i) for i in range(100)
                if owner_of(INVITE.replace(b"z9hG4bKone", b"z9hG4bK%d" % i), 2) == 0)
    theirs = next(INVITE.replace(b"z9hG4bKone", b"z9hG4bK%d" % i) for i in range(100)
                  if owner_of(INVITE.replace(b"z9hG4bKone", b"z9hG4bK%d" % i), 2) == 1)
    assert worker._in_transaction(theirs, "v") and asked == []
    assert not worker._in_transaction(mine, "v") and asked == ["v"]
    worker.steering = None
    assert not worker._in_transaction(theirs, "w") and asked == ["v", "w"]


def test_guard_ticks_shed_by_the_records_waiting_for_the_writer() -> None:
    """The tick reads the record writer's backlog (a share of traceback.queue): two ticks in a
    row at the whole queue, a worker that handles calls faster than it records them: shed; one
    alone is not, nor a backlog under the queue; once the writer catches up the episode ends."""
    async def main(backlogs: list[float]) -> list[bool]:
        read: list[float] = []
        guard = OverloadGuard(0.02, 5, 65535, Sent())

        def backlog() -> float:
            read.append(backlogs[len(read)])
            return read[-1]

        guard.watch_records(backlog)
        seen = []
        try:
            for _ in backlogs:
                guard.due = time.monotonic()        # the loop is on time; no queue to probe
                guard._tick()
                seen.append(guard.state.shedding)
            assert len(read) == len(backlogs)       # once per tick
            return seen
        finally:
            guard.close()

    assert asyncio.run(main([1.5, 0.0, 1.5, 0.2])) == [False, False, False, False]   # one at a time
    assert asyncio.run(main([0.6, 0.9, 0.95])) == [False, False, False]             # under the queue
    assert asyncio.run(main([1.2, 1.4, 1.6])) == [False, True, True]                # behind: shed
    ended = asyncio.run(main([1.2, 1.4] + [0.0] * 6))
    assert ended[1] and not ended[-1]                                               # over once written


def test_guard_ticks_on_while_records_wait_and_goes_idle_once_they_are_written() -> None:
    """No INVITE and no datagram waiting, but half the queue of records still to write: the
    ticks go on (the next measurement must see the backlog); under half of it, idle."""
    async def main(backlog: float) -> bool:
        guard = OverloadGuard(0.02, 5, 65535, Sent())
        try:
            guard.watch_records(lambda: backlog)
            guard.due = time.monotonic()
            guard._tick()
            return guard.idle
        finally:
            guard.close()

    assert asyncio.run(main(0.6)) is False
    assert asyncio.run(main(0.1)) is True


def test_the_records_backlog_weighs_as_work_waiting_in_one_measurement() -> None:
    """``measure``: the whole of traceback.queue waiting counts as work waiting shed_delay
    (RECORDS_AT); the largest of the three signals decides."""
    guard = OverloadGuard(0.02, 5, 65535, Sent())
    assert not guard.measure(0.0, 0.0, 0.9 * RECORDS_AT)
    assert guard.measure(0.0, 0.0, 1.1 * RECORDS_AT)
    assert guard.state.delay == pytest.approx(0.022)
    guard = OverloadGuard(0.02, 5, 65535, Sent())
    assert guard.measure(0.03, 0.0, 0.5 * RECORDS_AT) and guard.state.delay == pytest.approx(0.03)
