"""Holding the edge with real sockets (issue "Hold the edge", items 3 and 4): a real
``sipguard serve`` whose event loop is made to lag answers new INVITEs with 503 +
Retry-After while a BYE and its response still flow; TCP connections are refused at
accept (unknown source, per source, total) and closed by the head and idle timeouts, each
counted in /metrics and logged. No timing assertions: small configured timeouts, and each
effect awaited with a generous bound."""

from __future__ import annotations

import re
import signal
import socket
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from conftest import base_config
from sipclient import MiniUas, UdpClient, ack_for, free_port, invite

pytestmark = pytest.mark.integration
BOUND = 15.0   # seconds any effect may take on a loaded machine


def wait_for(what: Callable[[], Any], bound: float = BOUND) -> Any:
    end = time.monotonic() + bound
    while time.monotonic() < end:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    return what()


def metric(http_port: int, name: str, labels: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{name}(?:\{{{labels}\}})? ([0-9.e+]+)$", body, re.M)
    return float(m.group(1)) if m else 0.0


# -- item 3: overload is answered --------------------------------------------------------------
def test_lagging_worker_answers_new_invites_503_while_a_bye_and_its_response_flow(sipguard: Any) -> None:
    uas = MiniUas()
    http = free_port()
    sg = sipguard(base_config(uas.port, http={"listen": f"127.0.0.1:{http}"}))
    client = UdpClient()
    try:
        # a call set up before the stall: its BYE must get through while new INVITEs are shed
        inv = invite(sg.addr, client.addr, call_id="before-stall")
        client.send(inv, sg.addr)
        final, _ = client.final()
        assert final is not None and final.status == 200, sg.logs()
        client.send(ack_for(inv, final), sg.addr)
        bye = inv.replace(b"INVITE sip", b"BYE sip", 1).replace(b"CSeq: 1 INVITE", b"CSeq: 2 BYE")
        bye = bye.replace(b"user=phone>\r\nCall-ID", b"user=phone>;tag=uas1\r\nCall-ID", 1)
        bye = bye.replace(b";branch=z9hG4bK", b";branch=z9hG4bKbye", 1)

        assert sg.proc is not None
        sg.signal(signal.SIGSTOP)      # the worker's loop stops turning: every tick is late
        try:
            new = [invite(sg.addr, client.addr, call_id=f"during-stall-{i}") for i in range(5)]
            for data in new:
                client.send(data, sg.addr)
            client.send(bye, sg.addr)
            time.sleep(0.3)
        finally:
            sg.signal(signal.SIGCONT)
        seen: list[Any] = []
        end = time.monotonic() + BOUND
        while time.monotonic() < end and (sum(1 for m in seen if m.status == 503) < 5
                                          or not any(m.header("CSeq") == "2 BYE" for m in seen)):
            msg = client.recv(0.5)
            if msg is not None:
                seen.append(msg)
        answers = {m.header("Call-ID"): m for m in seen if m.header("CSeq") == "1 INVITE"}
        for i in range(5):
            answer = answers.get(f"during-stall-{i}")
            assert answer is not None and answer.status == 503, (seen, sg.logs())
            assert answer.header("Retry-After") == "5"
            assert "tag=sgx" in (answer.header("To") or "")
        # none of the shed INVITEs reached the next hop; the BYE did, and its 200 came back
        assert not [m for m in uas.invites() if (m.header("Call-ID") or "").startswith("during-stall")]
        assert wait_for(lambda: [m for m in uas.received if m.method == "BYE"])
        assert any(m.status == 200 and m.header("CSeq") == "2 BYE" for m in seen), seen
        assert "overloaded: work waits" in sg.logs()
        assert wait_for(lambda: metric(http, "sipguard_sip_events_total", 'event="shed_503"') >= 5)
        # caught up (the next measurements find nothing waiting): new INVITEs are decided again
        assert wait_for(lambda: metric(http, "sipguard_overload_shedding", "") == 0.0)

        def decided() -> bool:
            final, _ = client.call(sg.addr)
            return final is not None and final.status == 200
        assert wait_for(decided), sg.logs()[-3000:]
    finally:
        client.close()
        uas.close()


# -- item 4: connection limits -----------------------------------------------------------------
def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND, source_address=(source, 0))
    return sock


