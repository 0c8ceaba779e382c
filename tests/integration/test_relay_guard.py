"""No open relay (issue "Hold the edge", item 1), against a real ``sipguard serve``, a real
redis-server and real sockets on loopback.

The reproduction of main at 72db13b: a MESSAGE from an address no trunk lists, with
``Request-URI sip:x@127.0.0.1:<redis>;transport=tcp`` and a body line ``SET key value``, made
Redis execute the command. Here the stranger sends from 127.0.0.2 (the trunk is 127.0.0.1),
the next hop is a UAS on 127.0.0.3, and after every attempt Redis must not hold the key.
The record-routed call flow (INVITE, ACK, re-INVITE, BYE from either side, CANCEL) must
still work, and only through sipguard's signed Record-Route."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import base_config
from sipclient import Msg, UdpClient

from tests.redis_fixtures import redis_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

TRUNK_IP, STRANGER_IP, HOP_IP = "127.0.0.1", "127.0.0.2", "127.0.0.3"


class Peer(UdpClient):
    """One UDP endpoint on ``host`` that sends what the test writes and reads what comes back."""

    def send(self, data: str | bytes, target: tuple[str, int]) -> None:  # type: ignore[override]
        super().send(data.encode() if isinstance(data, str) else data, target)

    def expect(self, what: str, timeout: float = 5.0) -> Msg:
        """The next message that is not a 100 Trying; ``what`` is a method or a status."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            msg = self.recv(max(0.05, end - time.monotonic()))
            if msg is None:
                break
            if msg.status == 100:
                continue
            got = str(msg.status) if msg.status is not None else msg.method
            assert got == what, f"expected {what}, got {msg.first}"
            return msg
        raise AssertionError(f"expected {what}, got nothing")

    def quiet(self, timeout: float = 0.5) -> bool:
        return self.recv(timeout) is None


def request(method: str, uri: str, via: tuple[str, int], *, call_id: str = "", cseq: int = 1,
            from_tag: str = "a1", to_tag: str = "", routes: list[str] | None = None, body: str = "",
            transport: str = "UDP") -> str:
    lines = [f"{method} {uri} SIP/2.0",
             f"Via: SIP/2.0/{transport} {via[0]}:{via[1]};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport",
             *(f"Route: {r}" for r in routes or []),
             f"From: <sip:+12127363100@{TRUNK_IP}>;tag={from_tag}",
             f"To: <sip:+13036231000@{HOP_IP}>" + (f";tag={to_tag}" if to_tag else ""),
             f"Call-ID: {call_id or uuid.uuid4().hex}", f"CSeq: {cseq} {method}", "Max-Forwards: 70",
             f"Contact: <sip:peer@{via[0]}:{via[1]}>", f"Content-Length: {len(body)}"]
    return "\r\n".join(lines) + "\r\n\r\n" + body


def response(req: Msg, status: str, to_tag: str, contact: tuple[str, int], rr: bool = True) -> str:
    lines = [f"SIP/2.0 {status}", *(f"Via: {v}" for v in req.all("Via"))]
    if rr:
        lines += [f"Record-Route: {r}" for r in req.all("Record-Route")]
    to = req.header("To") or ""
    lines += [f"From: {req.header('From')}", f"To: {to if 'tag=' in to else to + ';tag=' + to_tag}",
              f"Call-ID: {req.header('Call-ID')}", f"CSeq: {req.header('CSeq')}",
              f"Contact: <sip:peer@{contact[0]}:{contact[1]}>", "Content-Length: 0"]
    return "\r\n".join(lines) + "\r\n\r\n"


