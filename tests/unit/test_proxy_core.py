"""ProxyCore transactions on a real pipeline (memory store), no sockets: what it sends for
the client-transaction duties a live test seldom reaches (ACK of a downstream non-2xx, a
CANCEL after forwarding, Timer B), and what a decided transaction keeps."""

from __future__ import annotations

import asyncio
import gc
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sipguard.clock import Clock, ManualClock, SystemClock
from sipguard.config import CoreSettings
from sipguard.pipeline import Pipeline
from sipguard.proxy.core import ProxyCore
from sipguard.proxy.messages import BRANCH_PREFIX, TAG_PREFIX, Answers, Counters, Hop, tag
from sipguard.proxy.stateless import StatelessRelay
from sipguard.proxy.transactions import State
from sipguard.sip import Message, Request, parse
from sipguard.sip.transaction import server_key
from sipguard.trunks import TrunkTable
from tests.proxy_fixtures import Capture, proxy_config

UAC = ("127.0.0.1", 5061)
UAS = ("127.0.0.1", 5070)
OURS = ("127.0.0.1", 5060)

INVITE = (b"INVITE sip:+13036231000@127.0.0.1:5060;user=phone SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-uac-1\r\n"
          b"From: <sip:+12127363100@127.0.0.1:5061;user=phone>;tag=uac1\r\n"
          b"To: <sip:+13036231000@127.0.0.1:5060;user=phone>\r\n"
          b"Call-ID: call-1@127.0.0.1\r\nCSeq: 7 INVITE\r\nMax-Forwards: 70\r\n"
          b"Contact: <sip:uac@127.0.0.1:5061>\r\nContent-Length: 0\r\n\r\n")


def run(tmp_path: Path, scenario: Any, clock: Clock | None = None, next_hop: tuple[str, int] = UAS,
        **extra: Any) -> None:
    async def main() -> None:
        config = proxy_config(tmp_path, OURS, next_hop, **extra)
        pipeline = await Pipeline.create(config, SystemClock())
        cap = Capture()
        core = ProxyCore(CoreSettings.of(config), pipeline, cap, clock=clock)
        try:
            await scenario(core, cap)
        finally:
            core.close()
            await pipeline.aclose()

    asyncio.run(main())


async def forward(core: ProxyCore, cap: Capture) -> bytes:
    """The INVITE in, decided, forwarded: returns what went downstream."""
    core.receive(INVITE, UAC, "udp", None)
    await asyncio.gather(*core._tasks)
    sent = cap.take()
    assert [addr for _, addr in sent] == [UAC, UAS]
    assert sent[0][0].startswith(b"SIP/2.0 100 Trying")
    return sent[1][0]