def closed_by_peer(sock: socket.socket, bound: float = BOUND) -> bool:
    """True once the other side closed (EOF or reset) within ``bound`` seconds."""
    sock.settimeout(bound)
    try:
        while True:
            if not sock.recv(65535):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def options_over(sock: socket.socket, port: int) -> bool:
    """An OPTIONS for sipguard itself, over this connection: True when answered 200."""
    here = sock.getsockname()
    msg = (f"OPTIONS sip:127.0.0.1:{port};transport=tcp SIP/2.0\r\n"
           f"Via: SIP/2.0/TCP {here[0]}:{here[1]};branch=z9hG4bK{time.time_ns()}\r\n"
           f"From: <sip:probe@{here[0]}>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: tcp-{time.time_ns()}\r\n"
           "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
    sock.sendall(msg)
    sock.settimeout(BOUND)
    return sock.recv(65535).startswith(b"SIP/2.0 200")


@pytest.fixture
def limited(sipguard: Any) -> Callable[..., tuple[Any, int]]:
    def start(extra: dict[str, Any] | None = None, **tcp: float) -> tuple[Any, int]:
        http = free_port()
        sg = sipguard(base_config(free_port(), http={"listen": f"127.0.0.1:{http}"}, proxy={"tcp": tcp},
                                  **(extra or {})))
        return sg, http
    return start


def test_head_timeout_closes_a_half_sent_message(limited: Any) -> None:
    sg, http = limited(head_timeout=0.5, idle_timeout=300)
    sock = connect(sg.port)
    try:
        sock.sendall(invite(sg.addr, sock.getsockname(), transport="TCP")[:300])   # never finished
        assert closed_by_peer(sock), sg.logs()
        assert wait_for(lambda: metric(http, "sipguard_connection_limits_total", 'limit="head_timeout"') >= 1)
        assert "head timeout" in sg.logs()
    finally:
        sock.close()


def test_idle_timeout_closes_a_silent_connection(limited: Any) -> None:
    sg, http = limited(head_timeout=300, idle_timeout=1.0)
    silent = connect(sg.port)
    try:
        assert closed_by_peer(silent), sg.logs()
        assert wait_for(lambda: metric(http, "sipguard_connection_limits_total", 'limit="idle_timeout"') >= 1)
    finally:
        silent.close()


def test_connection_cap_per_source_and_in_total(limited: Any) -> None:
    sg, http = limited({"trusted_proxies": ["127.0.0.0/24"]}, max_per_source=2, max_connections=3)
    held = [connect(sg.port), connect(sg.port)]
    try:
        assert all(options_over(s, sg.port) for s in held)
        third = connect(sg.port)                          # a third from the same source: refused
        held.append(third)
        assert closed_by_peer(third), sg.logs()
        assert wait_for(lambda: metric(http, "sipguard_connection_limits_total", 'limit="per_source"') >= 1)
        assert "max_per_source (2)" in sg.logs()
        # another source (a trusted proxy, so known) may hold one more, then the worker is full
        other = connect(sg.port, "127.0.0.2")
        held.append(other)
        assert options_over(other, sg.port)
        fourth = connect(sg.port, "127.0.0.3")
        held.append(fourth)
        assert closed_by_peer(fourth)
        assert wait_for(lambda: metric(http, "sipguard_connection_limits_total", 'limit="total"') >= 1)
        assert "proxy.tcp.max_connections" in sg.logs()
        assert wait_for(lambda: metric(http, "sipguard_connections", 'transport="tcp"') == 3)
    finally:
        for sock in held:
            sock.close()


def test_unknown_source_is_closed_at_accept(sipguard: Any) -> None:
    http = free_port()
    sg = sipguard(base_config(free_port(), http={"listen": f"127.0.0.1:{http}"}))   # unknown_source: reject
    stranger = connect(sg.port, "127.0.0.9")   # no trunk, trusted proxy or next hop has this address
    known = connect(sg.port)
    try:
        assert closed_by_peer(stranger), sg.logs()
        assert options_over(known, sg.port)
        assert wait_for(lambda: metric(http, "sipguard_connection_limits_total", 'limit="unknown_source"') >= 1)
        assert "closed at accept: not a trunk" in sg.logs()
    finally:
        stranger.close()
        known.close()


def test_descriptors_stay_reserved_for_health_and_fetches_when_connections_pile_up(sipguard: Any) -> None:
    """A worker with a small open-file limit: connections past its budget are closed at accept,
    so /healthz (and x5u fetches, the store, records) still find a descriptor."""
    import resource

    http = free_port()
    config = base_config(free_port(), http={"listen": f"127.0.0.1:{http}"},
                         proxy={"tcp": {"max_per_source": 5000, "max_connections": 5000, "fd_reserve": 64}})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))   # inherited by the sipguard started now
    try:
        sg = sipguard(config)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    held: list[socket.socket] = []
    try:
        for _ in range(300):                  # more than 256 descriptors' worth
            held.append(connect(sg.port))
        assert wait_for(lambda: metric(http, "sipguard_connection_limits_total", 'limit="total"') >= 1), sg.logs()
        open_now = metric(http, "sipguard_connections", 'transport="tcp"')
        assert 0 < open_now <= 256 - 64
        body = urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=BOUND).read()
        assert body
        assert options_over(held[0], sg.port)   # the first ones, admitted, still work
    finally:
        for sock in held:
            sock.close()