def redis_get(port: int, key: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(f"GET {key}\r\n".encode())
        return sock.recv(256)


@pytest.fixture
def guarded(sipguard: Any) -> Iterator[tuple[Any, Peer]]:
    hop = Peer(HOP_IP)
    sg = sipguard(base_config(0, next_hop=f"sip:{HOP_IP}:{hop.addr[1]}", proxy={"record_route": True}))
    yield sg, hop
    hop.close()


@pytest.mark.parametrize("method", ["MESSAGE", "OPTIONS", "REGISTER", "BYE"])
def test_the_redis_reproduction_over_udp_and_tcp(guarded: Any, redis_server: Any, method: str) -> None:  # noqa: F811
    sg, hop = guarded
    key = f"relay-{method.lower()}-{uuid.uuid4().hex[:8]}"
    target = f"sip:x@127.0.0.1:{redis_server.port};transport=tcp"
    body = f"SET {key} value\r\n"
    stranger = Peer(STRANGER_IP)
    try:
        # UDP from a stranger: 403, nothing sent on
        stranger.send(request(method, target, stranger.addr, body=body), sg.addr)
        answer = stranger.expect("403")
        assert "unknown source" in (answer.header("Warning") or "")
        # TCP from a stranger: refused (403, or the connection closed at accept), never relayed
        with socket.create_connection(sg.addr, timeout=5, source_address=(STRANGER_IP, 0)) as tcp:
            local = tcp.getsockname()
            try:
                tcp.sendall(request(method, target, local, body=body, transport="TCP").encode())
                data = tcp.recv(65535)
            except OSError:
                data = b""
            assert data == b"" or data.startswith(b"SIP/2.0 403 ")
        # from the trunk: to the configured next hop, not to the Request-URI's host
        trunk = Peer(TRUNK_IP)
        trunk.send(request(method, target, trunk.addr, body=body), sg.addr)
        relayed = hop.expect(method)
        assert relayed.first.startswith(f"{method} {target} ")
        trunk.close()
        assert hop.quiet(0.3)
        assert redis_get(redis_server.port, key) == b"$-1\r\n"
    finally:
        stranger.close()


def test_a_route_sipguard_did_not_sign_and_a_dialog_it_never_saw(guarded: Any, redis_server: Any) -> None:  # noqa: F811
    sg, hop = guarded
    key = f"relay-route-{uuid.uuid4().hex[:8]}"
    redis = f"sip:x@127.0.0.1:{redis_server.port};transport=tcp"
    forged = f"<sip:{sg.addr[0]}:{sg.addr[1]};lr;sgrr=dWRwLzEyNy4wLjAuMS82Mzc5.{'ab' * 12}>"
    # the next hop (a known peer) with a forged Route, and with none: 403, 404
    hop.send(request("BYE", redis, hop.addr, to_tag="b1", routes=[forged], body=f"SET {key} v\r\n"), sg.addr)
    assert "not signed" in (hop.expect("403").header("Warning") or "")
    hop.send(request("BYE", redis, hop.addr, to_tag="b1", body=f"SET {key} v\r\n"), sg.addr)
    hop.expect("404")
    # a trunk naming Redis in a Route that is not ours: carried to the next hop, not followed
    trunk = Peer(TRUNK_IP)
    try:
        trunk.send(request("INFO", "sip:x@192.0.2.1", trunk.addr, to_tag="b1",
                           routes=[f"<sip:127.0.0.1:{redis_server.port};transport=tcp;lr>"]), sg.addr)
        hop.expect("INFO")
    finally:
        trunk.close()
    assert redis_get(redis_server.port, key) == b"$-1\r\n"


def test_a_record_routed_call_flows_both_ways_and_only_in_its_dialog(guarded: Any) -> None:
    """INVITE, ACK, re-INVITE, BYE from the callee; a second call ended by the caller; a
    CANCEL; the callee's Route replayed with another Call-ID is refused."""
    sg, uas = guarded
    uac = Peer(TRUNK_IP)
    try:
        def establish(call_id: str) -> tuple[list[str], Msg]:
            uac.send(request("INVITE", f"sip:+13036231000@{sg.addr[0]}:{sg.addr[1]}", uac.addr, call_id=call_id),
                     sg.addr)
            inv = uas.expect("INVITE")
            rr = inv.all("Record-Route")
            assert len(rr) == 1 and ";sgrr=" in rr[0]
            uas.send(response(inv, "200 OK", "b1", uas.addr), sg.addr)
            ok = uac.expect("200")
            assert ok.all("Record-Route") == rr
            uac.send(request("ACK", f"sip:peer@{uas.addr[0]}:{uas.addr[1]}", uac.addr, call_id=call_id,
                             to_tag="b1", routes=rr), sg.addr)
            uas.expect("ACK")
            return rr, inv

        rr, _ = establish("flow-1")
        # re-INVITE from the caller
        uac.send(request("INVITE", f"sip:peer@{uas.addr[0]}:{uas.addr[1]}", uac.addr, call_id="flow-1", cseq=2,
                         to_tag="b1", routes=rr), sg.addr)
        reinv = uas.expect("INVITE")
        uas.send(response(reinv, "200 OK", "b1", uas.addr, rr=False), sg.addr)
        uac.expect("200")
        # BYE from the callee: its Request-URI names the caller's Contact, the Route is ours
        bye = request("BYE", f"sip:peer@{uac.addr[0]}:{uac.addr[1]}", uas.addr, call_id="flow-1", cseq=1,
                      from_tag="b1", to_tag="a1", routes=rr)
        # the same Route in a dialog it was not signed for: refused
        uas.send(bye.replace("flow-1", "flow-other"), sg.addr)
        uas.expect("403")
        uas.send(bye, sg.addr)
        got = uac.expect("BYE")
        assert not got.all("Route")
        uac.send(response(got, "200 OK", "a1", uac.addr, rr=False), sg.addr)
        uas.expect("200")
        # a second call, ended by the caller
        rr2, _ = establish("flow-2")
        uac.send(request("BYE", f"sip:peer@{uas.addr[0]}:{uas.addr[1]}", uac.addr, call_id="flow-2", cseq=3,
                         to_tag="b1", routes=rr2), sg.addr)
        got = uas.expect("BYE")
        uas.send(response(got, "200 OK", "b1", uas.addr, rr=False), sg.addr)
        uac.expect("200")
        # CANCEL of a call still ringing
        invite = request("INVITE", f"sip:+13036231000@{sg.addr[0]}:{sg.addr[1]}", uac.addr, call_id="flow-3")
        uac.send(invite, sg.addr)
        inv = uas.expect("INVITE")
        uas.send(response(inv, "180 Ringing", "b3", uas.addr), sg.addr)
        uac.expect("180")
        branch_via = next(line for line in invite.split("\r\n") if line.startswith("Via:"))
        cancel = "\r\n".join(["CANCEL " + invite.split(" ")[1] + " SIP/2.0", branch_via,
                              f"From: <sip:+12127363100@{TRUNK_IP}>;tag=a1", f"To: <sip:+13036231000@{HOP_IP}>",
                              "Call-ID: flow-3", "CSeq: 1 CANCEL", "Max-Forwards: 70", "Content-Length: 0"])
        uac.send(cancel + "\r\n\r\n", sg.addr)
        uac.expect("200")
        uas.expect("CANCEL")
        uas.send(response(inv, "487 Request Terminated", "b3", uas.addr), sg.addr)
        uas.expect("ACK")  # sipguard's own ACK of the non-2xx final response
        uac.expect("487")
    finally:
        uac.close()