def from_uac(method: str, to_tag: str = "") -> bytes:
    """The UAC's ACK or CANCEL of INVITE (same branch, From, Call-ID, CSeq number)."""
    to = b"To: <sip:+13036231000@127.0.0.1:5060;user=phone>" + (b";tag=" + to_tag.encode() if to_tag else b"")
    return (method.encode() + b" sip:+13036231000@127.0.0.1:5060;user=phone SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-uac-1\r\n"
            b"From: <sip:+12127363100@127.0.0.1:5061;user=phone>;tag=uac1\r\n" + to + b"\r\n"
            b"Call-ID: call-1@127.0.0.1\r\nCSeq: 7 " + method.encode()
            + b"\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


def answer(forwarded: bytes, status: str) -> bytes:
    """What the UAS answers: Vias, From, To with its tag, Call-ID, CSeq copied."""
    req = parse(forwarded)
    lines = [f"SIP/2.0 {status}".encode()]
    lines += [line for k, line in req._lines if k in ("via", "from", "call-id", "cseq")]
    lines.append(b"To: " + (req.header("To") or "").encode() + b";tag=uas9")
    lines.append(b"Content-Length: 0")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def next_timer(core: ProxyCore, clock: ManualClock, cap: Capture) -> tuple[float, list[tuple[bytes, tuple[str, int]]]]:
    """Time stepped to the transactions' next timer and run: when it was, and what went out."""
    at = core.txs.next_timer()
    assert at is not None
    clock.set(at)
    core.on_timer()
    return at, cap.take()


def test_a_decided_transaction_keeps_bytes_not_a_parsed_request(tmp_path: Path) -> None:
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        await forward(core, cap)
        [tx] = core.txs.invites.values()
        assert tx.state is State.PROCEEDING and tx.raw == INVITE and tx.sent is not None
        assert not [obj for obj in gc.get_referents(tx) if isinstance(obj, Message)]

    run(tmp_path, scenario)


def test_downstream_non_2xx_is_acked_by_us_and_relayed_once(tmp_path: Path) -> None:
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        fwd = await forward(core, cap)
        busy = answer(fwd, "486 Busy Here")
        core.receive(busy, UAS, "udp", None)
        (ack, to_uas), (relayed, to_uac) = cap.take()
        assert to_uas == UAS and to_uac == UAC
        sent_inv, ack_msg = parse(fwd), parse(ack)
        # RFC 3261 17.1.1.3: same Request-URI, From, Call-ID, CSeq number and branch as the
        # INVITE we sent; To from the response
        assert ack_msg.method == "ACK" and ack_msg.uri == sent_inv.uri  # type: ignore[union-attr]
        assert ack_msg.top_via.branch == sent_inv.top_via.branch
        assert ack_msg.top_via.branch.startswith(BRANCH_PREFIX)  # type: ignore[union-attr]
        assert ack_msg.header("From") == sent_inv.header("From")
        assert ack_msg.to.tag == "uas9" and ack_msg.call_id == sent_inv.call_id and ack_msg.cseq == (7, "ACK")
        assert relayed.startswith(b"SIP/2.0 486 Busy Here") and b"branch=z9hG4bK-uac-1" in relayed
        assert BRANCH_PREFIX.encode() not in relayed  # our Via popped
        # a retransmitted 486: ACKed again, not relayed again
        core.receive(busy, UAS, "udp", None)
        assert cap.take() == [(ack, UAS)]
        # the upstream's ACK of the 486 is hop-by-hop: absorbed
        uac_ack = from_uac("ACK", "uas9")
        core.receive(uac_ack, UAC, "udp", None)
        assert cap.take() == []
        # a retransmitted INVITE gets the 486 again
        core.receive(INVITE, UAC, "udp", None)
        assert cap.take() == [(relayed, UAC)]

    run(tmp_path, scenario)


def test_after_a_2xx_only_the_server_side_stays_and_later_2xx_are_relayed_statelessly(tmp_path: Path) -> None:
    """RFC 6026: a 2xx ends the client transaction; the server side stays a lifetime to absorb
    the INVITE's retransmissions. What a burst's answered calls keep: no branch, no bytes."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        fwd = await forward(core, cap)
        [tx] = core.txs.invites.values()
        ok = answer(fwd, "200 OK")
        for _ in range(2):   # the 2xx, then its retransmission: each relayed upstream, once
            core.receive(ok, UAS, "udp", None)
            [(relayed, to_uac)] = cap.take()
            assert to_uac == UAC and relayed.startswith(b"SIP/2.0 200 OK") and BRANCH_PREFIX.encode() not in relayed
            assert tx.state is State.DONE and core.txs.clients == {} and tx.client_branch is None
            assert tx.raw == b"" and tx.sent is None and tx.forwarded is None
        core.receive(INVITE, UAC, "udp", None)   # a retransmitted INVITE: absorbed, never decided again
        assert cap.take() == [] and core.counters.retransmissions == 1 and core.counters.invites == 1

    run(tmp_path, scenario)


def test_an_accepted_transaction_is_not_kept_as_an_invite_tx(tmp_path: Path) -> None:
    """RFC 6026 "Accepted": once its 2xx went upstream, all a transaction still does is absorb
    its INVITE's retransmissions (and answer a late CANCEL): the table keeps its key and its
    source, not the InviteTx (~190 bytes a call for a lifetime: a burst's peak is made of them)."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        fwd = await forward(core, cap)
        [tx] = core.txs.invites.values()
        core.receive(answer(fwd, "200 OK"), UAS, "udp", None)
        assert [addr for _, addr in cap.take()] == [UAC]
        assert core.txs.invites == {} and core.txs.clients == {} and len(core.txs) == 1
        assert core.txs.accepted == {tx.key: UAC}

    run(tmp_path, scenario)


def test_an_accepted_transaction_answers_as_before_until_its_lifetime_ends(tmp_path: Path) -> None:
    """What a transaction answered 2xx does for its lifetime, as before it was kept as its key
    alone: a retransmitted INVITE is absorbed (never decided again), a CANCEL from its sender
    gets 200 with our To tag and goes nowhere, one from another host 481, the ACK of the 2xx
    is relayed and an ACK with our tag absorbed; one lifetime after the INVITE it has ended and
    the same INVITE is a new transaction."""
    clock = ManualClock(1000.0)

    async def scenario(core: ProxyCore, cap: Capture) -> None:
        fwd = await forward(core, cap)
        key = server_key(parse(INVITE).top_via)
        core.receive(answer(fwd, "200 OK"), UAS, "udp", None)
        assert [addr for _, addr in cap.take()] == [UAC]
        clock.advance(2.0)
        core.receive(INVITE, UAC, "udp", None)
        assert cap.take() == [] and core.counters.retransmissions == 1 and core.counters.invites == 1
        core.receive(from_uac("CANCEL"), UAC, "udp", None)
        [(ok, addr)] = cap.take()
        assert addr == UAC and ok.startswith(b"SIP/2.0 200 OK") and parse(ok).to.tag == tag(UAC, key)
        core.receive(from_uac("CANCEL"), ("127.0.0.2", 5061), "udp", None)
        [(no, addr)] = cap.take()
        assert addr == ("127.0.0.2", 5061) and no.startswith(b"SIP/2.0 481")
        for fast in (True, False):
            core.fast_path = fast
            core.receive(from_uac("ACK", "uas9").replace(b"z9hG4bK-uac-1", b"z9hG4bK-uac-2"), UAC, "udp", None)
            [(ack, addr)] = cap.take()
            assert addr == UAS and ack.startswith(b"ACK ")
            core.receive(from_uac("ACK", TAG_PREFIX + "0123"), UAC, "udp", None)
            assert cap.take() == []
        clock.set(1031.9)
        core.rotate()
        core.receive(INVITE, UAC, "udp", None)
        assert cap.take() == [] and core.counters.retransmissions == 2 and len(core.txs) == 1
        clock.set(1032.0)
        core.rotate()
        assert len(core.txs) == 0
        core.receive(INVITE, UAC, "udp", None)
        assert [addr for _, addr in cap.take()] == [UAC, UAS] and core.counters.invites == 2

    run(tmp_path, scenario, clock)


def test_a_late_2xx_after_our_408_keeps_the_408_for_retransmitted_invites(tmp_path: Path) -> None:
    """Not accepted alone: a transaction that sent a final response of its own (Timer B's 408)
    and then relays a late 2xx still answers a retransmitted INVITE with that 408."""
    clock = ManualClock(1000.0)

    async def scenario(core: ProxyCore, cap: Capture) -> None:
        fwd = await forward(core, cap)
        while True:
            _, sent = next_timer(core, clock, cap)
            if sent and sent[-1][1] == UAC:
                break
        [(timeout, _)] = sent
        assert timeout.startswith(b"SIP/2.0 408")
        core.receive(answer(fwd, "200 OK"), UAS, "udp", None)
        assert [addr for _, addr in cap.take()] == [UAC]
        core.receive(INVITE, UAC, "udp", None)
        assert cap.take() == [(timeout, UAC)]

    run(tmp_path, scenario, clock)


def test_cancel_after_forwarding_goes_downstream_with_the_forwarded_headers(tmp_path: Path) -> None:
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        fwd = await forward(core, cap)
        cancel = from_uac("CANCEL")
        core.receive(cancel, UAC, "udp", None)
        (ok, to_uac), (down, to_uas) = cap.take()
        assert to_uac == UAC and ok.startswith(b"SIP/2.0 200 OK") and to_uas == UAS
        sent_inv, down_msg = parse(fwd), parse(down)
        assert down_msg.method == "CANCEL" and down_msg.uri == sent_inv.uri  # type: ignore[union-attr]
        assert down_msg.top_via.branch == sent_inv.top_via.branch  # RFC 3261 9.1
        assert down_msg.header("From") == sent_inv.header("From") and down_msg.header("To") == sent_inv.header("To")
        assert down_msg.cseq == (7, "CANCEL") and down_msg.call_id == sent_inv.call_id

    run(tmp_path, scenario)


def test_timer_b_answers_408_upstream_and_keeps_it_for_retransmissions(tmp_path: Path) -> None:
    """Time is the clock's: Timer A resends the INVITE at 0.5, 1.5, 3.5, 7.5 s ... (doubling up
    to T2 = 4 s), nothing before it is due; Timer B answers 408 at the first timer 32 s on."""
    clock = ManualClock(1000.0)

    async def scenario(core: ProxyCore, cap: Capture) -> None:
        fwd = await forward(core, cap)
        [tx] = core.txs.invites.values()
        clock.advance(0.4)
        core.on_timer()
        assert cap.take() == []
        resent_at = []
        while True:
            at, sent = next_timer(core, clock, cap)
            if sent != [(fwd, UAS)]:
                break
            resent_at.append(at - 1000.0)
        assert resent_at == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        [(timeout, addr)] = sent
        assert clock.now == 1035.5 and addr == UAC and timeout.startswith(b"SIP/2.0 408 Request Timeout")
        resp = parse(timeout)
        assert resp.to.tag == tx.to_tag and resp.cseq == (7, "INVITE")
        assert resp.top_via.branch == "z9hG4bK-uac-1"
        core.receive(INVITE, UAC, "udp", None)
        assert cap.take() == [(timeout, UAC)]
        # Timer G ends with the transaction's 64*T1: the 408 is not resent
        clock.advance(10.0)
        core.on_timer()
        assert cap.take() == [] and core.txs.next_timer() is None

    run(tmp_path, scenario, clock)


def test_a_response_stops_timer_a(tmp_path: Path) -> None:
    clock = ManualClock()

    async def scenario(core: ProxyCore, cap: Capture) -> None:
        fwd = await forward(core, cap)
        core.receive(answer(fwd, "180 Ringing"), UAS, "udp", None)
        assert [addr for _, addr in cap.take()] == [UAC]
        clock.advance(40.0)
        core.on_timer()
        assert cap.take() == [] and core.txs.next_timer() is None

    run(tmp_path, scenario, clock)


def test_timer_g_resends_our_final_response_until_the_ack(tmp_path: Path) -> None:
    """A final response of ours over UDP (here a 302) is resent at 0.5, 1, 2, 4, 4 s intervals
    until the upstream's ACK, which is absorbed and stops it."""
    clock = ManualClock()

    async def scenario(core: ProxyCore, cap: Capture) -> None:
        core.redirect = True
        core.receive(INVITE, UAC, "udp", None)
        [(moved, addr)] = cap.take()
        assert addr == UAC and moved.startswith(b"SIP/2.0 302")
        for step in (0.5, 1.0, 2.0, 4.0, 4.0):
            assert core.txs.next_timer() == clock.now + step
            clock.advance(step)
            core.on_timer()
            assert cap.take() == [(moved, UAC)]
        core.receive(from_uac("ACK", parse(moved).to.tag or ""), UAC, "udp", None)
        assert cap.take() == [] and core.txs.next_timer() is None

    run(tmp_path, scenario, clock)


def test_a_memory_store_decision_is_made_inside_receive(tmp_path: Path) -> None:
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        assert core.pipeline.decides_inline
        core.receive(INVITE, UAC, "udp", None)
        assert not core._tasks and core.pending == 0  # no task: decided in the call
        assert [addr for _, addr in cap.take()] == [UAC, UAS]

    run(tmp_path, scenario)


class WaitingStore:
    """A store whose lookup waits as a network store's does (under asyncio.timeout, which
    only works inside a task)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.healthy = True
        self.threats = inner.threats

    async def lookup(self, keys: Any, now: float) -> Any:
        async with asyncio.timeout(1.0):
            await asyncio.sleep(0.001)
        return await self.inner.lookup(keys, now)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_store_that_waits_gets_its_decision_in_a_task(tmp_path: Path) -> None:
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        core.pipeline.store = WaitingStore(core.pipeline.store)
        assert not core.pipeline.decides_inline
        core.receive(INVITE, UAC, "udp", None)
        assert len(core._tasks) == 1 and core.pending == 1
        await asyncio.gather(*core._tasks)
        sent = cap.take()
        assert [addr for _, addr in sent] == [UAC, UAS]
        assert sent[1][0].startswith(b"INVITE ")  # forwarded: the lookup was not degraded
        assert b"verstat=No-TN-Validation" in sent[1][0]

    run(tmp_path, scenario)


class FailingStore:
    """A store whose lookup raises (a bug): at once (``lookup_now``, as the memory store's) or
    from its coroutine."""

    def __init__(self, inner: Any, inline: bool) -> None:
        self.inner = inner
        self.healthy = True
        self.threats = inner.threats
        self.lookup_inline = inline

    def lookup_now(self, keys: Any, now: float) -> Any:
        raise RuntimeError("bug")

    async def lookup(self, keys: Any, now: float) -> Any:
        raise RuntimeError("bug")

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("inline", [True, False])
def test_a_decision_that_raises_is_answered_500_at_once_or_from_its_task(tmp_path: Path, inline: bool) -> None:
    """Pipeline.start raising in the call (a store that answers at once) and its coroutine
    raising in a task (a network store) are answered alike: the 100, then a 500, one
    decide error counted, nothing left pending."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        core.pipeline.store = FailingStore(core.pipeline.store, inline)
        core.receive(INVITE, UAC, "udp", None)
        assert len(core._tasks) == (0 if inline else 1)
        await asyncio.gather(*core._tasks)
        sent = cap.take()
        assert [data.split(b"\r\n", 1)[0] for data, _ in sent] == [b"SIP/2.0 100 Trying",
                                                                    b"SIP/2.0 500 Server Internal Error"]
        assert core.counters.decide_errors == 1 and core.pending == 0

    run(tmp_path, scenario)


def test_a_redirect_decided_at_once_sends_its_302_without_a_100(tmp_path: Path) -> None:
    """RFC 3261 17.2.1: no 100 Trying when the final response goes at once (as Kamailio's
    sl_send_reply); a redirect whose decision waits gets the 100 at once, the 302 after, and
    a retransmitted INVITE meanwhile gets the 100 again."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        core.redirect = True
        core.receive(INVITE, UAC, "udp", None)
        assert [data.split(b"\r\n", 1)[0] for data, _ in cap.take()] == [b"SIP/2.0 302 Moved Temporarily"]
        core.txs.clear()
        core.pipeline.store = WaitingStore(core.pipeline.store)
        core.receive(INVITE, UAC, "udp", None)
        core.receive(INVITE, UAC, "udp", None)
        await asyncio.gather(*core._tasks)
        assert [data.split(b"\r\n", 1)[0] for data, _ in cap.take()] == \
            [b"SIP/2.0 100 Trying", b"SIP/2.0 100 Trying", b"SIP/2.0 302 Moved Temporarily"]

    run(tmp_path, scenario)


def bye(route: str, from_tag: str, to_tag: str, uri: str = "sip:uac@127.0.0.1:5061", via: str = "127.0.0.1:5070",
        branch: str = "z9hG4bK-bye") -> bytes:
    return (f"BYE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={branch}\r\n"
            + (f"Route: {route}\r\n" if route else "")
            + f"From: <sip:+13036231000@127.0.0.1>;tag={from_tag}\r\nTo: <sip:+12127363100@127.0.0.1>;tag={to_tag}\r\n"
            "Call-ID: call-1@127.0.0.1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def test_record_route_records_both_sides_when_the_transport_changes(tmp_path: Path) -> None:
    """RFC 5658: an INVITE in over TLS and out over UDP carries two Record-Route entries of
    ours, the top one (the callee's) for UDP, the next (the caller's) for TLS, each signed; the
    callee's BYE routed through both goes back to the caller over TLS with neither, whatever
    its Request-URI names; the caller's goes to the callee's side over UDP."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        core.reconfigure(replace(core.settings, record_route=True))
        core.receive(INVITE.replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS"), UAC, "tls", None)
        await asyncio.gather(*core._tasks)
        fwd = parse(cap.take()[1][0])
        rr = fwd.headers("Record-Route")
        assert re.fullmatch(r"<sip:127\.0\.0\.1:5060;lr;sgrr=[\w-]+\.[0-9a-f]{24}>", rr[0])
        assert rr[1] == rr[0].replace(";lr", ";transport=tls;lr")
        route = f"{rr[1]}, {rr[0]}"
        core.receive(bye(route, "uas9", "uac1", uri="sip:uac@192.0.2.66:6379;transport=tcp"), UAS, "udp", None)
        [(data, addr, transport)] = cap.sent
        cap.sent = []
        assert (addr, transport) == (UAC, "tls") and b"Route:" not in data
        core.receive(bye(f"{rr[0]}, {rr[1]}", "uac1", "uas9", uri="sip:uas@192.0.2.67:6379", via="127.0.0.1:5061"),
                     UAC, "tls", None)
        [(data, addr, transport)] = cap.sent
        assert (addr, transport) == (UAS, "udp") and data.startswith(b"BYE sip:uas@192.0.2.67:6379 ")

    run(tmp_path, scenario)


def run_with(tmp_path: Path, scenario: Any, **config: Any) -> None:
    """``run`` with a config of one's own: the trunk at 127.0.0.1, the next hop elsewhere."""
    run(tmp_path, scenario, next_hop=HOP, **config)


HOP = ("192.0.2.70", 5070)
STRANGER = ("198.51.100.9", 5060)
REDIS = "sip:x@127.0.0.1:6379;transport=tcp"


def request(method: str, uri: str, via: str = "127.0.0.1:5061", to_tag: str = "", route: str = "",
            body: bytes = b"") -> bytes:
    head = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-{method.lower()}-1\r\n"
            + (f"Route: {route}\r\n" if route else "")
            + "From: <sip:+12127363100@127.0.0.1>;tag=a1\r\n"
            f"To: <sip:+13036231000@127.0.0.1>{';tag=' + to_tag if to_tag else ''}\r\n"
            f"Call-ID: relay-1@127.0.0.1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("method", ["MESSAGE", "OPTIONS", "REGISTER", "SUBSCRIBE", "BYE", "INFO"])
def test_a_stranger_cannot_make_us_send_anywhere(tmp_path: Path, method: str) -> None:
    """The open relay of main at 72db13b: a request from no known peer naming any host (here
    the loopback Redis) gets 403 and nothing leaves towards another address; counted."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        for to_tag in ("", "x9"):
            core.receive(request(method, REDIS, via="198.51.100.9:5060", to_tag=to_tag, body=b"SET key value\r\n"),
                         STRANGER, "udp", None)
            [(data, addr, _)] = cap.sent
            cap.sent = []
            assert addr == STRANGER and status_of(data) == 403 and b"unknown source" in data
        assert core.counters.refused_unknown_source == 2

    run_with(tmp_path, scenario)


def test_a_trunk_request_goes_to_the_next_hop_whatever_it_names(tmp_path: Path) -> None:
    """Out of dialog or in a dialog without our Route, a trunk's request goes to its next hop:
    the Request-URI and a Route of someone else's are carried, never followed."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        for data in (request("MESSAGE", REDIS, body=b"SET key value\r\n"),
                     request("BYE", REDIS, to_tag="b2"),
                     request("INFO", "sip:x@192.0.2.1", route="<sip:127.0.0.1:6379;transport=tcp;lr>", to_tag="b2"),
                     request("ACK", REDIS, to_tag="b2")):
            core.receive(data, UAC, "udp", None)
            [(sent, addr, transport)] = cap.sent
            cap.sent = []
            assert (addr, transport) == (HOP, "udp") and not sent.startswith(b"SIP/")

    run_with(tmp_path, scenario)


def test_record_route_tokens_verify_with_or_without_the_remembered_macs(tmp_path: Path) -> None:
    """The relay remembers the MACs of the tokens it signed (a dialog's ACK and BYE carry its
    INVITE's): a token verifies the same once they are forgotten or on another relay with the
    same key, each side of the dialog goes to the other end, and nothing verifies after a new key."""
    cap = Capture()
    relay = StatelessRelay(cap, Answers(cap, Counters(), SystemClock()), lambda req, source: source)
    inv = parse(INVITE)
    assert isinstance(inv, Request)
    route = f"<sip:127.0.0.1:5060;lr;sgrr={relay.rr_token(inv, Hop(*UAC, 'udp'), Hop(*UAS, 'tcp'))}>"
    from_caller, from_callee = parse(bye(route, "uac1", "uas9")), parse(bye(route, "uas9", "uac1"))
    assert isinstance(from_caller, Request) and isinstance(from_callee, Request)
    other = StatelessRelay(cap, Answers(cap, Counters(), SystemClock()), lambda req, source: source)
    for verifier in (relay, other):
        assert verifier.dialog_end(from_caller, route) == Hop(*UAS, "tcp")
        assert verifier.dialog_end(from_callee, route) == Hop(*UAC, "udp")
    assert relay.dialog_end(parse(bye(route, "uac2", "uas9")), route) is None  # type: ignore[arg-type]
    relay._macs.clear()
    assert relay.dialog_end(from_caller, route) == Hop(*UAS, "tcp")
    config = proxy_config(tmp_path)
    settings = replace(CoreSettings.of(config), secret=b"k" * 32)
    relay.configure(settings, TrunkTable(config.trunks))
    assert relay.dialog_end(from_caller, route) is None and relay.dialog_end(from_callee, route) is None


def test_a_forged_route_is_refused(tmp_path: Path) -> None:
    """Our Route mark with a token we did not sign (or signed for another dialog) is 403."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        core.reconfigure(replace(core.settings, record_route=True))
        core.receive(INVITE, UAC, "udp", None)
        await asyncio.gather(*core._tasks)
        rr = parse(cap.take()[1][0]).headers("Record-Route")[0]
        forged = "<sip:127.0.0.1:5060;lr;sgrr=" + "dWRwLzEyNy4wLjAuMS82Mzc5L3RjcC8xMjcuMC4wLjEvNjM3OQ." + "0" * 24 + ">"
        for route, call in ((forged, "call-1@127.0.0.1"), ("<sip:127.0.0.1:5060;lr;sgrr>", "call-1@127.0.0.1"),
                            (rr, "another-call@127.0.0.1")):
            data = bye(route, "uas9", "uac1").replace(b"call-1@127.0.0.1", call.encode())
            core.receive(data, HOP, "udp", None)
            [(sent, addr, _)] = cap.sent
            cap.sent = []
            assert addr == HOP and status_of(sent) == 403
        assert core.counters.refused_forged_route == 3

    run_with(tmp_path, scenario)


def test_a_next_hop_request_outside_our_dialogs_is_refused(tmp_path: Path) -> None:
    """The next hop is a known peer, but a request from it goes nowhere unless our signed
    Route says which dialog it belongs to: 404 (ACK: dropped)."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        core.receive(bye("", "uas9", "uac1"), HOP, "udp", None)
        [(sent, addr, _)] = cap.sent
        cap.sent = []
        assert addr == HOP and status_of(sent) == 404
        core.receive(request("ACK", "sip:uac@127.0.0.1:5061", via="192.0.2.70:5070", to_tag="t"), HOP, "udp", None)
        assert cap.sent == [] and core.counters.refused_no_route == 2

    run_with(tmp_path, scenario)


def test_a_response_with_a_branch_we_did_not_make_is_dropped(tmp_path: Path) -> None:
    """A forged response (our branch prefix, the next Via naming Redis) is not relayed; the
    response to a request we relayed statelessly is."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        forged = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=" + BRANCH_PREFIX.encode()
                  + b"0123456789abcdef\r\nVia: SIP/2.0/TCP 127.0.0.1:6379;branch=z9hG4bK-x\r\n"
                  b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: f\r\nCSeq: 1 MESSAGE\r\n"
                  b"Content-Length: 0\r\n\r\n")
        for fast in (True, False):
            core.fast_path = fast
            core.receive(forged, HOP, "udp", None)
            assert cap.sent == []
        assert core.counters.dropped_forged_response == 2
        core.receive(request("MESSAGE", "sip:x@192.0.2.1"), UAC, "udp", None)
        [(relayed, addr, _)] = cap.sent
        cap.sent = []
        assert addr == HOP
        fwd = parse(relayed)
        resp = (b"SIP/2.0 200 OK\r\n" + b"".join(line + b"\r\n" for k, line in fwd._lines
                                                 if k in ("via", "from", "to", "call-id", "cseq"))
                + b"Content-Length: 0\r\n\r\n")
        for fast in (True, False):
            core.fast_path = fast
            core.receive(resp, HOP, "udp", None)
            [(back, addr, _)] = cap.sent
            cap.sent = []
            assert addr == UAC and back.startswith(b"SIP/2.0 200 OK")

    run_with(tmp_path, scenario)


def test_options_to_us_is_answered_here_for_known_peers_only(tmp_path: Path) -> None:
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        core.receive(request("OPTIONS", "sip:127.0.0.1:5060"), UAC, "udp", None)
        core.receive(request("OPTIONS", "sip:127.0.0.1:5060", via="192.0.2.70:5070"), HOP, "udp", None)
        core.receive(request("OPTIONS", "sip:127.0.0.1:5060", via="198.51.100.9:5060"), STRANGER, "udp", None)
        assert [(addr, status_of(data)) for data, addr, _ in cap.sent] == [(UAC, 200), (HOP, 200), (STRANGER, 403)]

    run_with(tmp_path, scenario)


def test_only_the_invites_sender_may_cancel_it(tmp_path: Path) -> None:
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        core.receive(INVITE, UAC, "udp", None)
        cap.take()
        core.receive(from_uac("CANCEL"), ("127.0.0.2", 5061), "udp", None)
        [(data, addr)] = cap.take()
        assert addr == ("127.0.0.2", 5061) and status_of(data) in (403, 481)
        assert not core.txs.invites[next(iter(core.txs.invites))].cancelled
        await asyncio.gather(*core._tasks)

    run_with(tmp_path, scenario, sources="127.0.0.0/8")


def test_unknown_source_allow_sends_to_the_next_hop_only(tmp_path: Path) -> None:
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        core.receive(request("MESSAGE", REDIS, via="198.51.100.9:5060"), STRANGER, "udp", None)
        [(_, addr, _)] = cap.sent
        assert addr == HOP

    run_with(tmp_path, scenario, unknown_source="allow")


def test_a_transport_we_do_not_speak_is_counted_not_sent_over_tcp() -> None:
    """A response whose next Via says SCTP (or WS): neither sent on a plain TCP connection nor
    an error; counted for the metrics."""
    from sipguard.proxy.transport import Transports

    async def main() -> None:
        sender = Transports((), lambda *a: None, 65535)
        sender.send_to_source(b"SIP/2.0 200 OK\r\n\r\n", ("192.0.2.9", 5060), "sctp", None)
        sender.send_to(b"BYE sip:x SIP/2.0\r\n\r\n", ("192.0.2.9", 5060), "ws")
        assert sender.counters.unsupported_transport == 2 and not any(sender.streams.values())

    asyncio.run(main())


def test_a_sender_set_later_carries_everything(tmp_path: Path) -> None:
    """``core.sender = ...`` (bench_core.py's capture) reaches the relay and the answers too:
    a relayed request, a refusal and a response of the core's own all go through it."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        other = Capture()
        core.sender = other
        core.receive(request("MESSAGE", "sip:x@192.0.2.1"), UAC, "udp", None)
        core.receive(request("MESSAGE", REDIS, via="198.51.100.9:5060"), STRANGER, "udp", None)
        core.receive(INVITE, UAC, "udp", None)
        assert cap.sent == [] and core.sender is other
        assert [(addr, data[:8]) for data, addr, _ in other.sent] == [
            (HOP, b"MESSAGE "), (STRANGER, b"SIP/2.0 "), (UAC, b"SIP/2.0 "), (HOP, b"INVITE s")]

    run_with(tmp_path, scenario, unknown_source="reject")


def test_a_shedding_guard_lets_a_retransmission_reach_its_transaction(tmp_path: Path) -> None:
    """While the overload guard sheds every new INVITE, a retransmission of one that was let in
    (deciding, forwarded, or accepted after its 2xx) still reaches the core, which absorbs it:
    a 503 for it would end at the caller a call that goes on downstream (RFC 3261 17.2.3).
    A new INVITE is still shed."""
    import time

    from sipguard.proxy.core import Intercepted
    from sipguard.proxy.overload import SHED_TAG, OverloadGuard

    async def scenario(core: ProxyCore, cap: Capture) -> None:
        guard = OverloadGuard(0.02, 5, 65535, cap.send_to_source)
        guard.due = time.monotonic() + 3600      # shedding is the state's word only
        guard.live = lambda data, via: core.in_transaction(via)
        receive = Intercepted(guard.intercept, core.receive)
        fwd = await forward(core, cap)           # let in before the burst
        guard.measure(0.5)                       # now shedding every new INVITE
        assert guard.state.shedding and guard.state.share == 1.0
        receive(INVITE, UAC, "udp", None)        # forwarded, no final response yet
        assert cap.take() == [] and core.counters.retransmissions == 1
        core.receive(answer(fwd, "200 OK"), UAS, "udp", None)
        assert [addr for _, addr in cap.take()] == [UAC]
        receive(INVITE, UAC, "udp", None)        # accepted: the 2xx went upstream
        assert cap.take() == [] and core.counters.retransmissions == 2
        other = INVITE.replace(b"z9hG4bK-uac-1", b"z9hG4bK-uac-2").replace(b"call-1@", b"call-2@")
        receive(other, UAC, "udp", None)         # a new INVITE: shed
        [(shed, addr)] = cap.take()
        assert addr == UAC and shed.startswith(b"SIP/2.0 503") and f";tag={SHED_TAG.decode()}".encode() in shed
        assert guard.counters.shed_503 == 1 and core.counters.invites == 1

    run(tmp_path, scenario)


def test_in_transaction_reads_the_top_via_as_the_core_keys_it(tmp_path: Path) -> None:
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        via = parse(INVITE).header("Via") or ""
        assert not core.in_transaction(via)
        await forward(core, cap)
        assert core.in_transaction(via) and core.in_transaction(via.replace("SIP/2.0/UDP", "SIP/2.0/udp"))
        assert not core.in_transaction(via.replace("uac-1", "uac-2"))
        assert not core.in_transaction(via.replace("127.0.0.1:5061", "127.0.0.1:5062"))
        # what the guard cannot read on its own goes to the full path: counted as live
        assert core.in_transaction(via + ", SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx")
        assert core.in_transaction("SIP/2.0/UDP ;;;")

    run(tmp_path, scenario)
