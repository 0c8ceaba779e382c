"""ProxyCore transactions on a real pipeline (memory store), no sockets: what it sends for
the client-transaction duties a live test seldom reaches (ACK of a downstream non-2xx, a
CANCEL after forwarding, Timer B), and what a decided transaction keeps."""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sipguard.clock import SystemClock
from sipguard.pipeline import Pipeline
from sipguard.proxy.core import BRANCH_PREFIX, ProxyCore
from sipguard.sip import Message, parse
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


def run(tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        config = proxy_config(tmp_path, OURS, UAS)
        pipeline = await Pipeline.create(config, SystemClock())
        cap = Capture()
        core = ProxyCore(config, pipeline, cap)
        try:
            await scenario(core, cap)
        finally:
            for tx in (*core.invites.values(), *core.clients.values()):
                if tx.timer is not None:
                    tx.timer.cancel()
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


def test_a_decided_transaction_keeps_bytes_not_a_parsed_request(tmp_path: Path) -> None:
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        await forward(core, cap)
        [tx] = core.invites.values()
        assert tx.state == "proceeding" and tx.raw == INVITE and tx.sent is not None
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
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        await forward(core, cap)
        [tx] = core.invites.values()
        tx.started = time.monotonic() - 64 * 0.5  # Timer B has run out
        core._timer_a(tx)
        [(timeout, addr)] = cap.take()
        assert addr == UAC and timeout.startswith(b"SIP/2.0 408 Request Timeout")
        resp = parse(timeout)
        assert resp.to.tag == tx.to_tag and resp.cseq == (7, "INVITE")
        assert resp.top_via.branch == "z9hG4bK-uac-1"
        core.receive(INVITE, UAC, "udp", None)
        assert cap.take() == [(timeout, UAC)]

    run(tmp_path, scenario)


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


def test_in_dialog_requests_to_a_sips_target_go_over_tls(tmp_path: Path) -> None:
    """A BYE whose Request-URI (the peer's Contact) is sips: or ;transport=tls leaves over TLS,
    to port 5061 when none is given; udp and tcp targets keep theirs."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        for target, expected in (("sips:uac@192.0.2.50", (("192.0.2.50", 5061), "tls")),
                                 ("sip:uac@192.0.2.51:5071;transport=tls", (("192.0.2.51", 5071), "tls")),
                                 ("sip:uac@192.0.2.52;transport=tcp", (("192.0.2.52", 5060), "tcp")),
                                 ("sip:uac@192.0.2.53", (("192.0.2.53", 5060), "udp"))):
            bye = (f"BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-bye-{target[-2:]}\r\n"
                   "From: <sip:+13036231000@127.0.0.1>;tag=uas9\r\nTo: <sip:+12127363100@127.0.0.1>;tag=uac1\r\n"
                   "Call-ID: call-1@127.0.0.1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
            core.receive(bye.encode(), UAS, "udp", None)
            [(data, addr, transport)] = cap.sent
            cap.sent = []
            assert data.startswith(b"BYE ") and (addr, transport) == expected

    run(tmp_path, scenario)


def test_record_route_records_both_sides_when_the_transport_changes(tmp_path: Path) -> None:
    """RFC 5658: an INVITE in over TLS and out over UDP carries two Record-Route entries of
    ours, the top one (the callee's) for UDP, the next (the caller's) for TLS; in-dialog
    requests routed through both come back with neither."""
    async def scenario(core: ProxyCore, cap: Capture) -> None:
        core.config = replace(core.config, proxy=replace(core.config.proxy, record_route=True))
        core.receive(INVITE.replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS"), UAC, "tls", None)
        await asyncio.gather(*core._tasks)
        fwd = parse(cap.take()[1][0])
        assert fwd.headers("Record-Route") == ["<sip:127.0.0.1:5060;lr;sgrr>",
                                               "<sip:127.0.0.1:5060;transport=tls;lr;sgrr>"]
        bye = ("BYE sip:uac@127.0.0.1:5061;transport=tls SIP/2.0\r\n"
               "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-bye-rr\r\n"
               "Route: <sip:127.0.0.1:5060;lr;sgrr>, <sip:127.0.0.1:5060;transport=tls;lr;sgrr>\r\n"
               "From: <sip:+13036231000@127.0.0.1>;tag=uas9\r\nTo: <sip:+12127363100@127.0.0.1>;tag=uac1\r\n"
               "Call-ID: call-1@127.0.0.1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        core.receive(bye.encode(), UAS, "udp", None)
        [(data, addr, transport)] = cap.sent
        assert (addr, transport) == (UAC, "tls") and b"Route:" not in data

    run(tmp_path, scenario)


def test_a_transport_we_do_not_speak_is_counted_not_sent_over_tcp() -> None:
    """A response whose next Via says SCTP (or WS): neither sent on a plain TCP connection nor
    an error; counted for the metrics."""
    from sipguard.proxy.transport import Transports

    async def main() -> None:
        sender = Transports((), lambda *a: None, 65535)
        sender.send_to_source(b"SIP/2.0 200 OK\r\n\r\n", ("192.0.2.9", 5060), "sctp", None)
        sender.send_to(b"BYE sip:x SIP/2.0\r\n\r\n", ("192.0.2.9", 5060), "ws")
        assert sender.dropped == 2 and not any(sender.streams.values())

    asyncio.run(main())
